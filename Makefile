# `make test` and `make demo` do all set-up themselves: a .venv beside this file, the package
# installed into it, then the command. Only Python 3.11 must exist on the machine.
PYTHON ?= python3.11
VENV := .venv
VPY := $(VENV)/bin/python

.PHONY: test demo install clean

$(VENV)/.installed: setup.py pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

test: $(VENV)/.installed
	$(VPY) -m pytest -q tests

demo: $(VENV)/.installed
	$(VPY) -m tf_crnn.task

clean:
	rm -rf $(VENV) runs build dist *.egg-info
