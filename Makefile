# Two commands: `make lab` (set up once, open JupyterLab) and `make test` (the whole suite).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.fedlab_mm-installed
# Models load from installed packages only; a hub name fails fast instead of hanging.
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# JupyterLab refuses to start as root (containers, CI) unless told to.
LAB_FLAGS := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab test setup clean-cache bench

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,audio,flower]"
	touch $(STAMP)

lab: $(STAMP)
	$(OFFLINE) $(VENV)/bin/jupyter-lab $(LAB_FLAGS) notebooks/

test: $(STAMP)
	$(OFFLINE) FEDLAB_MM_SMOKE=1 $(PY) -m pytest

clean-cache:
	rm -rf data/cache

bench: $(STAMP)
	$(PY) -m benchmarks.engine
