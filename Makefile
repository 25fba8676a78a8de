# mmgap: `make demo` and `make test` do all set-up on a fresh machine.
# With a virtualenv or conda environment active, that environment is used; otherwise .venv is created.
# Installs are pinned by requirements/constraints-py<major><minor>.txt (the lock of the published numbers)
# when one exists for the Python in use; `make setup PINNED=0` (or MMGAP_UNPINNED=1) resolves the newest
# versions pyproject.toml allows instead.
SHELL := /bin/bash
PRESET ?= demo
ACTIVE_ENV := $(or $(VIRTUAL_ENV),$(CONDA_PREFIX))
PINNED ?= $(if $(filter 1,$(MMGAP_UNPINNED)),0,1)
LOCKS := $(wildcard requirements/constraints-py*.txt)
MODE := $(if $(filter 0,$(PINNED)),unpinned,pinned)

ifeq ($(ACTIVE_ENV),)
PY := .venv/bin/python
STAMP_DIR := .venv
ENV_TAG := venv
else
PY := python
STAMP_DIR := .cache
ENV_TAG := $(notdir $(ACTIVE_ENV))
endif
# One stamp per environment and mode: switching between pinned and unpinned installs again.
STAMP := $(STAMP_DIR)/.mmgap-installed-$(ENV_TAG)-$(MODE)

.PHONY: setup demo test lab lab-course clean

setup: $(STAMP)

# Re-installs only when pyproject.toml or a lock file changes (set-up is idempotent and fast when done).
$(STAMP): pyproject.toml $(LOCKS)
	@if [ -z "$(ACTIVE_ENV)" ]; then test -x .venv/bin/python || python3 -m venv .venv; fi
	@lock=requirements/constraints-py$$($(PY) -c 'import sys; print("%d%d" % sys.version_info[:2])').txt; \
	if [ "$(MODE)" = unpinned ]; then c=""; echo "set-up: unpinned (the newest pyproject.toml allows)"; \
	elif [ -f "$$lock" ]; then c="-c $$lock"; echo "set-up: pinned by $$lock"; \
	else c=""; echo "set-up: no $$lock for this Python: unpinned, numbers may differ from the READMEs'"; fi; \
	if [ -z "$(ACTIVE_ENV)" ]; then echo "$(PY) -m pip install --quiet --upgrade pip $$c"; \
	  $(PY) -m pip install --quiet --upgrade pip $$c || exit 1; fi; \
	echo "$(PY) -m pip install --quiet -e \".[dev,ray]\" $$c"; $(PY) -m pip install --quiet -e ".[dev,ray]" $$c
	@mkdir -p $(STAMP_DIR) && rm -f $(STAMP_DIR)/.mmgap-installed-$(ENV_TAG)-* && touch $(STAMP)

demo: setup
	$(PY) -m mmgap.run_notebooks --preset $(PRESET) --out outputs

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest

# JupyterLab on working copies in work/ (git-ignored): a student's runs and edits never touch notebooks/.
lab: setup
	$(PY) -m mmgap.lab

# JupyterLab on the tracked notebooks/ themselves (course authors): saving updates the notebook and notebooks/src.
lab-course: setup
	$(PY) -m mmgap.lab --course

clean:
	rm -rf outputs runs .pytest_cache .cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
