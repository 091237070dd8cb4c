"""tf_crnn.augment: training images change per image and per epoch, keep their width and stay
upright; evaluation images are never augmented."""

import cv2
import numpy as np
import pytest
import tensorflow as tf
from helpers import batches, concatenated, tiny_params, write_image

from tf_crnn.augment import augment
from tf_crnn.data_handler import input_fn
from tf_crnn.images import decode_image, fitted_width, preprocess_image

NO_AUGMENTATION = {
    "aug_rotation_max_degrees": 0,
    "aug_shear_max": 0,
    "aug_padding_max": 0,
    "aug_brightness_max": 0,
    "aug_contrast_max": 0,
    "aug_noise_stddev_max": 0,
    "aug_blur_probability": 0,
}


@pytest.fixture
def twice_the_same_image(text_line_csv, tmp_path, write_csv):
    text_line_csv(["word"])
    return write_csv(tmp_path / "twice.csv", ["images/data_0.png;word", "images/data_0.png;word"])


def unaugmented(path, params):
    decoded = decode_image(tf.io.read_file(path), params.input_channels)
    image, _ = preprocess_image(decoded, params, training=False)
    return image.numpy()


def test_training_augmentation_differs_per_image_and_per_epoch(twice_the_same_image, tmp_path):
    params = tiny_params(data_augmentation=True)
    dataset = input_fn(twice_the_same_image, params, "train", batch_size=2, num_epochs=2)
    (first, _), (second, _) = batches(dataset)
    images = np.concatenate([first["images"], second["images"]])
    reference = unaugmented(str(tmp_path / "images" / "data_0.png"), params)
    for i in range(4):
        assert not np.allclose(images[i], reference, atol=1e-3)
        for j in range(i):
            assert not np.allclose(images[i], images[j], atol=1e-3), (i, j)
    assert 0 <= images.min() and images.max() <= 1
    # Augmentation keeps the true width, so the CTC time steps do not change.
    image_path = str(tmp_path / "images" / "data_0.png")
    height, width = cv2.imread(image_path, cv2.IMREAD_GRAYSCALE).shape
    fitted = fitted_width(height, width, params.input_shape)
    assert first["images_widths"].tolist() == second["images_widths"].tolist() == [fitted] * 2


def test_largest_random_margins_keep_the_content_upright(tmp_path, write_csv):
    halves = np.zeros((32, 64), np.uint8)
    halves[16:] = 255  # dark top, bright bottom
    write_image(tmp_path / "halves.png", halves)
    csv = write_csv(tmp_path / "data.csv", ["halves.png;ab"])
    params = tiny_params(data_augmentation=True, **{**NO_AUGMENTATION, "aug_padding_max": 1.0})
    dataset = input_fn(csv, params, "train", batch_size=1, num_epochs=16)
    features, _ = concatenated(dataset, params)
    images = features["images"][:, :, :64, 0]
    assert np.isfinite(images).all()
    assert len({image.tobytes() for image in images}) == 16
    for image in images:
        assert image[:8].mean() <= image[-8:].mean() + 1e-3


def test_evaluation_is_deterministic_and_not_augmented(twice_the_same_image, tmp_path):
    params = tiny_params(data_augmentation=True)
    reference = unaugmented(str(tmp_path / "images" / "data_0.png"), params)
    for _ in range(2):
        features, _ = concatenated(input_fn(twice_the_same_image, params, "eval"), params)
        for image in features["images"]:
            np.testing.assert_array_equal(image, reference)


def test_without_augmentation_training_images_equal_evaluation_images(twice_the_same_image):
    params = tiny_params(data_augmentation=False, train_batch_size=2)
    evaluated, _ = concatenated(input_fn(twice_the_same_image, params, "eval"), params)
    trained, _ = concatenated(input_fn(twice_the_same_image, params, "train", num_epochs=2), params)
    assert len(trained["images"]) == 4
    for image in trained["images"]:
        np.testing.assert_array_equal(image, evaluated["images"][0])


def test_each_change_is_off_when_its_setting_is_0():
    image = tf.random.uniform([32, 50, 1], seed=3)
    unchanged = augment(image, tiny_params(**NO_AUGMENTATION))
    np.testing.assert_array_equal(unchanged.numpy(), image.numpy())
    for setting, value in [
        ("aug_rotation_max_degrees", 5.0),
        ("aug_shear_max", 0.3),
        ("aug_padding_max", 0.5),
        ("aug_brightness_max", 0.3),
        ("aug_contrast_max", 0.5),
        ("aug_noise_stddev_max", 0.1),
        ("aug_blur_probability", 1.0),
    ]:
        changed = augment(image, tiny_params(**{**NO_AUGMENTATION, setting: value}))
        assert changed.shape == image.shape, setting  # the size, and so the width, is kept
        assert not np.allclose(changed.numpy(), image.numpy(), atol=1e-4), setting
