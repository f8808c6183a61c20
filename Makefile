# The book's two commands: `make book` builds the HTML book, `make test` runs every test.
# Both create .venv and install the pinned requirements on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
JOBS ?= 2

# Tiny models on small shared CPUs: no spin-waiting OpenMP threads, one thread per process
# (pytest runs $(JOBS) notebooks side by side).
export OMP_WAIT_POLICY ?= PASSIVE
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: book test env check-env pair lint unit build-test claims clean

# Fails at once, before any install, on a bad BOOK_MODE / BOOK_SEED.
check-env:
	@$(PYTHON) src/helpers/config.py

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $@

env: check-env $(STAMP)
	@$(PY) src/helpers/config.py

## make book: build _build/html (cached execution; re-executes after helper/settings changes)
book: env
	@$(PY) -m helpers.build_cache _build _build/claims
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	@$(PY) -m helpers.claims --dir _build/claims > /dev/null || \
		(echo "some claims failed: run $(PY) -m helpers.claims"; exit 1)
	@echo "book: _build/html/index.html"

## make test: lint, unit tests + every chapter notebook (nbmake), pair sync, strict clean build
test: env lint unit build-test claims

lint:
	$(VENV)/bin/ruff check src tests book _ext

unit:
	rm -rf _build/test/nbmake-claims
	BOOK_CLAIMS_DIR=_build/test/nbmake-claims OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(JOBS) \
		--nbmake --nbmake-timeout=300 tests $(wildcard book/*/*.ipynb)

build-test:
	rm -rf _build/test
	BOOK_CLAIMS_DIR=$(CURDIR)/_build/test/claims $(VENV)/bin/jupyter-book build . -W -n \
		--keep-going --path-output _build/test

claims:
	$(PY) -m helpers.claims --dir _build/test/claims

## make pair: write each chapter's .ipynb from its .md (run after editing a chapter)
pair: env
	$(VENV)/bin/jupytext --sync $(shell grep -l "format_name: myst" book/*.md book/*/*.md)

clean:
	rm -rf _build
