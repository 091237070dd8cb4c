"""Names shared by several modules: the files of a job directory and the serving contract.

Each name is written here once, so that the trainer that writes a file, the exporter that copies it
and the client that reads it cannot drift apart.
"""

# --- a job directory ----------------------------------------------------------------------------
PARAMS_FILE = "params.json"  # the run's settings, beside its checkpoints (and in every export)
EVAL_DIR = "eval"  # the Estimator's evaluation summaries
EXPORT_DIR = "export"  # SavedModels, in one folder of versions per kind:
EXPORT_LATEST = "latest"  # made after each evaluation (exports_to_keep of them)
EXPORT_BEST = "best"  # the lowest evaluation CER (best_exports_to_keep of them)
EXPORT_MANUAL = "manual"  # made by python -m tf_crnn.export_model
ASSETS_EXTRA = "assets.extra"  # inside a SavedModel: PARAMS_FILE and EVAL_RESULT_FILE
EVAL_RESULT_FILE = "eval_result.json"  # the evaluation an export was made after
SAMPLES_PNG = "samples.png"  # evaluation images captioned with their predictions
SKIPPED_ROWS_FILE = "skipped_rows.csv"  # rows the input pipeline dropped while training
DECODED_CACHE_DIR = "decoded_cache"  # images kept decoded by cache_decoded_images
DATA_CHECK_FILE = "data_check.json"  # the start-up check's results, reused by restarts and workers
DEMO_DATA_DIR = "data"  # where the demo data set is generated when no CSV is given

# --- the features input_fn gives the model, which are also the serving inputs -------------------
IMAGES = "images"  # float32 [batch, H, W, C], pixels in [0, 1]
IMAGES_WIDTHS = "images_widths"  # int32 [batch], width of each image before padding
FILENAMES = "filenames"  # string [batch]
IMAGE_BYTES = "image_bytes"  # string [batch] of encoded images (serving only)

# --- signatures of an exported SavedModel, and what each returns --------------------------------
SIGNATURE_BYTES = "serving_default"  # takes IMAGE_BYTES
SIGNATURE_IMAGES = "images"  # takes IMAGES and IMAGES_WIDTHS
SIGNATURE_FILENAMES = "filenames"  # takes FILENAMES; only with Params.export_filenames_signature
# Takes IMAGE_BYTES and also returns FRAME_LOG_PROBS, for lexicon decoding (tf_crnn.evaluate). A
# signature of its own because TF Serving's REST API returns every output of a signature, and the
# frames are about a hundred times the size of the rest.
SIGNATURE_WITH_FRAMES = "with_frame_log_probs"
WORDS = "words"  # string [batch], the best reading
TOP_WORDS = "top_words"  # string [batch, num_beam_paths]
SCORES = "scores"  # float32 [batch, num_beam_paths], log-probabilities
CODES = "codes"  # int32 [batch, time], the best reading's codes padded with -1
SEQUENCE_LENGTHS = "sequence_lengths"  # int32 [batch], CTC time steps of each image
# float32 [batch, time, classes]: log-softmax of each time step (blank last), for scoring words
# against the image (lexicon decoding); steps past an image's sequence_lengths are padding.
FRAME_LOG_PROBS = "frame_log_probs"
SERVING_OUTPUTS = (WORDS, TOP_WORDS, SCORES, CODES, SEQUENCE_LENGTHS)

# The most model-input pixels (images x H x W) one call of a served model takes: 1024 images at the
# default 32 x 128, for which the paper's network peaks at 1.1 GB on a CPU. Without a bound, a
# request of a few MB of tiny encoded images makes the server allocate a float image and the
# network's activations for each of them: gigabytes.
MAX_SERVING_BATCH_PIXELS = 2**22

# --- code tensors ------------------------------------------------------------------------------
# Batches of label or decoded codes are padded with -1, never 0: 0 is a real unit's code.
PADDING_CODE = -1

# --- tensors of the training graph --------------------------------------------------------------
LOSS_TENSOR_NAME = "crnn_loss:0"  # the batch loss, for hooks that report it
