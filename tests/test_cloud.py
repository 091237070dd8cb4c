"""Cloud training files: the Vertex AI job specs, the Dockerfile, and tf_crnn.cloud.

The job specs cannot be submitted from here, so these tests hold them to what can be checked
offline: the fields Vertex AI requires, that every argument they pass (and every value a tuning
trial may pass) is accepted by tf_crnn.task's own parser and by Params, and that the commented
variants stay valid YAML.
"""

import json
import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import yaml

from tf_crnn import cloud, task
from tf_crnn.config import Params

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_P100 = os.path.join(REPO, "config_p100.yaml")
HPTUNING = os.path.join(REPO, "hptuning_config.yaml")
DOCKERFILE = os.path.join(REPO, "Dockerfile")


def load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def commented_variants(path):
    """``{name: spec}`` for each ``# >>> variant: name`` ... ``# <<< variant`` block,
    uncommented."""
    variants, name, lines = {}, None, []
    with open(path, encoding="utf-8") as f:
        for line in f.read().splitlines():
            start = re.match(r"# >>> variant: (\S+)$", line)
            if start:
                name, lines = start.group(1), []
            elif line == "# <<< variant":
                variants[name] = yaml.safe_load("\n".join(lines))
                name = None
            elif name is not None:
                assert line == "#" or line.startswith(
                    "# "
                ), f"variant {name}: not a comment line: {line!r}"
                lines.append(line[2:])
    assert name is None, f"variant {name} is not closed"
    return variants


def setup_value(key):
    """``name`` or ``version`` as setup.py gives it."""
    with open(os.path.join(REPO, "setup.py"), encoding="utf-8") as f:
        return re.search(rf'{key}="([^"]+)"', f.read()).group(1)


def sdist_name():
    return f"{setup_value('name')}-{setup_value('version')}.tar.gz"


def image_uri():
    """The image the job specs and the build commands name: Artifact Registry, the placeholder
    project the README explains, the package's version as tag."""
    return f"us-central1-docker.pkg.dev/YOUR_PROJECT/tf-crnn/tf-crnn:{setup_value('version')}"


def settings_in(args):
    """The Params settings that flags in ``args`` set, by field name (``--train-steps`` is
    train_steps)."""
    names, settings, i = set(Params.field_names()), {}, 0
    while i < len(args):
        key, sep, value = args[i][2:].partition("=") if args[i].startswith("--") else ("", "", "")
        key = key.replace("-", "_")
        if key in names:
            if not sep:
                i += 1
                value = args[i]
            settings[key] = value
        i += 1
    return settings


def assert_task_accepts(args):
    """``args`` parse with tf_crnn.task's parser, none unknown, and their settings make valid
    Params."""
    parsed, unknown = task.build_parser().parse_known_args(args)
    assert unknown == [], f"tf_crnn.task does not know {unknown}"
    Params().with_overrides(settings_in(args))  # raises ParamsError on a value a setting rejects
    return parsed


def assert_runs_own_data(parsed):
    """A cloud job trains on its own CSVs (not the demo) and writes to AIP_MODEL_DIR (no
    --job-dir)."""
    assert parsed.train_csv and all(p.startswith("gs://") for p in parsed.train_csv)
    assert parsed.eval_csv and all(p.startswith("gs://") for p in parsed.eval_csv)
    assert parsed.job_dir is None


def assert_p100_machine(pool):
    assert pool["machineSpec"]["acceleratorType"] == "NVIDIA_TESLA_P100"
    assert pool["machineSpec"]["acceleratorCount"] == 1
    assert pool["machineSpec"]["machineType"].startswith("n1-")  # P100s attach to N1 machines only


def assert_python_package(spec):
    assert spec["executorImageUri"].startswith("us-docker.pkg.dev/vertex-ai/training/tf-gpu.2-15.")
    # Prebuilt images are only served as :latest.
    assert spec["executorImageUri"].endswith(":latest")
    assert [uri.rsplit("/", 1)[1] for uri in spec["packageUris"]] == [sdist_name()]
    assert all(uri.startswith("gs://") for uri in spec["packageUris"])
    assert spec["pythonModule"] == "tf_crnn.task"


