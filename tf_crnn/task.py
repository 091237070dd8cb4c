"""``python -m tf_crnn.task``: train, evaluate and export a CRNN, on a laptop or as a cloud training job.

This module only parses arguments and wires the pieces together: Params from the command line, the
RunConfig and distribution strategy from Params and TF_CONFIG, ``train_and_evaluate`` with its
exporters (``export_model.py``), and the closing report. Model code lives in ``model.py``, input code
in ``data_handler.py``.

With no ``--train-csv`` it generates the embedded demo data set into the job directory and trains
on it with the demo settings (``tf_crnn/configs/demo.json``), so a newcomer sees the whole pipeline
work offline with one command.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import faulthandler
import json
import logging
import os
import signal
import sys
import time
from typing import List, Optional, Sequence

import tensorflow as tf
from tensorflow.python.util import deprecation

from tf_crnn import cloud, data_handler, demo, model, visualize
from tf_crnn.config import Params, ParamsError, check_resumable, parse_key_values
from tf_crnn.export_model import PARAMS_FILE, ServingExporter
from tf_crnn.reporting import EvalReporter, ProgressHook, format_eval_table

logger = logging.getLogger("tf_crnn")

DEMO_JOB_DIR = os.path.join("runs", "demo")
DEMO_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "demo.json")
# Evaluation images shown in samples.png.
SAMPLES_SHOWN = 16
# Flag names kept from older tools and cloud conventions, as aliases of Params settings.
FLAG_ALIASES = {"n_epochs": ["--num-epochs"], "eval_throttle_secs": ["--eval-interval"]}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tf_crnn.task",
        description="Train, evaluate and export a CRNN text recognizer. Without --train-csv, trains on the "
                    "embedded demo data set.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        allow_abbrev=False)  # a shortened flag must not silently pick one of several settings
    parser.add_argument("--job-dir", "--job_dir", dest="job_dir", default=None,
                        help="Output folder for checkpoints, summaries, params.json and exports (local or gs://). "
                             f"Defaults to $AIP_MODEL_DIR when set, else {DEMO_JOB_DIR} for the demo.")
    parser.add_argument("--train-csv", nargs="+", default=None, metavar="CSV",
                        help="Training CSV file(s) of 'image_path;label' rows.")
    parser.add_argument("--eval-csv", nargs="+", default=None, metavar="CSV",
                        help="Evaluation CSV file(s), same format.")
    parser.add_argument("--config", default=None, help="JSON file of Params settings.")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="Override one setting (repeatable); applied after --config.")
    parser.add_argument("--verbosity", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="TensorFlow's log level (tf_crnn's own progress is always shown).")
    settings = parser.add_argument_group(
        "settings", "Every scalar setting of Params is also a flag of its own (as hyperparameter-tuning services "
                    "pass them); these win over --config and --param.")
    defaults = Params()
    for f in dataclasses.fields(Params):
        if f.type.startswith("List"):
            continue
        names = [f"--{f.name}"] + ([f"--{f.name.replace('_', '-')}"] if "_" in f.name else [])
        doc = f"{f.metadata['doc']} [default: {getattr(defaults, f.name)!r}]".replace("%", "%%")
        settings.add_argument(*names, *FLAG_ALIASES.get(f.name, []), dest=f"setting.{f.name}",
                              default=argparse.SUPPRESS, metavar=f.type.upper(), help=doc)
    return parser


def params_from_args(args: argparse.Namespace, base: Params) -> Params:
    """``base`` with --param pairs, then the per-setting flags, applied (and validated) together."""
    overrides = parse_key_values(args.param)
    overrides.update({key.split(".", 1)[1]: value for key, value in vars(args).items() if key.startswith("setting.")})
    return base.with_overrides(overrides, source="the command line")


def read_tf_config() -> dict:
    """The cluster and task that a cloud service (or you) set in $TF_CONFIG; {} when training alone."""
    try:
        return json.loads(os.environ.get("TF_CONFIG") or "{}")
    except json.JSONDecodeError as error:
        raise ParamsError(f"TF_CONFIG is not valid JSON: {error}") from None


def is_chief(tf_config: dict) -> bool:
    """Whether this process reports and writes the run's files: the chief, or a process training alone.

    Read from TF_CONFIG, because under MultiWorkerMirroredStrategy every worker's RunConfig says chief.
    """
    task = tf_config.get("task", {})
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and task.get("index", 0) == 0 and not tf_config.get("cluster", {}).get("chief")


def build_strategy(params: Params, tf_config: dict) -> Optional[tf.distribute.Strategy]:
    """The distribution strategy ``params.distribution`` asks for, or an error saying why it cannot apply."""
    cluster = tf_config.get("cluster", {})
    task_type = tf_config.get("task", {}).get("type")
    machines = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    if params.distribution == "none":
        return None
    if params.distribution == "mirrored":
        if machines > 1:
            raise ParamsError("distribution: 'mirrored' uses the GPUs of one machine, but TF_CONFIG names "
                              f"{machines} training machines; use multi_worker_mirrored or parameter_server")
        return tf.distribute.MirroredStrategy(devices=params.mirrored_devices or None)
    if params.distribution == "multi_worker_mirrored" and not machines:
        raise ParamsError("distribution: 'multi_worker_mirrored' needs TF_CONFIG with a cluster of chief/worker "
                          "tasks (set by the cloud service, or by you: see the README)")
    if params.distribution == "parameter_server" and not cluster.get("ps"):
        raise ParamsError("distribution: 'parameter_server' needs TF_CONFIG with 'ps' tasks")
    if task_type == "evaluator":
        # The evaluator evaluates alone; a MultiWorkerMirroredStrategy built there fails (KeyError).
        return None
    if params.distribution == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    # TF2's ParameterServerStrategy does not work with Estimator; the compat.v1 one does.
    return tf.compat.v1.distribute.experimental.ParameterServerStrategy()


def check_batch_split(params: Params, strategy: Optional[tf.distribute.Strategy]) -> None:
    """train_batch_size is global: it must split evenly over the replicas that train in sync."""
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    if params.train_batch_size % replicas:
        raise ParamsError(f"train_batch_size: {params.train_batch_size} images do not split evenly over the "
                          f"{replicas} replicas of distribution '{params.distribution}'")


def session_config_for(params: Params, tf_config: dict) -> tf.compat.v1.ConfigProto:
    """The session config: ours replaces the Estimator's default, so it must carry what that one did."""
    config = tf.compat.v1.ConfigProto(allow_soft_placement=True)
    if params.distribution == "mirrored":
        # Sessions see one CPU unless told otherwise, so mirroring over logical CPUs would hang.
        config.device_count["CPU"] = len(tf.config.list_logical_devices("CPU"))
    task = tf_config.get("task", {})
    if tf_config.get("cluster", {}).get("ps") and task.get("type") in ("chief", "worker"):
        # Talk only to the parameter servers and ourselves: without this filter a session waits for every
        # task of the cluster, and the chief's final prediction hangs once the workers have finished.
        config.device_filters.extend(["/job:ps", f"/job:{task['type']}/task:{task.get('index', 0)}"])
    return config


