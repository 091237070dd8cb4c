"""Packaging for tf_crnn.

Dependency ranges, not pins, so that a cloud training image keeps its own TensorFlow 2.15.
Bounds that matter:
- keras <2.16: Keras 3 silently replaces ``tf.keras`` and breaks Estimator code.
- numpy <2: TensorFlow 2.15 is built against numpy 1.x.
- opencv-python-headless <4.12: newer releases require numpy 2, and pip would backtrack for
  minutes before failing.
"""

from setuptools import find_namespace_packages, setup

setup(
    name="tf_crnn",
    version="0.1.0",
    description="CRNN (conv + BiLSTM + CTC) text-line recognition with tf.estimator",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # Namespace discovery, so that the data folders (alphabets, configs) are packages too.
    packages=find_namespace_packages(
        include=["tf_crnn", "tf_crnn.*", "hlp", "hlp.*"], exclude=["*.__pycache__"]
    ),
    package_data={"tf_crnn": ["alphabets/*.json", "configs/*.json"]},
    include_package_data=True,
    python_requires=">=3.9,<3.12",
    install_requires=[
        "tensorflow>=2.15,<2.16",
        "keras>=2.15,<2.16",
        "numpy<2",
        "opencv-python-headless<4.12",
        "tqdm",
    ],
    extras_require={
        "test": [
            # pytest 9.2 changed node ids, and pytest-xdist 3.8 then no longer groups tests
            # (pytest-xdist#1386): the trained-job tests would train their model in both workers.
            "pytest>=7,<9.2",
            "pytest-timeout",
            "pytest-xdist>=3",
            "pyyaml>=5.1",
            "ruff>=0.8,<0.9",
            "scipy>=1.5",
        ],
        "gpu": ["tensorflow[and-cuda]>=2.15,<2.16"],
        # hlp.iiit5k reads IIIT5K's MATLAB files (scipy.io.loadmat, simplify_cells since 1.5).
        "datasets": ["scipy>=1.5"],
    },
    entry_points={
        "console_scripts": [
            "tf-crnn-train=tf_crnn.task:main",
            "tf-crnn-export=tf_crnn.export_model:main",
            "tf-crnn-predict=tf_crnn.predict:main",
            "tf-crnn-evaluate=tf_crnn.evaluate:main",
        ]
    },
)
