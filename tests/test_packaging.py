"""The sdist that a Vertex AI job installs (packageUris in config_p100.yaml) is complete and runs.

Built and installed offline, the way the cloud sees it: `python setup.py sdist`, then pip installs
the archive into an empty folder (dependencies are already in this environment), and
`python -m tf_crnn.task --help` runs from another folder with only that one on PYTHONPATH.
"""

import glob
import os
import subprocess
import sys
import tarfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def repo_files(pattern):
    return sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, pattern)))


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    """The sdist built from the working tree, into a temporary folder (egg-info too: the tree
    stays clean)."""
    out = tmp_path_factory.mktemp("sdist")
    result = subprocess.run(
        [sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(out)]
        + ["sdist", "--dist-dir", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    # The warning means a MANIFEST.in line matched nothing.
    assert "warning: no files found" not in result.stderr, result.stderr
    (archive,) = glob.glob(str(out / "*.tar.gz"))
    return archive


def test_sdist_is_named_as_the_job_specs_expect(sdist):
    assert os.path.basename(sdist) == "tf_crnn-0.1.0.tar.gz"  # packageUris in config_p100.yaml


def test_sdist_contains_package_data_configs_and_all_modules(sdist):
    with tarfile.open(sdist) as archive:
        root = os.path.basename(sdist)[: -len(".tar.gz")]
        names = {
            name[len(root) + 1 :] for name in archive.getnames() if name.startswith(root + "/")
        }
    expected = (
        [
            "README.md",
            "setup.py",
            "pyproject.toml",
            "config_p100.yaml",
            "hptuning_config.yaml",
            "Dockerfile",
            "tf_crnn/configs/demo.json",
        ]
        + repo_files("tf_crnn/alphabets/*.json")
        + repo_files("tf_crnn/configs/*.json")
        + repo_files("tf_crnn/*.py")
        + repo_files("hlp/*.py")
    )
    assert "tf_crnn/cloud.py" in expected and "tf_crnn/task.py" in expected
    assert len(repo_files("tf_crnn/alphabets/*.json")) >= 3
    missing = sorted(set(expected) - names)
    assert missing == [], f"missing from the sdist: {missing}"
    junk = sorted(
        n
        for n in names
        if "__pycache__" in n or n.startswith((".venv", "runs/", "tests/", "build/"))
    )
    assert junk == [], f"should not be in the sdist: {junk}"


def test_installed_sdist_runs_the_task_from_elsewhere(sdist, tmp_path):
    target, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--quiet",
            "--target",
            str(target),
            sdist,
        ],
        cwd=str(elsewhere),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    # Package data the code opens next to its own modules.
    for data in ["tf_crnn/configs/demo.json"] + repo_files("tf_crnn/alphabets/*.json"):
        assert (target / data).is_file(), f"{data} was not installed"

    env = dict(os.environ, PYTHONPATH=str(target), TF_CPP_MIN_LOG_LEVEL="2")
    where = subprocess.run(
        [sys.executable, "-c", "import tf_crnn, hlp; print(tf_crnn.__file__); print(hlp.__file__)"],
        cwd=str(elsewhere),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert where.returncode == 0, where.stderr
    for module_file in where.stdout.split():
        assert os.path.realpath(module_file).startswith(
            os.path.realpath(target) + os.sep
        ), where.stdout

    help_run = subprocess.run(
        [sys.executable, "-m", "tf_crnn.task", "--help"],
        cwd=str(elsewhere),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert help_run.returncode == 0, help_run.stderr
    assert "--train-csv" in help_run.stdout and "--learning_rate" in help_run.stdout
    assert os.listdir(elsewhere) == []  # --help trains nothing and writes nothing
