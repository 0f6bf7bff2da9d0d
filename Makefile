# Two commands for a newcomer: `make demo` and `make test`. Both create or reuse .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test crash-test lint typecheck bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "slashcat needs Python 3.11+"' \
		|| { echo "Python 3.11 or newer is needed (set PYTHON=python3.12, for example)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/slashcat demo

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

# SIGKILL at many seeded moments of crawl, import and train; checks nothing is lost (slow).
crash-test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m crash

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(VENV)/.installed-dev
	@echo "See bench/README.md; each benchmark is run on its own, e.g. $(BIN)/python bench/hashing.py"

clean:
	rm -rf $(VENV) slashcat-data .pytest_cache .ruff_cache .mypy_cache
