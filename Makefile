# mmgap: `make demo` and `make test` do all set-up on a fresh machine.
# With a virtualenv or conda environment active, that environment is used; otherwise .venv is created.
SHELL := /bin/bash
PRESET ?= demo
ACTIVE_ENV := $(or $(VIRTUAL_ENV),$(CONDA_PREFIX))

ifeq ($(ACTIVE_ENV),)
PY := .venv/bin/python
STAMP := .venv/.mmgap-installed
else
PY := python
STAMP := .cache/mmgap-installed-$(notdir $(ACTIVE_ENV))
endif

.PHONY: setup demo test lab lab-course clean

setup: $(STAMP)

# Re-installs only when pyproject.toml changes (set-up is idempotent and fast when done).
$(STAMP): pyproject.toml
ifeq ($(ACTIVE_ENV),)
	@test -x .venv/bin/python || python3 -m venv .venv
	.venv/bin/python -m pip install --quiet --upgrade pip
endif
	$(PY) -m pip install --quiet -e ".[dev]"
	@mkdir -p $(dir $(STAMP)) && touch $(STAMP)

demo: setup
	$(PY) -m mmgap.run_notebooks --preset $(PRESET) --out outputs

test: setup
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
