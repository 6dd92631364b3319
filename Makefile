# Every target sets up .venv on first use (and again when pyproject.toml changes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "infkit needs Python 3.11: run make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --progress-bar off -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

# the main job on the embedded default: train digits, compile (torchscript, onnx), summary table
demo: setup
	$(PY) src/demo.py

# the whole suite, including one end-to-end run (train -> compile)
test: setup
	$(PY) -m pytest

# without the tests marked slow
test-fast: setup
	$(PY) -m pytest -m "not slow"

clean:
	rm -rf logs model_store .pytest_cache
