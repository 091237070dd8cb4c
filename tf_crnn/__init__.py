"""tf_crnn: CRNN (conv stack, BiLSTM, CTC) text-line recognition as a tf.estimator package.

Entry points: ``python -m tf_crnn.task`` (train), ``python -m tf_crnn.export_model`` (SavedModel),
``python -m tf_crnn.predict`` (recognize). See README.md.
"""