def build_run_config(params: Params, job_dir: str, strategy: Optional[tf.distribute.Strategy],
                     tf_config: dict) -> tf.estimator.RunConfig:
    """The RunConfig the Estimator really uses (tf-crnn built one with ``replace()`` and threw it away)."""
    return tf.estimator.RunConfig(
        model_dir=job_dir,
        tf_random_seed=params.random_seed,
        save_checkpoints_steps=params.save_interval,
        keep_checkpoint_max=params.keep_checkpoint_max,
        save_summary_steps=params.save_summary_steps,
        log_step_count_steps=params.log_step_count_steps,
        session_config=session_config_for(params, tf_config),
        train_distribute=strategy,
    )


def build_estimator(params: Params, job_dir: str, strategy: Optional[tf.distribute.Strategy] = None,
                    tf_config: Optional[dict] = None) -> tf.estimator.Estimator:
    config = build_run_config(params, job_dir, strategy, tf_config or {})
    return tf.estimator.Estimator(model.crnn_fn, config=config, params=params)


def local_estimator(params: Params, job_dir: str) -> tf.estimator.Estimator:
    """An Estimator of ``job_dir`` that ignores TF_CONFIG (RunConfig reads it from the environment)."""
    tf_config = os.environ.pop("TF_CONFIG", None)
    try:
        return build_estimator(params, job_dir)
    finally:
        if tf_config is not None:
            os.environ["TF_CONFIG"] = tf_config


