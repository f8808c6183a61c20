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
# Progress bars are widgets; static HTML cannot show them, so built pages go without.
export BOOK_PROGRESS ?= 0

.PHONY: book test env check-env pair lint unit build-test pdf tex browser claims clean \
	gpu-check

# Fails at once, before any install, on a bad BOOK_MODE / BOOK_SEED.
check-env:
	@$(PYTHON) src/helpers/core/config.py

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $@

# MathJax served from the book's own static files, so the HTML typesets math with no network.
MATHJAX_VERSION := 3.2.2
MATHJAX := _vendor/mathjax/tex-chtml.js

$(MATHJAX):
	rm -rf _build/mathjax-pkg && mkdir -p _build/mathjax-pkg _vendor
	cd _build/mathjax-pkg && npm pack --silent mathjax@$(MATHJAX_VERSION) > /dev/null \
		&& tar xzf mathjax-$(MATHJAX_VERSION).tgz
	rm -rf _vendor/mathjax && cp -r _build/mathjax-pkg/package/es5 _vendor/mathjax
	rm -rf _build/mathjax-pkg

env: check-env $(STAMP) $(MATHJAX)
	@$(PY) src/helpers/core/config.py

## make book: build _build/html (cached execution; re-executes after helper/settings changes)
book: env
	@$(PY) -m helpers.build_cache _build _build/claims
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	@# The package's wheel into _build/html/wheel/ (pip wheel, no network) and the notebooks
	@# the pages offer for download pinned to this commit (helpers/colab.py says why).
	$(PY) -m helpers.colab _build/html
	@$(PY) -m helpers.claims --dir _build/claims > /dev/null || \
		(echo "some claims failed: run $(PY) -m helpers.claims"; exit 1)
	@echo "book: _build/html/index.html"

## make test: lint; unit tests and every chapter notebook (nbmake) side by side; pair sync;
## the strict book build; the PDF from the same cache, and its test; the claims ledger.
## Each chapter executes once: nbmake stores its executed notebook in the book's execution
## cache (_build/.jupyter_cache, tests/conftest.py) and the strict build renders it from there;
## `make book` afterwards finds every chapter current and executes nothing.
TEST_OUT := $(CURDIR)/_build/test
CLAIMS := $(CURDIR)/_build/claims
EXEC_CACHE := $(CURDIR)/_build/.jupyter_cache
test: env lint unit build-test pdf browser claims
# The PDF of `make test` is built beside its HTML, reusing that build's doctrees (only LaTeX's
# own work is added), and copied into it before the browser test opens the pages.
test: PDF_OUT = $(TEST_OUT)
test: PDF_HTML = $(TEST_OUT)/_build/html

lint:
	$(VENV)/bin/ruff check src tests book _ext

unit:
	rm -rf $(TEST_OUT) $(CLAIMS)
	BOOK_CLAIMS_DIR=$(CLAIMS) BOOK_EXEC_CACHE=$(EXEC_CACHE) \
		OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(JOBS) --nbmake --nbmake-timeout=300 \
		--ignore=tests/browser --ignore=tests/pdf tests $(wildcard book/*/*.ipynb)
	$(PY) -m helpers.build_cache --record _build

build-test:
	BOOK_CLAIMS_DIR=$(CLAIMS) $(VENV)/bin/jupyter-book build . -W -n --keep-going \
		--path-output $(TEST_OUT)

## make pdf: the whole book as one PDF, $(PDF_OUT)/_build/latex/book.pdf, copied into the HTML
## book as book.pdf (the landing page links it). XeLaTeX typesets the chapters' outputs from the
## execution cache that `make test` or `make book` fills: the PDF never executes a chapter and
## stops, naming them, when one is missing from the cache or stale. Then tests/pdf checks that
## it holds every page of _toc.yml and every figure. On its own it reads every page (from the
## cache) into a folder of its own: the LaTeX extension changes a setting that would make the
## next `make book` read every page again.
PDF_OUT ?= $(CURDIR)/_build/pdf
PDF_HTML ?= $(CURDIR)/_build/html
pdf: env tex
	@$(PY) -m helpers.pdf check _build
	@mkdir -p $(PDF_OUT)/_build; start=$$(date +%s); \
	BOOK_CLAIMS_DIR=$(CLAIMS) $(VENV)/bin/jupyter-book build . --builder pdflatex -W -n \
		--keep-going --path-output $(PDF_OUT) > $(PDF_OUT)/_build/pdf.log 2>&1 \
		|| { tail -40 $(PDF_OUT)/_build/pdf.log; \
		     echo "pdf: failed, see $(PDF_OUT)/_build/pdf.log and latex/book.log there"; \
		     exit 1; }; \
	echo "pdf: $(PDF_OUT)/_build/latex/book.pdf, $$(pdfinfo $(PDF_OUT)/_build/latex/book.pdf \
		| awk '/^Pages/ {print $$2}') pages, $$(du -h $(PDF_OUT)/_build/latex/book.pdf \
		| cut -f1), $$(( $$(date +%s) - start )) s"
	@if [ -d $(PDF_HTML) ]; then cp $(PDF_OUT)/_build/latex/book.pdf $(PDF_HTML)/; fi
	BOOK_PDF=$(PDF_OUT)/_build/latex/book.pdf BOOK_HTML=$(PDF_HTML) \
		$(PY) -m pytest -q -rs tests/pdf

## make tex: Debian's TeX for `make pdf` (XeLaTeX, latexmk, FreeFont, poppler's pdfimages),
## installed with apt-get when missing and running as root (about 110 MB to download).
TEX_PACKAGES := texlive-xetex texlive-latex-recommended texlive-latex-extra \
	texlive-fonts-recommended latexmk fonts-freefont-otf poppler-utils
tex:
	@if ! command -v xelatex >/dev/null || ! command -v latexmk >/dev/null \
		|| ! command -v pdfimages >/dev/null || ! fc-list | grep -q FreeSerif; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				--no-install-recommends $(TEX_PACKAGES) >/dev/null; \
		else \
			echo "make pdf needs Debian's TeX: apt-get install --no-install-recommends" \
				"$(TEX_PACKAGES)"; exit 1; \
		fi; \
	fi

## The built pages in headless Chromium with no network; screenshots in _build/screens/.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
		BOOK_HTML=$(TEST_OUT)/_build/html $(PY) -m pytest -q tests/browser; \
	else \
		echo "!!!!!!!! BROWSER TEST SKIPPED: chromium and chromium-driver are not installed"; \
		echo "!!!!!!!! (apt-get install chromium chromium-driver; .ci/run does this)"; \
	fi

claims:
	$(PY) -m helpers.claims --dir $(CLAIMS)

## make pair: write each chapter's .ipynb from its .md (run after editing a chapter)
pair: env
	$(VENV)/bin/jupytext --sync $(shell grep -l "format_name: myst" book/*.md book/*/*.md)

## make gpu-check: on a machine with a GPU (no install, no network: the machine's own python
## with torch), unit tests on cuda, every chapter in quick mode on cuda compared with the CPU
## ledger in _build/claims, then full mode for as many chapters as fit; writes book/gpu.json.
GPU_PYTHON ?= $(if $(wildcard $(PY)),$(PY),$(PYTHON))
gpu-check:
	PYTHONPATH=$(CURDIR)/src $(GPU_PYTHON) -m helpers.gpu_check --budget $${GPU_BUDGET:-510}

clean:
	rm -rf _build
