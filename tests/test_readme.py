"""README.md says what the code does: settings table, commands, modules, files, numbers.

Fast: nothing is trained. The settings table is generated from ``Params``; after changing a setting,
print a fresh table with ``python tests/test_readme.py``, or replace the README's table in place
with ``python tests/test_readme.py --write``.
"""

import dataclasses
import glob
import importlib.util
import json
import os
import re
import shlex
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
TABLE_HEADER = "| Setting | Default | Description |"
# Files and folders the README tells users about that are part of the repository.
REQUIRED_REPO_FILES = [
    "Makefile",
    "setup.py",
    ".ci/run",
    "config_p100.yaml",
    "hptuning_config.yaml",
    "Dockerfile",
    "tf_crnn/configs/demo.json",
    "tf_crnn/data_handler.py",
    "tests/test_export_model.py",
    "tests/test_distributed.py",
    "tests/test_readme.py",
]
# Backticked names that are repository paths when they start like this (others are the user's
# files).
REPO_PREFIXES = ("tf_crnn/", "hlp/", "tests/", ".ci/")
REPO_TOP_LEVEL_FILES = {
    "Makefile",
    "setup.py",
    "pyproject.toml",
    "MANIFEST.in",
    "Dockerfile",
    "config_p100.yaml",
    "hptuning_config.yaml",
    "README.md",
}


def readme() -> str:
    with open(README, encoding="utf-8") as f:
        return f.read()


# ----------------------------------------------------------------------------------------------
# The settings table
# ----------------------------------------------------------------------------------------------
def settings_table() -> str:
    """The markdown table of every Params field: name, default (as JSON), one-line doc."""
    from tf_crnn.config import Params

    defaults = Params()
    lines = [TABLE_HEADER, "|---|---|---|"]
    for f in dataclasses.fields(Params):
        default = json.dumps(getattr(defaults, f.name), ensure_ascii=False)
        lines.append(
            f"| `{f.name}` | `{default}` | {f.metadata['doc'].replace('|', chr(92) + '|')} |"
        )
    return "\n".join(lines)


def table_span(text: str):
    """(start, end) character offsets of the settings table in ``text``."""
    start = text.index(TABLE_HEADER)
    end = start
    for line in text[start:].split("\n"):
        if not line.startswith("|"):
            break
        end += len(line) + 1
    return start, end - 1


def table_rows(text: str):
    """[(name, default, description)] parsed from the README's settings table."""
    start, end = table_span(text)
    rows = []
    for line in text[start:end].split("\n")[2:]:
        cells = [
            cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]
        ]
        assert len(cells) == 3, f"settings table row without 3 cells: {line!r}"
        name, default, description = cells
        assert name.startswith("`") and name.endswith("`"), line
        assert default.startswith("`") and default.endswith("`"), line
        rows.append((name[1:-1], json.loads(default[1:-1]), description))
    return rows


def test_settings_table_lists_every_params_field_with_its_default_and_doc():
    from tf_crnn.config import Params

    rows = table_rows(readme())
    expected = [
        (f.name, getattr(Params(), f.name), f.metadata["doc"]) for f in dataclasses.fields(Params)
    ]
    hint = (
        "README settings table is stale: regenerate it with `python tests/test_readme.py --write`"
    )
    assert [name for name, _, _ in rows] == [name for name, _, _ in expected], hint
    for (name, default, description), (_, expected_default, doc) in zip(rows, expected):
        assert default == expected_default and type(default) is type(
            expected_default
        ), f"{name}: {hint}"
        assert description == doc, f"{name}: {hint}"


def test_the_flagless_list_settings_named_in_the_readme_are_the_list_fields():
    from tf_crnn.config import Params

    text = readme()
    sentence = text[text.index("List settings (") : text.index("have no flag")]
    named = set(re.findall(r"`(\w+)`", sentence))
    assert named == {
        f.name for f in dataclasses.fields(Params) if isinstance(getattr(Params(), f.name), list)
    }


# ----------------------------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------------------------
def test_quickstart_gives_make_demo_and_make_test_first():
    text = readme()
    assert "make demo" in text and "make test" in text
    first_block = re.search(r"```sh\n(.*?)```", text, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()]
    assert commands[:2] == ["make demo", "make test"]
    # The Quickstart states the measured demo result, and it meets the 95% the demo promises.
    quickstart = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    accuracy = re.search(r"word accuracy (\d+(?:\.\d+)?)%", quickstart)
    assert accuracy and float(accuracy.group(1)) >= 95


