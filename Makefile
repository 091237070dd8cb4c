# `make test` and `make demo` do all set-up themselves: a .venv beside this file, the package
# installed into it, then the command. Only Python 3.11 must exist on the machine.
PYTHON ?= python3.11
VENV := .venv
VPY := $(VENV)/bin/python

.PHONY: test lint demo bench bench-scale soak install clean

$(VENV)/.installed: setup.py pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

# Two pytest workers (pytest-xdist) by default: the suite waits on Python and on subprocesses as
# much as on TensorFlow, so two keep two CPUs busy. The trained-job tests share one worker.
# A worker that crashes (a fatal error inside TensorFlow) is not replaced: with --dist loadgroup
# pytest-xdist 3.8 would wait forever for its replacement; this way the run fails at once.
TEST_WORKERS ?= 2
test: $(VENV)/.installed
	$(VPY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --max-worker-restart=0 tests

# ruff's linter and formatter, configured in pyproject.toml; `ruff format .` fixes the layout.
lint: $(VENV)/.installed
	$(VPY) -m ruff check .
	$(VPY) -m ruff format --check .

demo: $(VENV)/.installed
	$(VPY) -m tf_crnn.task

# Speed, memory and FLOPs of the paper network on this machine (2 to 4 minutes on 2 CPUs);
# e.g. `make bench BENCH_ARGS="--quick"` or BENCH_ARGS="--compare /tmp/tf_crnn_base".
bench: $(VENV)/.installed
	$(VPY) -m tf_crnn.benchmark $(BENCH_ARGS)

# Start-up cost of a 1,000,000-row CSV against a 1,000-row one: seconds to the first step (first
# start and restart), peak memory, graph and checkpoint .meta sizes (about 10 minutes on 2 CPUs).
bench-scale: $(VENV)/.installed
	$(VPY) -m tf_crnn.benchmark_scale $(BENCH_ARGS)

# A long training run that checkpoints, evaluates and exports every 25 steps, printing the trainer's
# resident memory and open files over time and whether they stayed flat (10 minutes by default;
# e.g. `make soak SOAK_ARGS="--minutes 60"`). Not part of `make test`.
soak: $(VENV)/.installed
	$(VPY) -m tf_crnn.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) runs build dist *.egg-info