def assert_custom_container(spec):
    assert spec["imageUri"] == image_uri()
    # Keep the image's ENTRYPOINT (python3 -m tf_crnn.task): args are appended to it.
    assert "command" not in spec


def active_args():
    return load(CONFIG_P100)["workerPoolSpecs"][0]["containerSpec"]["args"]


def no_underscore_keys(node, where="spec"):
    """gcloud rejects config keys with underscores (the API's snake_case names)."""
    if isinstance(node, dict):
        for key, value in node.items():
            assert "_" not in key, f"{where}.{key}: gcloud wants camelCase keys"
            no_underscore_keys(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            no_underscore_keys(value, f"{where}[{index}]")


# --- config_p100.yaml ------------------------------------------------------------------------


def test_config_p100_is_a_p100_chief_running_the_custom_container():
    spec = load(CONFIG_P100)
    no_underscore_keys(spec)
    (chief,) = spec["workerPoolSpecs"]
    assert chief["replicaCount"] == 1
    assert_p100_machine(chief)
    assert "pythonPackageSpec" not in chief
    assert_custom_container(chief["containerSpec"])
    assert spec["baseOutputDirectory"]["outputUriPrefix"].startswith("gs://")  # sets AIP_MODEL_DIR


def test_config_p100_args_parse_with_the_task_parser():
    assert_runs_own_data(assert_task_accepts(active_args()))


def test_config_p100_and_dockerfile_say_how_to_build_and_push_the_image():
    for path in (CONFIG_P100, DOCKERFILE):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        assert f"docker build -t {image_uri()} ." in text, path
        assert f"docker push {image_uri()}" in text, path
    with open(CONFIG_P100, encoding="utf-8") as f:
        assert "Replace YOUR_PROJECT" in f.read()


def test_config_p100_prebuilt_container_variant():
    spec = commented_variants(CONFIG_P100)["prebuilt-container"]
    no_underscore_keys(spec)
    (chief,) = spec["workerPoolSpecs"]
    assert chief["replicaCount"] == 1
    assert_p100_machine(chief)
    assert "containerSpec" not in chief
    assert_python_package(chief["pythonPackageSpec"])
    assert chief["pythonPackageSpec"]["args"] == active_args()
    assert spec["baseOutputDirectory"] == load(CONFIG_P100)["baseOutputDirectory"]


def test_config_p100_multi_worker_variant_has_the_four_vertex_pools():
    spec = commented_variants(CONFIG_P100)["multi-worker"]
    no_underscore_keys(spec)
    chief, workers, parameter_servers, evaluator = spec["workerPoolSpecs"]
    assert chief["replicaCount"] == 1 and evaluator["replicaCount"] == 1
    assert workers["replicaCount"] >= 1 and parameter_servers["replicaCount"] >= 1
    assert_p100_machine(chief)
    assert_p100_machine(workers)
    # Parameter servers hold variables only.
    assert "acceleratorType" not in parameter_servers["machineSpec"]
    # Every task runs the same program: tf.estimator picks its role from TF_CONFIG.
    programs = [pool["containerSpec"] for pool in spec["workerPoolSpecs"]]
    assert all(program == programs[0] for program in programs)
    assert_custom_container(programs[0])
    assert programs[0]["args"] == active_args()


# --- hptuning_config.yaml --------------------------------------------------------------------


def trial_values(parameter):
    """Values a trial may get for ``parameter``, as the flag text Vertex AI passes."""
    if "doubleValueSpec" in parameter:
        spec = parameter["doubleValueSpec"]
        return [repr(float(spec["minValue"])), repr(float(spec["maxValue"]))]
    if "integerValueSpec" in parameter:
        spec = parameter["integerValueSpec"]
        return [str(int(spec["minValue"])), str(int(spec["maxValue"]))]
    if "discreteValueSpec" in parameter:
        # Sent as floats: "256.0".
        return [repr(float(v)) for v in parameter["discreteValueSpec"]["values"]]
    return [str(v) for v in parameter["categoricalValueSpec"]["values"]]


def test_hptuning_minimizes_cer():
    spec = load(HPTUNING)
    no_underscore_keys(spec)
    assert spec["studySpec"]["metrics"] == [{"metricId": "cer", "goal": "MINIMIZE"}]
    assert 1 <= spec["parallelTrialCount"] <= spec["maxTrialCount"]


def test_hptuning_parameters_are_params_settings_with_flags():
    spec = load(HPTUNING)
    defaults = Params().to_dict()
    parameter_ids = [p["parameterId"] for p in spec["studySpec"]["parameters"]]
    assert {"learning_rate", "rnn_units", "dropout_rate"} <= set(parameter_ids)
    for parameter in spec["studySpec"]["parameters"]:
        name = parameter["parameterId"]
        assert name in defaults and not isinstance(
            defaults[name], (list, dict)
        ), f"{name} is no scalar setting"
        if "doubleValueSpec" in parameter:
            assert (
                parameter["doubleValueSpec"]["minValue"] < parameter["doubleValueSpec"]["maxValue"]
            )
            assert parameter["scaleType"] in ("UNIT_LINEAR_SCALE", "UNIT_LOG_SCALE")
        for value in trial_values(parameter):
            parsed, unknown = task.build_parser().parse_known_args([f"--{name}={value}"])
            assert unknown == [], f"--{name} is not a flag of tf_crnn.task"
            # Accepted, in range.
            assert getattr(Params().with_overrides({name: value}), name) is not None
    learning_rate = next(
        p for p in spec["studySpec"]["parameters"] if p["parameterId"] == "learning_rate"
    )
    assert learning_rate["scaleType"] == "UNIT_LOG_SCALE"


def test_hptuning_trial_job_runs_the_same_program_as_config_p100():
    trial_spec = load(HPTUNING)["trialJobSpec"]
    (chief,) = trial_spec["workerPoolSpecs"]
    assert chief["replicaCount"] == 1
    assert_p100_machine(chief)
    # The image of config_p100.yaml: the prebuilt TensorFlow 2.15 image is past its end of
    # availability.
    assert "pythonPackageSpec" not in chief
    program = chief["containerSpec"]
    assert_custom_container(program)
    assert_runs_own_data(assert_task_accepts(program["args"]))
    tuned = {p["parameterId"] for p in load(HPTUNING)["studySpec"]["parameters"]}
    assert not tuned & set(
        settings_in(program["args"])
    ), "tuned settings must not also be fixed in args"
    assert trial_spec["baseOutputDirectory"]["outputUriPrefix"].startswith("gs://")


def test_hptuning_trial_args_with_tuned_flags_appended_parse():
    """What a trial really runs: the fixed args, then one flag per parameter."""
    spec = load(HPTUNING)
    args = list(spec["trialJobSpec"]["workerPoolSpecs"][0]["containerSpec"]["args"])
    args += [f"--{p['parameterId']}={trial_values(p)[-1]}" for p in spec["studySpec"]["parameters"]]
    parsed = assert_task_accepts(args)
    assert_runs_own_data(parsed)
    params = Params().with_overrides(settings_in(args))
    assert (params.learning_rate, params.rnn_units, params.dropout_rate) == (0.01, 512, 0.5)


# --- Dockerfile ------------------------------------------------------------------------------


def dockerfile_stages():
    """{stage name: (base image, [(INSTRUCTION, arguments), ...])} in build order (the last one
    is the image), continuation lines joined, comments dropped."""
    with open(DOCKERFILE, encoding="utf-8") as f:
        text = re.sub(r"\\\n", " ", f.read())
    stages = {}
    for line in text.splitlines():
        if not line.strip() or line.strip().startswith("#"):
            continue
        instruction, arguments = line.strip().split(None, 1)
        if instruction == "FROM":
            base, _, name = arguments.partition(" AS ")
            instructions = []
            stages[name or f"stage {len(stages)}"] = (base, instructions)
        else:
            instructions.append((instruction, arguments))
    return stages


def test_dockerfile_image_builds_on_tensorflow_2_15_gpu():
    *_, (base, _) = dockerfile_stages().values()
    assert re.fullmatch(r"tensorflow/tensorflow:2\.15\.\d+-gpu", base)


def test_dockerfile_installs_the_package_from_its_sdist_and_keeps_the_image_tensorflow():
    *build_stages, (_, (_, image)) = dockerfile_stages().items()
    # A build stage makes the sdist from the sources...
    assert build_stages, "no build stage: the image must install an sdist, not the sources"
    (stage, (_, build)), *_ = build_stages
    build_runs = " ".join(arguments for op, arguments in build if op == "RUN")
    assert "-m build --sdist --outdir /dist" in build_runs
    # ... and the image gets that archive only, and installs it.
    assert [arguments for op, arguments in image if op == "COPY"] == [
        f"--from={stage} /dist/ /tmp/dist/"
    ]
    runs = " ".join(arguments for op, arguments in image if op == "RUN")
    assert re.search(r"pip install /tmp/dist/tf_crnn-\*\.tar\.gz ", runs)
    for forbidden in (" -e ", "--editable", "--upgrade", "tensorflow==", "--force-reinstall"):
        assert forbidden not in runs
    assert "tf.__version__.startswith('2.15.')" in runs


def test_dockerfile_sdist_stage_copies_what_the_sdist_is_made_of():
    (_, build), *_ = dockerfile_stages().values()
    copies = [arguments.split() for op, arguments in build if op == "COPY"]
    sources = [source for *sources, _ in copies for source in sources]
    with open(os.path.join(REPO, "MANIFEST.in"), encoding="utf-8") as f:
        included = [name for line in f if line.startswith("include ") for name in line.split()[1:]]
    assert {"setup.py", "pyproject.toml", "MANIFEST.in", "tf_crnn", "hlp", *included} <= set(
        sources
    )
    for source in sources:
        assert os.path.exists(
            os.path.join(REPO, source)
        ), f"COPY {source}: no such file in the repository"


def test_dockerfile_entrypoint_runs_the_task():
    *_, (_, image) = dockerfile_stages().values()
    entrypoints = [json.loads(arguments) for op, arguments in image if op == "ENTRYPOINT"]
    assert entrypoints == [["python3", "-m", "tf_crnn.task"]]


# --- tf_crnn.cloud ---------------------------------------------------------------------------


def test_no_trial_no_tuning():
    environ = {"AIP_MODEL_DIR": "gs://bucket/run/model/"}
    assert cloud.trial_id(environ) is None
    assert cloud.trial_id({cloud.TRIAL_ID_ENV: "  "}) is None
    assert cloud.trial_job_dir("gs://bucket/run", environ) == "gs://bucket/run"
    assert cloud.trial_job_dir("runs/local", {}) == "runs/local"


def test_trial_job_dir_is_one_folder_per_trial():
    assert cloud.trial_id({cloud.TRIAL_ID_ENV: "7"}) == "7"
    assert cloud.trial_job_dir("gs://bucket/job", {cloud.TRIAL_ID_ENV: "7"}) == "gs://bucket/job/7"
    assert cloud.trial_job_dir("gs://bucket/job/", {cloud.TRIAL_ID_ENV: "7"}) == "gs://bucket/job/7"


def test_trial_job_dir_keeps_aip_model_dir_which_vertex_already_made_per_trial():
    environ = {cloud.TRIAL_ID_ENV: "7", "AIP_MODEL_DIR": "gs://bucket/hp/7/model/"}
    assert cloud.trial_job_dir("gs://bucket/hp/7/model/", environ) == "gs://bucket/hp/7/model/"
    assert cloud.trial_job_dir("gs://bucket/hp/7/model", environ) == "gs://bucket/hp/7/model"
    # An explicit --job-dir.
    assert cloud.trial_job_dir("gs://bucket/mine", environ) == "gs://bucket/mine/7"


def test_two_trials_do_not_overwrite_each_other(tmp_path):
    job_dir = str(tmp_path / "job")
    dirs = [cloud.trial_job_dir(job_dir, {cloud.TRIAL_ID_ENV: trial}) for trial in ("1", "2")]
    assert len(set(dirs)) == 2
    for index, folder in enumerate(dirs):
        os.makedirs(folder)
        with open(os.path.join(folder, "checkpoint"), "w") as f:
            f.write(f"trial {index + 1}")
    for index, folder in enumerate(dirs):
        with open(os.path.join(folder, "checkpoint")) as f:
            assert f.read() == f"trial {index + 1}"
    assert not os.path.exists(os.path.join(job_dir, "checkpoint"))


def test_report_writes_the_hypertune_metric_file(tmp_path):
    path = str(tmp_path / "hypertune" / "output.metrics")
    environ = {cloud.TRIAL_ID_ENV: "3", cloud.METRIC_FILE_ENV: path}
    assert cloud.report_hyperparameter_metric("cer", 0.25, 1000, environ) == path
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert set(entry) == {"cer", "global_step", "timestamp", "trial"}
    assert (entry["cer"], entry["global_step"], entry["trial"]) == ("0.25", "1000", "3")
    assert isinstance(entry["timestamp"], float)
    assert lines[0] == json.dumps(entry, sort_keys=True)  # cloudml-hypertune's exact line format


def test_report_keeps_earlier_reports_newest_last(tmp_path):
    import numpy as np

    path = str(tmp_path / "output.metrics")
    environ = {cloud.TRIAL_ID_ENV: "4", cloud.METRIC_FILE_ENV: path}
    cloud.report_hyperparameter_metric("cer", 0.5, 500, environ)
    # Values from TF.
    cloud.report_hyperparameter_metric("cer", np.float32(0.125), np.int64(1000), environ)
    with open(path, encoding="utf-8") as f:
        entries = [json.loads(line) for line in f]
    assert [(e["cer"], e["global_step"]) for e in entries] == [("0.5", "500"), ("0.125", "1000")]
    for _ in range(cloud.MAX_METRIC_ENTRIES + 5):
        cloud.report_hyperparameter_metric("cer", 0.1, 2000, environ)
    with open(path, encoding="utf-8") as f:
        assert len(f.read().splitlines()) == cloud.MAX_METRIC_ENTRIES
    assert [
        name for name in os.listdir(tmp_path) if name != "output.metrics"
    ] == []  # no temporary left


def test_report_without_trial_id_uses_an_explicit_metric_file(tmp_path):
    path = str(tmp_path / "metrics")
    assert cloud.report_hyperparameter_metric("cer", 0.5, 10, {cloud.METRIC_FILE_ENV: path}) == path
    with open(path, encoding="utf-8") as f:
        assert json.loads(f.readline())["trial"] == "0"


def test_report_in_a_tuning_trial_defaults_to_the_hypertune_path(tmp_path, monkeypatch):
    assert cloud.metric_file({cloud.TRIAL_ID_ENV: "1"}) == "/tmp/hypertune/output.metrics"
    default = str(tmp_path / "hypertune" / "output.metrics")
    monkeypatch.setattr(cloud, "DEFAULT_METRIC_FILE", default)
    assert cloud.report_hyperparameter_metric("cer", 0.5, 10, {cloud.TRIAL_ID_ENV: "1"}) == default
    with open(default, encoding="utf-8") as f:
        assert json.loads(f.readline())["trial"] == "1"


def test_no_trial_no_metric_file(tmp_path, monkeypatch):
    monkeypatch.setattr(
        cloud, "DEFAULT_METRIC_FILE", str(tmp_path / "hypertune" / "output.metrics")
    )
    assert (
        cloud.report_hyperparameter_metric("cer", 0.5, 10, {"AIP_MODEL_DIR": "gs://b/m/"}) is None
    )
    assert os.listdir(tmp_path) == []
