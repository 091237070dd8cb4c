# `make test` and `make demo` do all set-up themselves: a .venv beside this file, the package
# installed into it, then the command. Only Python 3.11 must exist on the machine.
PYTHON ?= python3.11
VENV := .venv
VPY := $(VENV)/bin/python

.PHONY: test lint demo bench install clean

$(VENV)/.installed: setup.py pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

test: $(VENV)/.installed
	$(VPY) -m pytest -q tests

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

clean:
	rm -rf $(VENV) runs build dist *.egg-info
