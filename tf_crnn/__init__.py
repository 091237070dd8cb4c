"""tf_crnn: CRNN (conv stack, BiLSTM, CTC) text-line recognition as a tf.estimator package.

Entry points: ``python -m tf_crnn.task`` (train), ``python -m tf_crnn.export_model`` (SavedModel),
``python -m tf_crnn.predict`` (recognize). See README.md.
"""

import os
import sys

# TensorFlow's C++ start-up lines (CUDA and TensorRT not found, cuDNN factories, CPU features)
# read like errors to a user, and are printed when TensorFlow loads: before any argument is
# parsed. So the level is chosen here, from the command line's --verbosity (DEBUG and INFO show
# everything), unless TF_CPP_MIN_LOG_LEVEL is set already. Errors of ours are Python messages.
VERBOSE_LEVELS = ("DEBUG", "INFO")


def _verbosity_asked(argv):
    for index, argument in enumerate(argv):
        if argument.startswith("--verbosity="):
            return argument.split("=", 1)[1]
        if argument == "--verbosity" and index + 1 < len(argv):
            return argv[index + 1]
    return None


os.environ.setdefault(
    "TF_CPP_MIN_LOG_LEVEL", "0" if _verbosity_asked(sys.argv[1:]) in VERBOSE_LEVELS else "3"
)
