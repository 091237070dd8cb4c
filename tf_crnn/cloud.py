"""What a Vertex AI training job tells the program through its environment, and what the program
tells back.

Legacy Cloud ML Engine / AI Platform Training was shut down in January 2025. Its successor, Vertex
AI custom training, runs ``python -m tf_crnn.task`` (from the sdist on a prebuilt container, or from
the ``Dockerfile`` image) and talks to it only through environment variables and one local file:

- ``AIP_MODEL_DIR``: set when the job spec has a ``baseOutputDirectory``; ``<base>/model/`` for a
  custom job, and already ``<base>/<trial id>/model/`` for a hyperparameter-tuning trial.
  ``task.py`` uses it when no ``--job-dir`` is given (Vertex AI passes no ``--job-dir``).
- ``TF_CONFIG``: the cluster (chief, workers, parameter servers, evaluator);
  ``tf.estimator.RunConfig`` reads it by itself, so nothing here touches it.
- ``CLOUD_ML_TRIAL_ID``: the trial's id while a hyperparameter-tuning job runs it.
- ``CLOUD_ML_HP_METRIC_FILE``: the file the tuning service reads the trial's metric from
  (``/tmp/hypertune/output.metrics`` when unset).

The last two are the ones Google's ``cloudml-hypertune`` library reads. That library is only
published as a 0.1.0.dev6 sdist, and what it does is small and fixed: this module writes the same
file itself, so the package needs no extra dependency and behaves the same on a laptop, a prebuilt
container and a custom one. The metric file is local to the training VM, never ``gs://``, so it is
written with plain ``open`` rather than ``tf.io.gfile``; this module does not import TensorFlow.
"""

from __future__ import annotations

import collections
import json
import os
import tempfile
import time
from collections.abc import Mapping

TRIAL_ID_ENV = "CLOUD_ML_TRIAL_ID"
METRIC_FILE_ENV = "CLOUD_ML_HP_METRIC_FILE"
MODEL_DIR_ENV = "AIP_MODEL_DIR"
# cloudml-hypertune's default metric file and the number of reports it keeps in it.
DEFAULT_METRIC_FILE = "/tmp/hypertune/output.metrics"
MAX_METRIC_ENTRIES = 100

# Reports made by this process, per metric file: like cloudml-hypertune, a process starts its file
# afresh and rewrites it whole with its last MAX_METRIC_ENTRIES reports.
_reports: dict[str, collections.deque[dict]] = {}


def trial_id(environ: Mapping[str, str] = os.environ) -> str | None:
    """The hyperparameter-tuning trial this process runs, or None outside a tuning job."""
    value = environ.get(TRIAL_ID_ENV, "").strip()
    return value or None


def trial_job_dir(job_dir: str, environ: Mapping[str, str] = os.environ) -> str:
    """``job_dir/<trial id>`` during hyperparameter tuning, else ``job_dir`` unchanged.

    Every trial of a tuning job gets the same ``--job-dir`` argument; without a folder of its own
    each trial would resume from, and overwrite, the checkpoints of the others. All replicas of one
    trial (chief, workers, evaluator) share its trial id, so they still share one model directory.

    ``AIP_MODEL_DIR`` is the exception: Vertex AI already sets it to ``<base>/<trial id>/model/``
    for a trial, so a ``job_dir`` taken from it is returned as it is rather than nested a second
    time.
    """
    trial = trial_id(environ)
    if trial is None:
        return job_dir
    model_dir = environ.get(MODEL_DIR_ENV, "")
    if model_dir and model_dir.rstrip("/") == job_dir.rstrip("/"):
        return job_dir
    return os.path.join(job_dir, trial)


def metric_file(environ: Mapping[str, str] = os.environ) -> str:
    """Where the tuning service reads reported metrics from."""
    return environ.get(METRIC_FILE_ENV) or DEFAULT_METRIC_FILE


def report_hyperparameter_metric(
    tag: str, value: float, global_step: int, environ: Mapping[str, str] = os.environ
) -> str | None:
    """Reports ``value`` of metric ``tag`` at ``global_step`` to the hyperparameter-tuning service.

    Writes only during tuning, which is when ``CLOUD_ML_TRIAL_ID`` or ``CLOUD_ML_HP_METRIC_FILE`` is
    set: nothing else reads the file, so an ordinary run (on a laptop or as a plain custom job)
    leaves no ``/tmp/hypertune`` behind. Returns the path written, or None when nothing was written.

    The file is the one ``cloudml-hypertune`` writes and the service reads: one JSON object per
    line, keys sorted, the newest last, holding the last 100 reports of this process and rewritten
    whole on each report. Each line holds the metric under its own tag, all values but the timestamp
    as strings::

        {"cer": "0.0421", "global_step": "12000", "timestamp": 1764120000.5, "trial": "3"}

    ``tag`` must equal the ``metricId`` of the tuning job's ``studySpec`` (``cer`` in
    ``hptuning_config.yaml``). The file is replaced atomically, so the service never reads half a
    line.
    """
    trial = trial_id(environ)
    if trial is None and not environ.get(METRIC_FILE_ENV):
        return None
    path = metric_file(environ)
    entry = {
        "timestamp": time.time(),
        "trial": str(trial or 0),
        tag: str(float(value)),
        "global_step": str(int(global_step or 0)),
    }
    reports = _reports.setdefault(path, collections.deque(maxlen=MAX_METRIC_ENTRIES))
    reports.append(entry)
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".metrics-")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            for report in reports:
                f.write(json.dumps(report, sort_keys=True) + "\n")
        os.chmod(temporary, 0o644)  # mkstemp makes it owner-only; the reader may be another user
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return path
