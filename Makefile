# make demo: the main job on a fresh machine.   make test: the test suite.
PYTHON ?= python3
VENV ?= .venv
CONSTRAINTS ?= constraints.txt
PY := $(VENV)/bin/python
PIP_CONSTRAINTS := $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)

.PHONY: demo test bench clean

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(PIP_CONSTRAINTS) -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(PY) examples/mixture.py --out demo-out

test: $(VENV)/.installed
	$(PY) -m pytest

clean:
	rm -rf $(VENV) demo-out runs
