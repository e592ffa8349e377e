# The only entry point a user needs. `make` (or `make help`) lists every target.
# Pipeline steps are file targets (stamps under .make/<config name>/), so `make all` twice does
# no work the second time; they rerun when the config, the code or an earlier step changes.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= configs/default.yaml
# ARGS reach every step a target runs (prepare included), so only what all take: --set k=v.
# Flags of one script go in TUNE_ARGS (--trials, --timeout, --family) or BENCH_ARGS.
ARGS ?=
TUNE_ARGS ?=
BENCH_ARGS ?=
NAME := $(basename $(notdir $(CONFIG)))
STAMPS := .make/$(NAME)
PKG_SOURCES := $(shell find mlops -name '*.py' 2>/dev/null)
HOST ?= 127.0.0.1
PORT ?= 8080
# Tuning worker processes (empty: tune.workers in CONFIG); promote VERSION=n instead of @challenger.
WORKERS ?=
VERSION ?=
# Deploy: the image is $(IMAGE):$(TAG); OVERLAY picks k8s/overlays/<dev|prod>.
REGISTRY ?= ghcr.io/example
IMAGE ?= $(REGISTRY)/mlops
TAG ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo dev)
OVERLAY ?= dev
DOCKER_BUILD_ARGS ?=

.PHONY: help
help: ## List every target with a one-line description
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'
	@echo "Variables: CONFIG=$(CONFIG) ARGS='$(ARGS)' TUNE_ARGS='$(TUNE_ARGS)' BENCH_ARGS='$(BENCH_ARGS)' WORKERS=$(WORKERS) VERSION=$(VERSION) HOST=$(HOST) PORT=$(PORT) IMAGE=$(IMAGE) TAG=$(TAG) OVERLAY=$(OVERLAY)"

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

TUNE = $(PY) scripts/tune.py --config $(CONFIG) $(if $(WORKERS),--workers $(WORKERS)) $(ARGS) $(TUNE_ARGS)
PROMOTE = $(PY) scripts/promote.py --config $(CONFIG) $(if $(VERSION),--version $(VERSION)) $(ARGS)

# After train, so that tune's best is the `challenger` promote judges.
$(STAMPS)/tune: $(STAMPS)/train $(CONFIG) $(PKG_SOURCES) scripts/tune.py | $(VENV)/.installed
	$(TUNE)
	@mkdir -p $(@D) && touch $@

# Exit 3 is "not promoted" (a gate failed, nothing moved): a normal outcome of the pipeline.
$(STAMPS)/promote: $(STAMPS)/tune $(CONFIG) $(PKG_SOURCES) scripts/promote.py | $(VENV)/.installed
	$(PROMOTE) || [ $$? -eq 3 ]
	@mkdir -p $(@D) && touch $@

.PHONY: prepare train tune promote rollback all
prepare: $(STAMPS)/prepare ## Validate, snapshot and split the data set named in CONFIG
train: $(STAMPS)/train ## Train every model family; register the best as `challenger`
# tune and promote always run: a finished study resumes in seconds, and promotion re-judges.
tune: $(STAMPS)/prepare | $(VENV)/.installed ## Optuna study per family (WORKERS=N); best -> `challenger`
	$(TUNE)
	@mkdir -p $(STAMPS) && touch $(STAMPS)/tune
promote: $(STAMPS)/prepare | $(VENV)/.installed ## Gate `challenger` (or VERSION=n) vs `champion`; exit 3: not promoted
	$(PROMOTE)
rollback: | $(VENV)/.installed ## Point `champion` back at `previous`, the version it replaced
	$(PY) scripts/promote.py --config $(CONFIG) --rollback $(ARGS)
all: $(STAMPS)/promote ## Run the whole pipeline on CONFIG (prepare -> train -> tune -> promote)

.PHONY: bench-tune
bench-tune: $(STAMPS)/prepare | $(VENV)/.installed ## Benchmark tuning: tracking overhead, 2-worker speed-up
	$(PY) -m benchmarks.tuning --config $(CONFIG) $(ARGS) $(BENCH_ARGS)

# Tracking server: backend store and artifact destination as MLflow names them; defaults are the
# embedded store, so the server shows the same runs as `make ui`.
MLFLOW_BACKEND_STORE_URI ?= sqlite:///$(CURDIR)/.mlflow/mlflow.db
MLFLOW_ARTIFACTS_DESTINATION ?= $(CURDIR)/.mlflow/artifacts
TRACKING_HOST ?= 127.0.0.1
TRACKING_PORT ?= 5000

.PHONY: tracking-server postgres-start postgres-stop
tracking-server: $(VENV)/.installed ## MLflow tracking server (proxied artifacts) on TRACKING_HOST:TRACKING_PORT
	@mkdir -p .mlflow
	$(VENV)/bin/mlflow server --backend-store-uri "$(MLFLOW_BACKEND_STORE_URI)" \
		--artifacts-destination "$(MLFLOW_ARTIFACTS_DESTINATION)" --serve-artifacts \
		--host $(TRACKING_HOST) --port $(TRACKING_PORT)

PG_DIR ?= .mlflow/postgres
postgres-start: ## Start a throwaway PostgreSQL (machine's packages) in PG_DIR; prints its URI
	@mkdir -p $(PG_DIR) && scripts/throwaway_postgres.sh start $(PG_DIR)

postgres-stop: ## Stop the throwaway PostgreSQL started by postgres-start
	scripts/throwaway_postgres.sh stop $(PG_DIR)

