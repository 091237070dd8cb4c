"""``python -m tf_crnn.export_model``: a servable SavedModel from a job directory's checkpoint.

The SavedModel has three signatures, or four with ``Params.export_filenames_signature``, all fed
through the training preprocessing and the input checks of ``data_handler.serving_inputs``:

- ``serving_default``: ``image_bytes``, string [batch] of encoded PNG/JPEG/BMP/GIF (TF Serving's
  REST API and Vertex AI send these as ``{"b64": ...}``);
- ``images``: ``images`` float32 [batch, H, W, C] already preprocessed, and ``images_widths`` int32
  [batch];
- ``with_frame_log_probs``: ``image_bytes`` like ``serving_default``, and one more output,
  ``frame_log_probs`` float32 [B, T, classes] (each time step's log-softmax, for lexicon decoding
  in ``tf_crnn.evaluate``); a signature of its own because a REST response carries every output;
- ``filenames`` (only with ``export_filenames_signature``): ``filenames``, string [batch] of paths
  read inside the graph (any gfile scheme). Off by default, because it lets whoever can call the
  model make the server read any file it can reach; without it the graph has no op that reads one.

Each returns, batch-major: ``words`` [B], ``top_words`` [B, K], ``scores`` [B, K]
(log-probabilities), ``codes`` [B, T] (padded with -1) and ``sequence_lengths`` [B].

We build the signatures ourselves instead of through ``Estimator.export_saved_model``, whose extra
receivers would be named ``images:serving_default`` and which cannot give them outputs of their own.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

import tensorflow as tf

from tf_crnn import data_handler, model
from tf_crnn.config import DECODERS, Params
from tf_crnn.constants import (
    ASSETS_EXTRA,
    EVAL_RESULT_FILE,
    EXPORT_DIR,
    EXPORT_MANUAL,
    FILENAMES,
    FRAME_LOG_PROBS,
    IMAGE_BYTES,
    IMAGES,
    IMAGES_WIDTHS,
    PARAMS_FILE,
    SERVING_OUTPUTS,
    SIGNATURE_BYTES,
    SIGNATURE_FILENAMES,
    SIGNATURE_IMAGES,
    SIGNATURE_WITH_FRAMES,
)
from tf_crnn.precision import PRECISIONS
from tf_crnn.predict import export_names

logger = logging.getLogger("tf_crnn")


class ExportError(RuntimeError):
    """The export cannot be made; the message says why."""


def export_saved_model(
    checkpoint_path: str,
    params: Params,
    export_dir_base: str,
    eval_result: dict[str, float] | None = None,
) -> str:
    """Writes a SavedModel of a checkpoint, with the signatures the module docstring lists.

    The model, with its Params and ``eval_result`` (when given) in ``assets.extra``, is written into
    a temporary folder and renamed only when complete, so a server that watches ``export_dir_base``
    never sees half a model, and every finished export carries its evaluation.

    The graph computes in ``params.export_precision``, not in the training precision: a model
    trained in float16 on a GPU must not serve in float16 on a CPU (where float16 is emulated and
    a hundred times slower). The ``params.json`` inside the export says which precision it has.

    Args:
        checkpoint_path: e.g. ``JOB_DIR/model.ckpt-2000``.
        params: the settings the checkpoint was trained with (its ``params.json``).
        export_dir_base: the folder of versions that receives ``<timestamp>/``.
        eval_result: the evaluation of this checkpoint, stored as ``eval_result.json``.

    Returns:
        The path of the new SavedModel, ``export_dir_base/<timestamp>``; the timestamp is newer
        than every version already there.
    """
    params = params.as_exported()

    def write(temp_dir: str) -> None:
        with tf.Graph().as_default() as graph:
            inputs = data_handler.serving_inputs(params)
            spec = model.crnn_fn(
                inputs.features, None, tf.estimator.ModeKeys.PREDICT, params, config=None
            )
            outputs = {key: spec.predictions[key] for key in SERVING_OUTPUTS}

            def signature(**tensors):
                return tf.compat.v1.saved_model.predict_signature_def(tensors, outputs)

            with_frames = {**outputs, FRAME_LOG_PROBS: spec.predictions[FRAME_LOG_PROBS]}
            signatures = {
                SIGNATURE_BYTES: signature(**{IMAGE_BYTES: inputs.image_bytes}),
                SIGNATURE_WITH_FRAMES: tf.compat.v1.saved_model.predict_signature_def(
                    {IMAGE_BYTES: inputs.image_bytes}, with_frames
                ),
                SIGNATURE_IMAGES: signature(
                    **{IMAGES: inputs.images, IMAGES_WIDTHS: inputs.images_widths}
                ),
            }
            if inputs.filenames is not None:
                signatures[SIGNATURE_FILENAMES] = signature(**{FILENAMES: inputs.filenames})
            with tf.compat.v1.Session(graph=graph) as session:
                tf.compat.v1.train.Saver().restore(session, checkpoint_path)
                builder = tf.compat.v1.saved_model.Builder(temp_dir)
                builder.add_meta_graph_and_variables(
                    session,
                    [tf.saved_model.SERVING],
                    signature_def_map=signatures,
                    main_op=tf.compat.v1.tables_initializer(),
                    strip_default_attrs=True,
                )
                builder.save()
        tf.io.gfile.makedirs(os.path.join(temp_dir, ASSETS_EXTRA))
        with tf.io.gfile.GFile(os.path.join(temp_dir, ASSETS_EXTRA, PARAMS_FILE), "w") as f:
            f.write(params.to_json_string())
        if eval_result is not None:
            with tf.io.gfile.GFile(
                os.path.join(temp_dir, ASSETS_EXTRA, EVAL_RESULT_FILE), "w"
            ) as f:
                f.write(
                    json.dumps({key: float(value) for key, value in eval_result.items()}) + "\n"
                )

    return _write_new_version(export_dir_base, write)


def copy_export(source_dir: str, export_dir_base: str) -> str:
    """Copies the finished SavedModel ``source_dir`` as a new version of ``export_dir_base``.

    The "best" exporter takes the "latest" export of the same checkpoint this way: a copy of the
    files takes a fraction of the seconds that building the graph and the SavedModel again does.
    """

    def write(temp_dir: str) -> None:
        for folder, _, files in tf.io.gfile.walk(source_dir):
            target = os.path.join(temp_dir, os.path.relpath(folder, source_dir))
            tf.io.gfile.makedirs(target)
            for name in files:
                tf.io.gfile.copy(os.path.join(folder, name), os.path.join(target, name))

    return _write_new_version(export_dir_base, write)


def _write_new_version(export_dir_base: str, write) -> str:
    """Calls ``write(temp_dir)``, then renames ``temp_dir`` to ``export_dir_base/<timestamp>``.

    Renamed only when complete, so a server that watches ``export_dir_base`` never sees half a
    model. The timestamp is newer than every existing version even when several are made in one
    second, because servers and ``ServingExporter`` take the largest number for the newest.
    """
    tf.io.gfile.makedirs(export_dir_base)
    timestamp = max([int(time.time())] + [int(name) + 1 for name in export_names(export_dir_base)])
    final_dir = os.path.join(export_dir_base, str(timestamp))
    temp_dir = os.path.join(export_dir_base, f"temp-{timestamp}")
    try:
        write(temp_dir)
        tf.io.gfile.rename(temp_dir, final_dir)
    except BaseException:
        if tf.io.gfile.exists(temp_dir):
            tf.io.gfile.rmtree(temp_dir)
        raise
    return final_dir


def export_missing(
    estimator: tf.estimator.Estimator,
    exporters: list[tf.estimator.Exporter],
    job_dir: str,
    eval_result: dict[str, float],
) -> None:
    """Runs each ``ServingExporter`` whose newest export is not of the newest checkpoint.

    For a run that finds every step trained: the run that trained the last ones may have been
    killed during its final exports, and its job directory must still end with a servable model
    of its last step. The "best" exporter decides by CER as always, so a job whose exports were
    all made is left as it is.
    """
    checkpoint = estimator.latest_checkpoint()
    for exporter in exporters:
        if not isinstance(exporter, ServingExporter):
            continue
        export_path = os.path.join(job_dir, EXPORT_DIR, exporter.name)
        if _newest_export_step(export_path) != int(eval_result["global_step"]):
            exporter.export(estimator, export_path, checkpoint, eval_result, True)


def _newest_export_step(export_base: str) -> int | None:
    """The global step of the newest export in ``export_base`` (None: none, or not made by an
    exporter)."""
    names = export_names(export_base)
    if not names:
        return None
    result = _eval_result(os.path.join(export_base, max(names, key=int)))
    return None if result is None else int(result["global_step"])


def _eval_result(export_dir: str) -> dict[str, float] | None:
    """The evaluation stored with an export (None for one not made by an exporter)."""
    result_file = os.path.join(export_dir, ASSETS_EXTRA, EVAL_RESULT_FILE)
    if not tf.io.gfile.exists(result_file):
        return None
    with tf.io.gfile.GFile(result_file) as f:
        return json.load(f)


class ServingExporter(tf.estimator.Exporter):
    """Exports a SavedModel after evaluations, so a job directory always holds a servable model.

    ``best_only=False`` keeps the ``keep`` newest exports; ``best_only=True`` keeps the ``keep``
    with the lowest evaluation CER, so it exports only while fewer are kept or when the CER beats
    the worst kept one. The CER is stored beside each export, so this survives restarts.

    With ``copy_from``, an exporter that runs earlier after each evaluation, a checkpoint that
    exporter has just exported is copied from there instead of being built a second time.
    """

    def __init__(
        self,
        name: str,
        params: Params,
        keep: int,
        best_only: bool = False,
        copy_from: ServingExporter | None = None,
    ):
        self._name, self._params, self._keep, self._best_only = name, params, keep, best_only
        self._copy_from = copy_from
        self.last_export_path: str | None = None
        self.last_export_checkpoint: str | None = None

    @property
    def name(self) -> str:
        return self._name

    def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
        # Only this exporter writes into export_path: a temp- folder there is what a killed
        # export left.
        for stale in tf.io.gfile.glob(os.path.join(export_path, "temp-*")):
            tf.io.gfile.rmtree(stale)
        kept = _exports_with_cer(export_path)
        cer = float(eval_result["cer"])
        if self._best_only and len(kept) >= self._keep and cer >= max(c for _, c in kept):
            return None
        source = self._copy_from
        try:
            if (
                source is not None
                and source.last_export_checkpoint == checkpoint_path
                and tf.io.gfile.exists(source.last_export_path)
            ):
                path = copy_export(source.last_export_path, export_path)
            else:
                path = export_saved_model(checkpoint_path, self._params, export_path, eval_result)
        except (ValueError, tf.errors.NotFoundError):
            if tf.io.gfile.exists(checkpoint_path + ".index"):
                raise
            # An evaluator that lags behind the chief can find its checkpoint already deleted
            # (keep_checkpoint_max): it moves on to a newer one instead of dying.
            logger.warning("%s was deleted before it could be exported; skipped", checkpoint_path)
            return None
        kept.append((path, cer))

        def rank(item):
            newest_first = -int(os.path.basename(item[0]))
            return (item[1], newest_first) if self._best_only else newest_first

        for stale, _ in sorted(kept, key=rank)[self._keep :]:
            tf.io.gfile.rmtree(stale)
        self.last_export_path, self.last_export_checkpoint = path, checkpoint_path
        return path


def _exports_with_cer(export_base: str) -> list[tuple[str, float]]:
    """(path, evaluation CER) of the finished exports in ``export_base`` that were made by an
    exporter."""
    exports = []
    for name in export_names(export_base):
        path = os.path.join(export_base, name)
        result = _eval_result(path)
        if result is not None:
            exports.append((path, float(result["cer"])))
    return exports


def load_job_params(job_dir: str) -> Params:
    path = os.path.join(job_dir, PARAMS_FILE)
    if not tf.io.gfile.exists(path):
        raise ExportError(f"{path} not found: is {job_dir} a tf_crnn job directory?")
    return Params.from_json(path)


def resolve_checkpoint(job_dir: str, checkpoint: str | None) -> str:
    """``checkpoint`` (a path, or a name inside ``job_dir``), or the job directory's latest one."""
    if checkpoint:
        for candidate in (checkpoint, os.path.join(job_dir, checkpoint)):
            if tf.io.gfile.exists(candidate + ".index"):
                return candidate
        raise ExportError(
            f"checkpoint {checkpoint} not found (looked for {checkpoint}.index in {job_dir} too)"
        )
    latest = tf.train.latest_checkpoint(job_dir)
    if latest is None:
        raise ExportError(f"no checkpoint in {job_dir}")
    return latest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tf_crnn.export_model",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--job-dir", required=True, help="Job directory written by tf_crnn.task.")
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="Checkpoint path or name (e.g. model.ckpt-2000); default: the latest.",
    )
    parser.add_argument(
        "--export-dir",
        default=None,
        help="Folder that receives the timestamped SavedModel; default: JOB_DIR/export/manual.",
    )
    parser.add_argument(
        "--precision", default=None, choices=PRECISIONS,
        help="Precision the SavedModel computes in; default: the run's export_precision setting.",
    )  # fmt: skip
    parser.add_argument(
        "--decoder", default=None, choices=DECODERS,
        help="CTC decoding in the SavedModel (greedy: one word per image, faster); default: the "
        "run's decoder setting.",
    )  # fmt: skip
    parser.add_argument(
        "--filenames-signature", default=None, action=argparse.BooleanOptionalAction,
        help="Export the 'filenames' signature, which reads image paths on the server (anyone who "
        "can call the model can then make it read any file it can reach); default: the run's "
        "export_filenames_signature setting (off unless set).",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        params = load_job_params(args.job_dir)
        if args.precision:
            params = params.with_overrides({"export_precision": args.precision})
        if args.decoder:
            params = params.with_decoder(args.decoder)
        if args.filenames_signature is not None:
            params = params.with_overrides({"export_filenames_signature": args.filenames_signature})
        checkpoint = resolve_checkpoint(args.job_dir, args.checkpoint)
    except (ExportError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    export_dir = args.export_dir or os.path.join(args.job_dir, EXPORT_DIR, EXPORT_MANUAL)
    path = export_saved_model(checkpoint, params, export_dir)
    print(f"exported {checkpoint} to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