def test_every_python_module_the_readme_runs_exists():
    modules = set(re.findall(r"python3? -m ([A-Za-z_][\w.]*)", readme()))
    assert {
        "tf_crnn.task",
        "tf_crnn.export_model",
        "tf_crnn.predict",
        "tf_crnn.demo",
        "hlp.numbers_mnist_generator",
        "hlp.csv_path_convertor",
        "hlp.alphabet_generator",
    } <= modules
    missing = sorted(m for m in modules if importlib.util.find_spec(m) is None)
    assert missing == []


def logical_lines(text: str):
    """The lines of the README's shell code blocks, with backslash continuations joined."""
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        current = ""
        for line in block.splitlines():
            current += line.split(" #")[0].rstrip()
            if current.endswith("\\"):
                current = current[:-1] + " "
                continue
            lines.append(current.strip())
            current = ""
    return lines


def test_every_flag_given_to_the_task_is_one_it_accepts():
    from tf_crnn import task

    accepted = set(task.build_parser()._option_string_actions)
    used = set()
    for line in logical_lines(readme()):
        if "tf_crnn.task" in line:
            used.update(
                word.split("=")[0]
                for word in shlex.split(line.replace("$", ""))
                if word.startswith("--")
            )
    assert {
        "--job-dir",
        "--train-csv",
        "--eval-csv",
        "--config",
        "--param",
        "--learning_rate",
    } <= used
    assert sorted(used - accepted) == []


# ----------------------------------------------------------------------------------------------
# Files, modules and numbers
# ----------------------------------------------------------------------------------------------
def test_repository_files_the_readme_names_exist():
    text = readme()
    for path in REQUIRED_REPO_FILES:
        assert path in text, f"README does not mention {path}"
    named = set(re.findall(r"`([^`\s]+)`", text)) | set(re.findall(r"--config=(\S+)", text))
    repo_paths = {
        p.rstrip("/") for p in named if p.startswith(REPO_PREFIXES) or p in REPO_TOP_LEVEL_FILES
    }
    assert set(REQUIRED_REPO_FILES) <= repo_paths
    for path in sorted(repo_paths):
        matches = glob.glob(os.path.join(REPO, path))
        assert matches, f"README names {path}, which is not in the repository"


def test_the_module_table_covers_every_module():
    text = readme()
    start = text.index("| file | its one job |")
    table = text[start : text.index("\n\n", start)]
    listed = set(re.findall(r"`(tf_crnn/\w+\.py)`", table))
    modules = {
        os.path.relpath(p, REPO)
        for p in glob.glob(os.path.join(REPO, "tf_crnn", "*.py"))
        if not p.endswith("__init__.py")
    }
    assert listed == modules


def test_image_size_bound_is_the_code_value():
    from tf_crnn import images

    value = re.search(r"`MAX_IMAGE_PIXELS` =\s*([\d,]+)", readme()).group(1)
    assert int(value.replace(",", "")) == images.MAX_IMAGE_PIXELS


def test_builtin_alphabet_sizes():
    rows = re.findall(r"\| `(\w+)` \| (\d+) \|", readme())
    sizes = {name: int(count) for name, count in rows}
    for name in ("digits", "letters_symbols", "letters_digits_symbols"):
        with open(
            os.path.join(REPO, "tf_crnn", "alphabets", f"{name}.json"), encoding="utf-8"
        ) as f:
            assert sizes[name] == len(json.load(f)), name


def test_demo_description_matches_the_demo_settings_and_data():
    from tf_crnn import demo
    from tf_crnn.network import PRESETS

    with open(os.path.join(REPO, "tf_crnn", "configs", "demo.json"), encoding="utf-8") as f:
        settings = json.load(f)
    text = readme()
    assert "20,000 training and 1,000 evaluation" in text
    assert demo.generate_demo_dataset.__defaults__[:2] == (20000, 1000)
    assert f"3–{demo.LABEL_LENGTHS[1]} random characters" in text and demo.LABEL_LENGTHS[0] == 3
    assert demo.DEMO_ALPHABET == "0123456789abcdefghijklmnopqrstuvwxyz" and "`0-9a-z`" in text
    assert f"{settings['train_steps']:,} steps of {settings['train_batch_size']} images" in text
    network = PRESETS[settings["preset"]]
    assert f"`{settings['preset']}` network preset" in text
    assert f"{network['rnn_units']} LSTM units" in text
    assert f"{min(network['conv_filters'])}–{max(network['conv_filters'])}" in text
    assert f"every {settings['save_interval']:,} steps" in text
    assert f"{settings.get('warmup_steps', 0)}-step warm-up" in text
    assert f"a {settings['learning_rate_schedule']} learning-rate decay" in text


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        text = readme()
        start, end = table_span(text)
        with open(README, "w", encoding="utf-8") as f:
            f.write(text[:start] + settings_table() + text[end:])
        print(f"rewrote the settings table in {README}")
    else:
        print(settings_table())