.PHONY: ui
ui: $(VENV)/.installed ## Open the MLflow UI on the local store at http://127.0.0.1:5000
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///.mlflow/mlflow.db \
		--default-artifact-root .mlflow/artifacts --host 127.0.0.1 --port 5000

# ---- Deploy -------------------------------------------------------------------------------
# docker-* need a Docker engine, k8s-deploy/job/delete a cluster in kubectl's current context;
# k8s-validate needs neither (it runs in `make test`). How-to: k8s/README.md.

.PHONY: docker-build docker-push docker-smoke k8s-deploy k8s-job k8s-delete k8s-validate
docker-build: ## Build the image IMAGE:TAG (CPU PyTorch; DOCKER_BUILD_ARGS for CUDA, see Dockerfile)
	docker build --tag $(IMAGE):$(TAG) --build-arg VERSION=$(TAG) \
		--build-arg GIT_COMMIT=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
		--build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ) $(DOCKER_BUILD_ARGS) .

docker-push: ## Push IMAGE:TAG (REGISTRY=..., after `docker login`)
	docker push $(IMAGE):$(TAG)

# The store's artifact paths are absolute, so it is mounted at the same path inside the container.
# It is mounted writable and the container runs as your uid: loading a model from a local store,
# MLflow writes `registered_model_meta` beside its artifacts (a cluster's server downloads to /tmp).
docker-smoke: $(STAMPS)/train ## Promote, then serve the champion from .mlflow/ in the image; one prediction
	$(PY) scripts/promote.py --config $(CONFIG)
	docker run --detach --rm --name mlops-smoke --read-only --tmpfs /tmp --cap-drop ALL \
		--security-opt no-new-privileges --publish 127.0.0.1:$(PORT):8080 \
		--user "$$(id -u):$$(id -g)" --env USER=smoke \
		--volume "$(CURDIR)/.mlflow:$(CURDIR)/.mlflow" \
		--env MLFLOW_TRACKING_URI=sqlite:///$(CURDIR)/.mlflow/mlflow.db \
		$(IMAGE):$(TAG) scripts/serve.py --config $(CONFIG)
	$(PY) scripts/smoke_request.py --config $(CONFIG) --url http://127.0.0.1:$(PORT) \
		|| { docker logs mlops-smoke; docker stop mlops-smoke; exit 1; }
	docker stop mlops-smoke

k8s-deploy: ## Apply OVERLAY to kubectl's cluster with IMAGE:TAG, run prepare/train/promote, wait
	k8s/deploy.sh apply $(OVERLAY) $(IMAGE):$(TAG)

k8s-job: ## Re-run one pipeline Job on the cluster: make k8s-job STEP=tune (or prepare|train|promote)
	k8s/deploy.sh job $(OVERLAY) $(IMAGE):$(TAG) $(STEP)

k8s-delete: ## Delete everything OVERLAY created, its namespace and volumes included
	kubectl delete -k k8s/overlays/$(OVERLAY) --ignore-not-found

k8s-validate: $(VENV)/.installed ## Offline: build every overlay, check Kubernetes schemas and our policies
	$(VENV)/bin/pytest -m k8s tests/k8s

# ---- Serving ------------------------------------------------------------------------------
# MODEL_URI: models:/<name>@champion from CONFIG unless set (models:/<name>/3, runs:/..., a path).
# Tokens come from the environment: MLOPS_API_TOKEN (predictions), MLOPS_ADMIN_TOKEN (/admin).
MODEL_URI ?=

.PHONY: serve bench
serve: | $(VENV)/.installed ## Serve MODEL_URI (default: the champion) on HOST:PORT; see docs/serving.md
	$(PY) scripts/serve.py --config $(CONFIG) --host $(HOST) --port $(PORT) \
		$(if $(MODEL_URI),--model-uri $(MODEL_URI)) $(ARGS)

# MLServer pins other Starlette/FastAPI versions than ours, so it gets its own environment, built
# once. Beside it, what loading the bench's models needs at this environment's versions (the
# models' own pip requirements); MLSERVER_PIP_ARGS for an index, e.g. PyTorch's CPU wheels.
MLSERVER_VENV := .venv-mlserver
MLSERVER_PIP_ARGS ?=
MODEL_PACKAGES := mlflow|scikit-learn|skops|numpy|pandas|scipy|torch
$(MLSERVER_VENV)/.installed: requirements.txt | $(VENV)/.installed
	$(PYTHON) -m venv $(MLSERVER_VENV)
	$(VENV)/bin/pip freeze | grep -iE '^($(MODEL_PACKAGES))==' | sed 's/+.*//' \
		> $(MLSERVER_VENV)/model-requirements.txt
	$(MLSERVER_VENV)/bin/pip install --quiet --disable-pip-version-check $(MLSERVER_PIP_ARGS) \
		"mlserver==1.7.*" "mlserver-mlflow==1.7.*" -r $(MLSERVER_VENV)/model-requirements.txt
	touch $@

# Trains its own small models in a temp store; several minutes; not run by CI. A short run:
# make bench BENCH_ARGS="--duration-s 1 --families linear --servers ours ceiling"
bench: | $(VENV)/.installed $(MLSERVER_VENV)/.installed ## Ours vs mlflow serve, MLServer, a bare-Starlette ceiling -> bench-results/
	$(PY) -m benchmarks.serving --config $(CONFIG) --out bench-results \
		--mlserver $(MLSERVER_VENV)/bin/mlserver $(ARGS) $(BENCH_ARGS)

# ---- Quality ------------------------------------------------------------------------------

.PHONY: lint format test test-fast
lint: $(VENV)/.installed ## Check: ruff lint, ruff format --check, mypy (strict), hadolint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/hadolint Dockerfile

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