def configure_logging(verbosity: str) -> None:
    tf.get_logger().setLevel(verbosity)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbosity in ("DEBUG", "INFO") else "2")
    # tf.estimator is deprecated as a whole; its dozens of notices would bury our own messages.
    deprecation._PRINT_DEPRECATION_WARNINGS = verbosity in ("DEBUG", "INFO")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):  # from an earlier call, perhaps on a stderr since replaced
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("tf_crnn: %(message)s"))
    logger.addHandler(handler)


def refuse_misspelled_settings(parser: argparse.ArgumentParser, unknown: Sequence[str]) -> None:
    """Unknown arguments are ignored (cloud services add their own), unless they look like a typo of ours."""
    known = [option for action in parser._actions for option in action.option_strings]
    for argument in unknown:
        name = argument.split("=", 1)[0]
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.85) if name.startswith("--") else []
        if close:
            parser.error(f"unknown argument {name}: did you mean {close[0]}?")
    if unknown:
        logger.warning("ignoring unknown arguments: %s", " ".join(unknown))


def resolve_job_dir(args: argparse.Namespace, demo_mode: bool) -> str:
    job_dir = args.job_dir or os.environ.get(cloud.MODEL_DIR_ENV)
    if job_dir:
        return job_dir
    if demo_mode:
        return DEMO_JOB_DIR
    raise SystemExit("error: --job-dir is required when training on your own data")


def prepare_params(args: argparse.Namespace, job_dir: str, train_csv: Sequence[str]) -> Params:
    """Settings from --config (else the job directory's saved ones, else defaults), --param and flags.

    Rerunning a command in its job directory thus continues with the settings it was started with;
    what the command line changes is checked against the saved run.
    """
    saved_path = os.path.join(job_dir, PARAMS_FILE)
    saved = Params.from_json(saved_path) if tf.io.gfile.exists(saved_path) else None
    if args.config:
        base = Params.from_json(args.config)
    elif saved is not None:
        base = saved
    else:
        base = Params.from_json(DEMO_CONFIG) if not args.train_csv else Params()
    params = data_handler.with_resolved_alphabet(params_from_args(args, base), train_csv)
    if saved is not None:
        check_resumable(saved, params, saved_path)
    return params


