# The only entry point a user needs. `make` (or `make help`) lists every target.
# Pipeline steps are file targets (stamps under .make/<config name>/), so `make all` twice does
# no work the second time; they rerun when the config, the code or an earlier step changes.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= configs/default.yaml
ARGS ?=
NAME := $(basename $(notdir $(CONFIG)))
STAMPS := .make/$(NAME)
PKG_SOURCES := $(shell find mlops -name '*.py' 2>/dev/null)
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: help
help: ## List every target with a one-line description
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'
	@echo "Variables: CONFIG=$(CONFIG) ARGS='$(ARGS)' HOST=$(HOST) PORT=$(PORT)"

# The virtual environment is a file target: rebuilt only when the requirements change.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Build the virtual environment (.venv) from requirements*.txt

# ---- Pipeline -----------------------------------------------------------------------------

$(STAMPS)/prepare: $(CONFIG) $(PKG_SOURCES) scripts/prepare.py | $(VENV)/.installed
	$(PY) scripts/prepare.py --config $(CONFIG) $(ARGS)
	@mkdir -p $(@D) && touch $@

$(STAMPS)/train: $(STAMPS)/prepare $(CONFIG) $(PKG_SOURCES) scripts/train.py | $(VENV)/.installed
	$(PY) scripts/train.py --config $(CONFIG) $(ARGS)
	@mkdir -p $(@D) && touch $@

.PHONY: prepare train all
prepare: $(STAMPS)/prepare ## Validate, snapshot and split the data set named in CONFIG
train: $(STAMPS)/train ## Train every model family; register the best as `challenger`
all: $(STAMPS)/train ## Run the whole pipeline on CONFIG (prepare -> train)

.PHONY: ui
ui: $(VENV)/.installed ## Open the MLflow UI on the local store at http://127.0.0.1:5000
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///.mlflow/mlflow.db \
		--default-artifact-root .mlflow/artifacts --host 127.0.0.1 --port 5000

# ---- Quality ------------------------------------------------------------------------------

.PHONY: lint format test test-fast
lint: $(VENV)/.installed ## Check: ruff lint, ruff format --check, mypy (strict)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(VENV)/.installed ## Rewrite: ruff --fix and ruff format
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint ## What CI runs: lint, type check, then every test (slow ones included)
	$(VENV)/bin/pytest

test-fast: $(VENV)/.installed ## Every test except those marked slow
	$(VENV)/bin/pytest -m "not slow"

.PHONY: clean
clean: ## Remove the local MLflow store, prepared data and stamps (keeps .venv)
	rm -rf .mlflow data .make bench-results .pytest_cache .mypy_cache .ruff_cache
