# Training image for Vertex AI custom-container jobs (the active document of config_p100.yaml).
#
# Vertex AI's prebuilt TensorFlow 2.15 training container (tf-gpu.2-15.py310) is past its listed end of
# availability, and the Estimator code needs TensorFlow 2.15 with Keras 2, so the job brings its own image.
# From the repository root:
#
#   docker build -t us-central1-docker.pkg.dev/YOUR_PROJECT/tf-crnn/tf-crnn:0.1.0 .
#   docker push us-central1-docker.pkg.dev/YOUR_PROJECT/tf-crnn/tf-crnn:0.1.0
#
# Locally, with a GPU:  docker run --gpus all IMAGE --help

# Stage 1: the sdist, built from the sources exactly as `python setup.py sdist` builds the archive that
# the prebuilt-container variant uploads, so both paths install the same package.
FROM tensorflow/tensorflow:2.15.0-gpu AS sdist
WORKDIR /src
# What the sdist is built from, MANIFEST.in's files included (no .venv, runs or data from the context).
COPY setup.py pyproject.toml MANIFEST.in README.md config_p100.yaml hptuning_config.yaml Dockerfile ./
COPY tf_crnn tf_crnn
COPY hlp hlp
RUN python3 -m pip install --no-cache-dir build \
    && python3 -m build --sdist --outdir /dist .

# Stage 2: the training image, with the package installed from that sdist (not the sources, not -e).
FROM tensorflow/tensorflow:2.15.0-gpu

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY --from=sdist /dist/ /tmp/dist/

# The image's TensorFlow 2.15 (and its Keras 2.15, numpy 1.x) already satisfy install_requires, which
# are ranges for that reason, so pip keeps them and adds only opencv-python-headless and tqdm.
# The check fails the build if pip ever replaced TensorFlow.
RUN python3 -m pip install /tmp/dist/tf_crnn-*.tar.gz \
    && rm -rf /tmp/dist \
    && python3 -c "import tensorflow as tf, tf_crnn.task; assert tf.__version__.startswith('2.15.'), tf.__version__"

# Run from a folder without sources, so the installed package is the one imported.
WORKDIR /workspace
ENTRYPOINT ["python3", "-m", "tf_crnn.task"]