def main(argv: Optional[List[str]] = None) -> int:
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
    job_dir = cloud.trial_job_dir(resolve_job_dir(args, demo_mode))
    tf.io.gfile.makedirs(job_dir)

    try:
        if demo_mode:
            logger.info("no --train-csv given: training on the embedded demo data set in %s", job_dir)
            train_csv, eval_csv = (
                [path] for path in demo.generate_demo_dataset(os.path.join(job_dir, "data")))
        else:
            train_csv, eval_csv = args.train_csv, args.eval_csv
        params = prepare_params(args, job_dir, train_csv)
        # Before any TensorFlow op runs: MultiWorkerMirroredStrategy must configure the runtime first.
        tf_config = read_tf_config()
        strategy = build_strategy(params, tf_config)
        check_batch_split(params, strategy)
        train_samples = data_handler.load_samples(train_csv, params)
        data_handler.load_samples(eval_csv, params)
        if params.n_epochs:
            params = params.with_overrides({"train_steps": params.steps_for_epochs(len(train_samples.rows))})
        estimator = build_estimator(params, job_dir, strategy, tf_config)
    except (ParamsError, ValueError) as error:
        logger.error("%s", error)
        return 2
    chief = is_chief(tf_config)
    if chief:
        params.to_json(os.path.join(job_dir, PARAMS_FILE))
    logger.info("alphabet: %d units; training to step %d; settings saved in %s", len(params.alphabet_units),
                params.train_steps, os.path.join(job_dir, PARAMS_FILE))

    progress = ProgressHook(params.train_steps, params.log_step_count_steps, params.train_batch_size)
    reporter = EvalReporter()
    latest_exporter = ServingExporter("latest", params, keep=params.exports_to_keep)
    best_exporter = ServingExporter("best", params, keep=params.best_exports_to_keep, best_only=True)
    train_spec = tf.estimator.TrainSpec(
        lambda input_context=None: data_handler.input_fn(train_csv, params, data_handler.TRAIN,
                                                         input_context=input_context),
        max_steps=params.train_steps, hooks=[progress])
    eval_spec = tf.estimator.EvalSpec(
        lambda: data_handler.input_fn(eval_csv, params, data_handler.EVAL), steps=params.eval_steps or None,
        exporters=[reporter, latest_exporter, best_exporter], throttle_secs=params.eval_throttle_secs,
        start_delay_secs=params.eval_start_delay_secs)
    start = time.time()
    tf.estimator.train_and_evaluate(estimator, train_spec, eval_spec)
    wall_seconds = time.time() - start
    if not chief:
        # Workers and the evaluator are done; the chief reports (a parameter server never gets here).
        task = tf_config["task"]
        print(f"{task['type']} {task.get('index', 0)} finished after running "
              f"{progress.local_steps} training steps", flush=True)
        return 0

    # The closing predictions run in this process alone, from the saved checkpoint: in a cluster they
    # must not depend on tasks that may already have finished.
    estimator = local_estimator(params, job_dir)
    samples_path = os.path.join(job_dir, "samples.png")
    write_samples(estimator, eval_csv, params, samples_path)
    results = reporter.latest or estimator.evaluate(
        lambda: data_handler.input_fn(eval_csv, params, data_handler.EVAL), steps=params.eval_steps or None)
    speed = (f"{progress.local_steps * params.train_batch_size / progress.train_seconds:.0f} training images/s"
             if progress.local_steps else "nothing left to train")
    exports = [f"{os.path.join(job_dir, 'export', kind)} ({meaning})"
               for kind, meaning in (("latest", "newest"), ("best", "lowest CER"))
               if tf.io.gfile.glob(os.path.join(job_dir, "export", kind, "*", "saved_model.pb"))]
    print(f"\nfinished: global step {estimator.get_variable_value('global_step')}, {progress.local_steps} steps "
          f"trained in {wall_seconds:.0f} s wall time ({speed})\n"
          f"{format_eval_table(results)}\n"
          f"SavedModels: {', '.join(exports) or 'none (exports are made after evaluations, by the evaluator)'}\n"
          f"samples: {samples_path}", flush=True)
    return 0


def write_samples(estimator: tf.estimator.Estimator, eval_csv: Sequence[str], params: Params, path: str) -> None:
    """``samples.png``: the first evaluation images captioned with prediction and truth."""
    truths = {row.image_path: row.label for row in data_handler.load_samples(eval_csv, params).rows}
    paths, predictions = [], []
    for prediction in estimator.predict(
            lambda: data_handler.input_fn(eval_csv, params, data_handler.EVAL, batch_size=SAMPLES_SHOWN)):
        paths.append(prediction["filenames"].decode("utf-8"))
        predictions.append(prediction["words"].decode("utf-8"))
        if len(paths) == SAMPLES_SHOWN:
            break
    visualize.save_samples_png(path, paths, predictions, [truths[p] for p in paths])


if __name__ == "__main__":
    sys.exit(main())
