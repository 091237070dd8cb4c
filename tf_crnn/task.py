"""``python -m tf_crnn.task``: train, evaluate and export a CRNN, on a laptop or as a cloud job.

This module parses arguments and wires the pieces together; it computes nothing itself:
Params from the command line (``config.py``), the cluster, strategy and Estimator
(``cluster.py``), ``train_and_evaluate`` with its exporters (``export_model.py``) and the
closing report (``reporting.py``). The model is in ``model.py``, the input in ``data_handler.py``.

With no ``--train-csv`` it generates the embedded demo data set into the job directory and trains
on it with the demo settings (``tf_crnn/configs/demo.json``), so a newcomer sees the whole pipeline
work offline with one command.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import faulthandler
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence

import tensorflow as tf
from tensorflow.python.util import deprecation

from tf_crnn import checks, cloud, cluster, demo, network, precision, reporting, skipped_rows
from tf_crnn.alphabet import AlphabetError, with_resolved_alphabet
from tf_crnn.config import Params, ParamsError
from tf_crnn.constants import (
    DEMO_DATA_DIR,
    EXPORT_BEST,
    EXPORT_LATEST,
    PARAMS_FILE,
    SAMPLES_PNG,
)
from tf_crnn.csv_rows import DataError
from tf_crnn.data_handler import EVAL, TRAIN, input_fn
from tf_crnn.export_model import ServingExporter, export_missing
from tf_crnn.job_files import JobDirError, JobDirLock
from tf_crnn.numerical_faults import FiniteLossHook, FiniteWeightsGuard, NumericalFault
from tf_crnn.preemption import Preempted, PreemptedAfterSave, SignalCatcher, StopOnSignalHook
from tf_crnn.resume import check_resumable, prepare_checkpoints, read_saved_params
from tf_crnn.setting_values import parse_key_values, read_settings_file

logger = logging.getLogger("tf_crnn")

DEMO_JOB_DIR = os.path.join("runs", "demo")
DEMO_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "demo.json")
# Flag names kept from older tools and cloud conventions, as aliases of Params settings.
FLAG_ALIASES = {"n_epochs": ["--num-epochs"], "eval_throttle_secs": ["--eval-interval"]}
# The errors that mean "your settings or data", reported as one clear line.
USER_ERRORS = (ParamsError, DataError, AlphabetError, precision.PrecisionError, JobDirError)


def train_and_evaluate(
    params: Params, job_dir: str, train_csv: Sequence[str], eval_csv: Sequence[str]
) -> dict[str, float]:
    """Trains to ``params.train_steps``, evaluating and exporting on the way; the chief then
    writes ``samples.png`` and prints the closing summary. Callable from a notebook too.

    Args:
        params: the run's settings, alphabet resolved (``alphabet.with_resolved_alphabet``).
        job_dir: checkpoints, summaries, params.json and exports (local or gs://).
        train_csv, eval_csv: CSV files of ``image_path;label`` rows.

    Returns:
        The last evaluation's results (``cer``, ``wer``, ``word_accuracy``, ...) on the chief,
        {} on the other tasks of a cluster.

    Raises:
        ParamsError, DataError, PrecisionError: before training, naming the setting or the file
            and row.
        Preempted: SIGTERM or SIGINT stopped training after a step; its checkpoint is saved.
        NumericalFault: the loss or the weights stopped being finite; no checkpoint holds them.
    """
    # Before any TensorFlow op runs: MultiWorkerMirroredStrategy must configure the runtime first.
    tf_config = cluster.read_tf_config()
    strategy = cluster.build_strategy(params, tf_config)
    # Only to refuse, before any training, a precision that cannot run in this cluster.
    precision.resolve(params.precision, in_cluster=bool(tf_config.get("cluster")))
    cluster.check_batch_split(params, strategy)
    chief = cluster.is_chief(tf_config)
    train_checked = checks.check_csv_files(train_csv, params, job_dir, chief)
    eval_checked = checks.check_csv_files(eval_csv, params, job_dir, chief)
    if params.n_epochs:
        steps = params.steps_for_epochs(train_checked.usable_rows)
        params = params.with_overrides({"train_steps": steps})
    # Damaged checkpoints are skipped (or the run stops), settings checked against the one to
    # restore; or the weights to warm-start a new job directory from.
    warm_start = prepare_checkpoints(params, job_dir, tf_config)
    estimator = cluster.build_estimator(params, job_dir, strategy, tf_config, warm_start)
    shard = cluster.data_shard(tf_config, strategy)
    params_path = os.path.join(job_dir, PARAMS_FILE)
    if chief:
        params.to_json(params_path)
    logger.info(
        "alphabet: %d units; training to step %d; settings saved in %s",
        len(params.alphabet_units), params.train_steps, params_path,
    )  # fmt: skip

    progress = reporting.ProgressHook(
        params.train_steps, params.log_step_count_steps, params.train_batch_size
    )
    listener = reporting.EvalResultsListener()
    # Tasks that train stop after a step on SIGTERM or SIGINT; the evaluator and a parameter server
    # have nothing to save, and keep the default handlers.
    task = tf_config.get("task", {})
    signals = SignalCatcher(enabled=task.get("type") not in ("evaluator", "ps"))
    latest = ServingExporter(EXPORT_LATEST, params, keep=params.exports_to_keep)
    best = ServingExporter(
        EXPORT_BEST, params, keep=params.best_exports_to_keep, best_only=True, copy_from=latest
    )
    exporters = [listener, latest, best]

    def train_input(input_context=None):
        return input_fn(
            train_csv,
            params,
            TRAIN,
            input_context=input_context,
            shard=shard,
            job_dir=job_dir,
            checked=train_checked,
        )

    train_spec = tf.estimator.TrainSpec(
        train_input,
        max_steps=params.train_steps,
        hooks=[progress, StopOnSignalHook(signals), FiniteLossHook(params, job_dir)],
        # Called in this order after each save, before train_and_evaluate's own evaluation.
        saving_listeners=[
            FiniteWeightsGuard(params, job_dir),
            PreemptedAfterSave(signals, job_dir),
        ],
    )
    eval_spec = tf.estimator.EvalSpec(
        lambda: input_fn(eval_csv, params, EVAL, job_dir=job_dir, checked=eval_checked),
        steps=params.eval_steps or None,
        exporters=exporters,
        throttle_secs=params.eval_throttle_secs,
        start_delay_secs=params.eval_start_delay_secs,
    )
    start = time.time()
    with signals:
        tf.estimator.train_and_evaluate(estimator, train_spec, eval_spec)
    wall_seconds = time.time() - start
    task_name = None if chief else f"{task.get('type')} {task.get('index', 0)}"
    # A signal that came after the last training step (during the final evaluation) or on a worker.
    signals.raise_if_caught(job_dir, task_name, progress.last_step)
    if not chief:
        # Workers and the evaluator are done; the chief reports (a parameter server never gets
        # here).
        print(
            f"{task_name} finished after running {progress.local_steps} training steps", flush=True
        )
        return {}

    estimator = cluster.single_process_estimator(params, job_dir)
    samples_path = os.path.join(job_dir, SAMPLES_PNG)
    reporting.write_samples_png(estimator, eval_csv, params, samples_path)
    results = listener.latest
    if not results:
        # Every step was trained before this run: evaluate, and export if the run that trained the
        # last steps was killed before its export was complete.
        results = estimator.evaluate(
            lambda: input_fn(eval_csv, params, EVAL, job_dir=job_dir, checked=eval_checked),
            steps=params.eval_steps or None,
        )
        if not tf_config.get("cluster"):
            export_missing(estimator, exporters, job_dir, results)
    global_step = estimator.get_variable_value("global_step")
    summary = reporting.closing_summary(
        global_step, progress, wall_seconds, results, job_dir, samples_path
    )
    print(summary, flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    configure_logging(args.verbosity)
    if hasattr(signal, "SIGUSR1"):
        # `kill -USR1 <pid>` prints every thread's stack: a look inside a job that seems stuck.
        faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True)
    refuse_misspelled_settings(parser, unknown)
    demo_mode = not args.train_csv
    if args.train_csv and not args.eval_csv:
        parser.error("--eval-csv is required with --train-csv")
    if demo_mode and args.eval_csv:
        parser.error("--eval-csv needs --train-csv")
    # Each hyperparameter-tuning trial trains in a folder of its own.
    job_dir = cloud.trial_job_dir(resolve_job_dir(args, demo_mode, parser))
    tf.io.gfile.makedirs(job_dir)
    lock = JobDirLock(job_dir)
    try:
        # One trainer per job directory; in a cluster the chief holds the lock for every task.
        if cluster.is_chief(cluster.read_tf_config()):
            lock.acquire()
        if demo_mode:
            data_dir = os.path.join(job_dir, DEMO_DATA_DIR)
            logger.info("no --train-csv given: training on the embedded demo data in %s", data_dir)
            train_csv, eval_csv = ([path] for path in demo.generate_demo_dataset(data_dir))
        else:
            train_csv, eval_csv = args.train_csv, args.eval_csv
        params = prepare_params(args, job_dir, train_csv)
        train_and_evaluate(params, job_dir, train_csv, eval_csv)
    except USER_ERRORS as error:
        logger.error("%s", error)
        return 2
    except Preempted as stop:
        logger.warning("%s", stop)
        return stop.exit_status
    except NumericalFault as fault:
        logger.error("%s", fault)
        return fault.exit_status
    except tf.errors.OpError as error:
        message = skipped_rows.bad_row_message(error)
        if message is None:
            raise
        logger.error("stopped on a bad row (skip_bad_samples=true skips such rows): %s", message)
        return 2
    finally:
        lock.release()
    return 0


# --- the command line ----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tf_crnn.task",
        description="Train, evaluate and export a CRNN text recognizer. Without --train-csv, "
        "trains on the embedded demo data set.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        allow_abbrev=False,  # a shortened flag must not silently pick one of several settings
    )
    parser.add_argument(
        "--job-dir", "--job_dir", dest="job_dir", default=None,
        help="Output folder for checkpoints, summaries, params.json and exports (local or "
        f"gs://). Defaults to ${cloud.MODEL_DIR_ENV} when set, else {DEMO_JOB_DIR} for the demo.",
    )  # fmt: skip
    parser.add_argument(
        "--train-csv", nargs="+", default=None, metavar="CSV",
        help="Training CSV file(s) of 'image_path;label' rows.",
    )  # fmt: skip
    parser.add_argument(
        "--eval-csv", nargs="+", default=None, metavar="CSV",
        help="Evaluation CSV file(s), same format.",
    )  # fmt: skip
    parser.add_argument(
        "--config", default=None,
        help="JSON file of Params settings; it may name a network with a \"preset\" key.",
    )  # fmt: skip
    parser.add_argument(
        "--preset", default=None, choices=sorted(network.PRESETS),
        help="A named network (paper: the default; small: for CPUs). Every setting given by "
        "--config, --param or a flag overrides it.",
    )  # fmt: skip
    parser.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE",
        help="Override one setting (repeatable); applied after --config.",
    )  # fmt: skip
    parser.add_argument(
        "--verbosity", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="TensorFlow's log level, its C++ start-up lines included (tf_crnn's own progress "
        "is always shown).",
    )  # fmt: skip
    settings = parser.add_argument_group(
        "settings",
        "Every scalar setting of Params is also a flag of its own (as hyperparameter-tuning "
        "services pass them); these win over --config and --param.",
    )
    defaults = Params()
    for f in dataclasses.fields(Params):
        if isinstance(getattr(defaults, f.name), list):
            continue
        names = [f"--{f.name}"] + ([f"--{f.name.replace('_', '-')}"] if "_" in f.name else [])
        doc = f"{f.metadata['doc']} [default: {getattr(defaults, f.name)!r}]".replace("%", "%%")
        settings.add_argument(
            *names, *FLAG_ALIASES.get(f.name, []), dest=f"setting.{f.name}",
            default=argparse.SUPPRESS, metavar=type(getattr(defaults, f.name)).__name__.upper(),
            help=doc,
        )  # fmt: skip
    return parser


def refuse_misspelled_settings(parser: argparse.ArgumentParser, unknown: Sequence[str]) -> None:
    """Unknown arguments are ignored (cloud services add their own), unless they look like a
    typo."""
    known = [option for action in parser._actions for option in action.option_strings]
    for argument in unknown:
        name = argument.split("=", 1)[0]
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.85)
        if name.startswith("--") and close:
            parser.error(f"unknown argument {name}: did you mean {close[0]}?")
    if unknown:
        logger.warning("ignoring unknown arguments: %s", " ".join(unknown))


def configure_logging(verbosity: str) -> None:
    """tf_crnn's own lines always; TensorFlow's Python logs at ``verbosity``.

    TensorFlow's C++ start-up lines are set by ``tf_crnn/__init__.py``, before TensorFlow loads.
    """
    tf.get_logger().setLevel(verbosity)
    # tf.estimator is deprecated as a whole; its dozens of notices would bury our own messages.
    deprecation._PRINT_DEPRECATION_WARNINGS = verbosity in ("DEBUG", "INFO")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):  # from an earlier call, perhaps on a replaced stderr
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("tf_crnn: %(message)s"))
    logger.addHandler(handler)


def resolve_job_dir(
    args: argparse.Namespace, demo_mode: bool, parser: argparse.ArgumentParser
) -> str:
    job_dir = args.job_dir or os.environ.get(cloud.MODEL_DIR_ENV)
    if job_dir:
        return job_dir
    if demo_mode:
        return DEMO_JOB_DIR
    parser.error(
        f"--job-dir is required when training on your own data (or ${cloud.MODEL_DIR_ENV})"
    )


def prepare_params(args: argparse.Namespace, job_dir: str, train_csv: Sequence[str]) -> Params:
    """Settings from --config (else the job directory's saved ones, else defaults) over a --preset,
    then --param and the per-setting flags, with the alphabet resolved.

    Rerunning a command in its job directory thus continues with the settings it was started
    with; what the command line changes is checked against the saved run.
    """
    saved_path = os.path.join(job_dir, PARAMS_FILE)
    saved = read_saved_params(job_dir)
    config_file = args.config or (DEMO_CONFIG if saved is None and not args.train_csv else None)
    base = saved if saved is not None and not args.config else Params()
    file_settings = read_settings_file(config_file) if config_file else {}
    # A preset comes first, so that every setting given (file, --param, flag) overrides it.
    file_preset = file_settings.pop("preset", None)
    preset = args.preset or file_preset
    if preset is not None:
        base = base.with_preset(preset)
    base = base.with_overrides(file_settings, source=config_file or "")
    overrides = parse_key_values(args.param)
    flags = {k.split(".", 1)[1]: v for k, v in vars(args).items() if k.startswith("setting.")}
    overrides.update(flags)
    params = base.with_overrides(overrides, source="the command line")
    params = with_resolved_alphabet(params, train_csv)
    if saved is not None:
        check_resumable(saved, params, saved_path)
    return params


if __name__ == "__main__":
    sys.exit(main())
