VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.binclass-installed

.PHONY: setup demo test test-slow lint format clean

# Creates the venv if missing and (re)installs only when pyproject.toml changed.
setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: setup
	$(VENV)/bin/binclass demo --out runs/demo

test: setup lint
	$(PY) -m pytest -q

# ruff: the formatter (check only: `make format` applies it) and the linter, configured in pyproject.toml.
lint: setup
	$(VENV)/bin/ruff format --check src tests scripts
	$(VENV)/bin/ruff check src tests scripts

format: setup
	$(VENV)/bin/ruff format src tests scripts
	$(VENV)/bin/ruff check --fix src tests scripts

test-slow: setup
	$(PY) -m pytest -q -m slow

clean:
	rm -rf runs .pytest_cache
