# The only entry point a user needs. `make` (or `make help`) lists every target.
# Pipeline steps are file targets (stamps under .make/<config name>/<target key>/), so `make all`
# twice does no work the second time; they rerun when the config, their own code or an earlier
# step changes, and when the pipeline points somewhere else (tracking or registry URI, ARGS).

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
# The target key: a digest of where the pipeline reads and writes, the tracking and registry URIs
# and ARGS (which carry `--set data.source=...`), so `MLFLOW_TRACKING_URI=http://server make all`
# after a local `make all` runs the pipeline against the server instead of saying nothing.
TARGET_KEY := $(shell printf '%s\n' "$$MLFLOW_TRACKING_URI" "$$MLFLOW_REGISTRY_URI" '$(subst ','\'',$(ARGS))' | sha256sum | cut -c1-12)
STAMPS := .make/$(NAME)/$(TARGET_KEY)
STARTED_S := $(shell date +%s)
# The embedded MLflow store and Optuna storage; mlops/config.py names the same folder
# (EMBEDDED_STORE_DIR; tests/unit/test_makefile.py keeps the two equal).
STORE := .mlflow
HOST ?= 127.0.0.1
PORT ?= 8080
# Tuning worker processes (empty: tune.workers in CONFIG); promote VERSION=n instead of @challenger.
WORKERS ?=
VERSION ?=
# make canary: the percent of prediction requests the canary version answers (MODE=shadow: gets
# a copy of, while the champion answers).
WEIGHT ?= 10
MODE ?= split
# Deploy: the image is $(IMAGE):$(TAG); OVERLAY picks k8s/overlays/<dev|prod>.
REGISTRY ?= ghcr.io/example
IMAGE ?= $(REGISTRY)/mlops
TAG ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo dev)
OVERLAY ?= dev
# The nodes' architecture, whatever the build machine's (an ARM laptop builds amd64 images).
PLATFORM ?= linux/amd64
DOCKER_BUILD_ARGS ?=
# make kind-load: the kind cluster to load the image into.
KIND_CLUSTER ?= kind

.PHONY: help
help: ## List every target with a one-line description
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'
	@echo "Variables: CONFIG=$(CONFIG) ARGS='$(ARGS)' TUNE_ARGS='$(TUNE_ARGS)' BENCH_ARGS='$(BENCH_ARGS)' WORKERS=$(WORKERS) VERSION=$(VERSION) WEIGHT=$(WEIGHT) MODE=$(MODE) HOST=$(HOST) PORT=$(PORT) IMAGE=$(IMAGE) TAG=$(TAG) OVERLAY=$(OVERLAY) PLATFORM=$(PLATFORM)"

# The virtual environment is a file target: rebuilt only when the requirements change. uv installs
# them several times faster than pip; pip is the fallback where uv itself cannot be installed.
UV_VERSION ?= 0.13.10
# uv does not read pip's configuration (pip.conf, PIP_* variables), so it is handed the same
# package sources: where pip is pointed at a local index or wheel folder (a CPU-only torch, say),
# uv installs the same files. `unsafe-best-match` is pip's rule: the best version of all indexes.
# Read once, when the recipe first needs it; lines joined by "|" ($(shell) flattens newlines).
# --compile-bytecode as pip does: otherwise every process the tests start compiles MLflow first.
PIP_CONFIG = $(eval PIP_CONFIG := $$(shell $(PYTHON) -m pip config list 2>/dev/null | tr '\n' '|'))$(PIP_CONFIG)
pip_config = $(shell printf '%s' "$(PIP_CONFIG)" | tr '|' '\n' | sed -n "s/^[^.]*\.$(1)='\(.*\)'$$/\1/p" | head -n 1)
uv_env = $(if $(call pip_config,$(1)),$(2)="$(call pip_config,$(1))")
UV_ENV = UV_INDEX_STRATEGY=unsafe-best-match $(call uv_env,index-url,UV_DEFAULT_INDEX) \
	$(call uv_env,extra-index-url,UV_INDEX) $(call uv_env,find-links,UV_FIND_LINKS) \
	$(call uv_env,constraint,UV_CONSTRAINT) $(call uv_env,cert,SSL_CERT_FILE)
$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	if $(VENV)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION); then \
		$(UV_ENV) $(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) \
			-r requirements-dev.txt; \
	else \
		$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt; \
	fi
	touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Build the virtual environment (.venv) from requirements*.txt

# ---- Pipeline -----------------------------------------------------------------------------
# Each step depends on the modules its script imports, transitively, and nothing else: editing
# the server reruns no step. A step's list leaves out what an earlier step's list holds (a change
# there reruns that step, and so this one). tests/unit/test_makefile.py checks them.

CORE_SOURCES := mlops/__init__.py mlops/cli.py mlops/config.py mlops/errors.py mlops/tracking.py
PREPARE_SOURCES := scripts/prepare.py mlops/prepare.py mlops/data.py mlops/sources.py mlops/validation.py \
	mlops/profile.py $(CORE_SOURCES)
# models/ whole: torch_pyfunc_entry.py is logged by path ("model from code"), not imported.
TRAIN_SOURCES := scripts/train.py mlops/train.py mlops/evaluate.py \
	mlops/plots.py mlops/registry.py $(wildcard mlops/models/*.py)
TUNE_SOURCES := scripts/tune.py mlops/tune.py $(wildcard mlops/tuning/*.py)
PROMOTE_SOURCES := scripts/promote.py mlops/promote.py mlops/gates.py

$(STAMPS)/prepare: $(CONFIG) $(PREPARE_SOURCES) | $(VENV)/.installed
	$(PY) scripts/prepare.py --config $(CONFIG) $(ARGS)
	@mkdir -p $(@D) && touch $@

$(STAMPS)/train: $(STAMPS)/prepare $(CONFIG) $(TRAIN_SOURCES) | $(VENV)/.installed
	$(PY) scripts/train.py --config $(CONFIG) $(ARGS)
	@mkdir -p $(@D) && touch $@

TUNE = $(PY) scripts/tune.py --config $(CONFIG) $(if $(WORKERS),--workers $(WORKERS)) $(ARGS) $(TUNE_ARGS)
PROMOTE = $(PY) scripts/promote.py --config $(CONFIG) $(if $(VERSION),--version $(VERSION)) $(ARGS)

# After train, so that tune's best is the `challenger` promote judges.
$(STAMPS)/tune: $(STAMPS)/train $(CONFIG) $(TUNE_SOURCES) | $(VENV)/.installed
	$(TUNE)
	@mkdir -p $(@D) && touch $@

# Exit 3 is "not promoted" (a gate failed, nothing moved): a normal outcome of the pipeline.
$(STAMPS)/promote: $(STAMPS)/tune $(CONFIG) $(PROMOTE_SOURCES) | $(VENV)/.installed
	$(PROMOTE) || [ $$? -eq 3 ]
	@mkdir -p $(@D) && touch $@

.PHONY: prepare train tune promote rollback canary canary-stop all
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
canary: | $(VENV)/.installed ## WEIGHT % of requests to VERSION=n (@canary; MODE=shadow: a copy); `promote VERSION=n` graduates it
	@[ -n "$(VERSION)" ] || { echo "make canary needs VERSION=n (and WEIGHT=percent, default 10)" >&2; exit 1; }
	$(PY) scripts/canary.py --config $(CONFIG) --version $(VERSION) --weight $(WEIGHT) --mode $(MODE) $(ARGS)
canary-stop: | $(VENV)/.installed ## Remove @canary and its tags: the champion answers every request
	$(PY) scripts/canary.py --config $(CONFIG) --stop $(ARGS)
all: $(STAMPS)/promote ## Run the whole pipeline on CONFIG (prepare -> train -> tune -> promote)
	@for step in prepare train tune promote; do \
		if [ "$$(stat -c %Y $(STAMPS)/$$step)" -lt $(STARTED_S) ]; then \
			echo "$$step: up to date, skipped ($(STAMPS); tracking: $${MLFLOW_TRACKING_URI:-embedded $(STORE)})"; \
		fi; \
	done

.PHONY: bench-tune
bench-tune: $(STAMPS)/prepare | $(VENV)/.installed ## Benchmark tuning: tracking overhead, 2-worker speed-up
	$(PY) -m benchmarks.tuning --config $(CONFIG) $(ARGS) $(BENCH_ARGS)

# Tracking server: backend store and artifact destination as MLflow names them; defaults are the
# embedded store, so the server shows the same runs as `make ui`.
MLFLOW_BACKEND_STORE_URI ?= sqlite:///$(CURDIR)/$(STORE)/mlflow.db
MLFLOW_ARTIFACTS_DESTINATION ?= $(CURDIR)/$(STORE)/artifacts
TRACKING_HOST ?= 127.0.0.1
TRACKING_PORT ?= 5000

.PHONY: tracking-server postgres-start postgres-stop
tracking-server: $(VENV)/.installed ## MLflow tracking server (proxied artifacts) on TRACKING_HOST:TRACKING_PORT
	@mkdir -p $(STORE)
	$(VENV)/bin/mlflow server --backend-store-uri "$(MLFLOW_BACKEND_STORE_URI)" \
		--artifacts-destination "$(MLFLOW_ARTIFACTS_DESTINATION)" --serve-artifacts \
		--host $(TRACKING_HOST) --port $(TRACKING_PORT)

PG_DIR ?= $(STORE)/postgres
postgres-start: ## Start a throwaway PostgreSQL (machine's packages) in PG_DIR; prints its URI
	@mkdir -p $(PG_DIR) && scripts/throwaway_postgres.sh start $(PG_DIR)

postgres-stop: ## Stop the throwaway PostgreSQL started by postgres-start
	scripts/throwaway_postgres.sh stop $(PG_DIR)

# Backups: one .tar.gz of the MLflow store (the database; the artifact folder too when it is local)
# and the Optuna storage, in BACKUP_DIR. `make restore BACKUP=<file>` puts it back where it came
# from and refuses a store that holds data unless FORCE=1. k8s: the backup CronJob (k8s/README.md).
BACKUP_DIR ?= backups
BACKUP ?=
FORCE ?=
BACKUP_STORES = --mlflow-db "$(MLFLOW_BACKEND_STORE_URI)" --artifacts "$(MLFLOW_ARTIFACTS_DESTINATION)"

.PHONY: backup restore
backup: | $(VENV)/.installed ## Back up the MLflow store and the Optuna storage to BACKUP_DIR (one .tar.gz)
	$(PY) scripts/backup.py create --config $(CONFIG) --out $(BACKUP_DIR) $(BACKUP_STORES) $(ARGS)

restore: | $(VENV)/.installed ## Restore BACKUP=<file> into the same stores (FORCE=1: replace what is there)
	@test -n "$(BACKUP)" || { echo "usage: make restore BACKUP=backups/mlops-backup-....tar.gz" >&2; exit 2; }
	$(PY) scripts/backup.py restore "$(BACKUP)" --config $(CONFIG) $(BACKUP_STORES) $(if $(FORCE),--force) $(ARGS)

.PHONY: ui
ui: $(VENV)/.installed ## Open the MLflow UI on the local store at http://127.0.0.1:5000
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(STORE)/mlflow.db \
		--default-artifact-root $(STORE)/artifacts --host 127.0.0.1 --port 5000

# ---- Deploy -------------------------------------------------------------------------------
# docker-* need a Docker engine, k8s-deploy/job/delete a cluster in kubectl's current context;
# k8s-validate needs neither (it runs in `make test`). How-to: k8s/README.md.

.PHONY: docker-build docker-push docker-smoke kind-load k8s-namespace k8s-deploy k8s-job k8s-smoke k8s-delete k8s-validate
docker-build: ## Build the image IMAGE:TAG for PLATFORM (CPU PyTorch; DOCKER_BUILD_ARGS for CUDA)
	docker build --platform $(PLATFORM) --tag $(IMAGE):$(TAG) --build-arg VERSION=$(TAG) \
		--build-arg GIT_COMMIT=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
		--build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ) $(DOCKER_BUILD_ARGS) .

docker-push: ## Push IMAGE:TAG (REGISTRY=..., after `docker login`)
	docker push $(IMAGE):$(TAG)

# The store's artifact paths are absolute, so it is mounted at the same path inside the container.
# It is mounted writable and the container runs as your uid: loading a model from a local store,
# MLflow writes `registered_model_meta` beside its artifacts (a cluster's server downloads to /tmp).
docker-smoke: $(STAMPS)/train ## Promote, then serve the champion from the local store in the image; one prediction
	$(PY) scripts/promote.py --config $(CONFIG)
	docker run --detach --rm --name mlops-smoke --read-only --tmpfs /tmp --cap-drop ALL \
		--security-opt no-new-privileges --publish 127.0.0.1:$(PORT):8080 \
		--user "$$(id -u):$$(id -g)" --env USER=smoke \
		--volume "$(CURDIR)/$(STORE):$(CURDIR)/$(STORE)" \
		--env MLFLOW_TRACKING_URI=sqlite:///$(CURDIR)/$(STORE)/mlflow.db \
		$(IMAGE):$(TAG) scripts/serve.py --config $(CONFIG)
	$(PY) scripts/smoke_request.py --config $(CONFIG) --url http://127.0.0.1:$(PORT) \
		|| { docker logs mlops-smoke; docker stop mlops-smoke; exit 1; }
	docker stop mlops-smoke

kind-load: ## Load IMAGE:TAG into the kind cluster KIND_CLUSTER (instead of docker-push)
	kind load docker-image $(IMAGE):$(TAG) --name $(KIND_CLUSTER)

k8s-namespace: ## Create OVERLAY's namespace only, so that your Secrets can go in before k8s-deploy
	k8s/deploy.sh namespace $(OVERLAY) $(IMAGE):$(TAG)

# deploy.sh checks before applying anything and stops at the first stuck pod (k8s/checks.py,
# which reads YAML with the venv's PyYAML).
k8s-deploy: | $(VENV)/.installed ## Check, apply OVERLAY with IMAGE:TAG, run prepare/train/promote, wait
	k8s/deploy.sh apply $(OVERLAY) $(IMAGE):$(TAG)

k8s-job: | $(VENV)/.installed ## Re-run one step on the cluster: STEP=tune (then registers, promotes) or prepare|train|promote
	k8s/deploy.sh job $(OVERLAY) $(IMAGE):$(TAG) $(STEP)

# The model server through a port-forward: one prediction on rows of the local test split.
SMOKE_PORT ?= 18080
k8s-smoke: $(STAMPS)/prepare ## Ask OVERLAY's model server for a prediction (MLOPS_API_TOKEN if it needs one)
	namespace=$$(awk '$$1 == "namespace:" {print $$2; exit}' k8s/overlays/$(OVERLAY)/kustomization.yaml); \
	kubectl -n $$namespace port-forward svc/model-server $(SMOKE_PORT):8080 >/dev/null & forward=$$!; \
	trap 'kill $$forward' EXIT; \
	$(PY) scripts/smoke_request.py --config $(CONFIG) --url http://127.0.0.1:$(SMOKE_PORT) $(ARGS)

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

# The v2 gRPC service's Python modules, generated from the .proto and committed (so installing
# the server needs no protoc); rerun after editing the .proto.
PROTO := mlops/serving/proto/grpc_predict_v2.proto
.PHONY: grpc-stubs
grpc-stubs: | $(VENV)/.installed ## Regenerate mlops/serving/proto/*_pb2*.py from the v2 gRPC .proto
	$(PY) -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. $(PROTO)

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

# ---- Batch scoring -------------------------------------------------------------------------
# INPUT: a .csv / .parquet file, folder or glob, s3://... or http(s)://...; OUTPUT: a .parquet
# path or s3:// key. MODEL_URI as for serve (default: the champion). SCORE_ARGS: --keep id,
# --probabilities, --rejects rejects.parquet. docs/batch-scoring.md.
INPUT ?=
OUTPUT ?=
SCORE_ARGS ?=

.PHONY: score spark-venv
score: | $(VENV)/.installed ## Score INPUT into OUTPUT (Parquet) with MODEL_URI or the champion; SCORE_ARGS
	@test -n "$(INPUT)" -a -n "$(OUTPUT)" || { echo "usage: make score INPUT=rows.parquet OUTPUT=scored.parquet [MODEL_URI=...] [SCORE_ARGS='--keep id']" >&2; exit 2; }
	$(PY) scripts/score.py "$(INPUT)" "$(OUTPUT)" --config $(CONFIG) \
		$(if $(MODEL_URI),--model-uri $(MODEL_URI)) $(SCORE_ARGS) $(ARGS)

# PySpark (a JVM and its own pins) in an environment of its own, beside what loading our models
# needs at this environment's versions: the test that runs docs/batch-scoring.md's spark_udf
# snippet on a local Spark session (Java 17 or newer on PATH).
SPARK_VENV := .venv-spark
SPARK_MODEL_PACKAGES := mlflow|mlflow-skinny|scikit-learn|skops|numpy|pandas|scipy|pyarrow|cloudpickle
$(SPARK_VENV)/.installed: requirements.txt | $(VENV)/.installed
	$(PYTHON) -m venv $(SPARK_VENV)
	$(VENV)/bin/pip freeze | grep -iE '^($(SPARK_MODEL_PACKAGES))==' | sed 's/+.*//' \
		> $(SPARK_VENV)/model-requirements.txt
	$(SPARK_VENV)/bin/pip install --quiet --disable-pip-version-check "pyspark==4.3.0" \
		-r $(SPARK_VENV)/model-requirements.txt
	touch $@

spark-venv: $(SPARK_VENV)/.installed ## PySpark in its own environment (.venv-spark), for the spark_udf test

# Several minutes for the default sizes (1M and 2M rows, 2 rounds); BENCH_ARGS="--rows 1000 1000000".
.PHONY: bench-score
bench-score: | $(VENV)/.installed ## Benchmark batch scoring against mlflow models predict: rows/s, peak memory
	$(PY) -m benchmarks.score $(BENCH_ARGS)

# ---- Quality ------------------------------------------------------------------------------

# Tools with dependencies of their own (checkov pins many): a separate environment, built once.
TOOLS_VENV := .venv-tools
$(TOOLS_VENV)/.installed: requirements-tools.txt
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-tools.txt
	touch $@

# checkov reads .checkov.yaml: the checks it skips, and why. The overlays as kubectl renders them.
LINT_DIR := .make-lint
CHECKOV = $(TOOLS_VENV)/bin/checkov --config-file .checkov.yaml
.PHONY: lint format test test-fast audit
lint: $(VENV)/.installed $(TOOLS_VENV)/.installed ## Check: ruff, mypy (strict), hadolint, checkov, the workflow
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/hadolint Dockerfile
	@rm -rf $(LINT_DIR) && mkdir -p $(LINT_DIR)
	for overlay in dev prod; do $(VENV)/bin/kubectl kustomize k8s/overlays/$$overlay > $(LINT_DIR)/$$overlay.yaml; done
	$(CHECKOV) --framework kubernetes --directory $(LINT_DIR)
	$(CHECKOV) --framework dockerfile --file Dockerfile
	$(TOOLS_VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(TOOLS_VENV)/bin/check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml
	$(TOOLS_VENV)/bin/zizmor --offline --no-progress .github/workflows

# Needs PyPI's advisory data (network): run by the GitHub workflow, not by `make test`.
audit: $(TOOLS_VENV)/.installed ## pip-audit requirements.txt: fails on a known vulnerability that has a fix
	@mkdir -p $(LINT_DIR)
	$(TOOLS_VENV)/bin/pip-audit --requirement requirements.txt --format json --output $(LINT_DIR)/audit.json --progress-spinner off || true
	$(TOOLS_VENV)/bin/python -c 'import json, sys; \
		deps = json.load(open("$(LINT_DIR)/audit.json"))["dependencies"]; \
		fixable = ["%s %s: %s, fixed in %s" % (d["name"], d["version"], v["id"], v["fix_versions"]) \
			for d in deps for v in d.get("vulns", []) if v["fix_versions"]]; \
		print("\n".join(fixable) or "pip-audit: no known vulnerability with a fix"); sys.exit(bool(fixable))'

format: $(VENV)/.installed ## Rewrite: ruff --fix and ruff format
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Coverage counts the scripts the e2e tests run as subprocesses too (pyproject.toml: [tool.coverage]).
# TEST_WORKERS pytest-xdist processes, each taking whole test files (their module fixtures train
# models and start servers once). One per core: a third one on two cores was no faster.
TEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
test: lint $(SPARK_VENV)/.installed ## What CI runs: lint, type check, every test (slow ones included), coverage >= 90 %
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile --cov=mlops --cov=scripts \
		--cov-report=term-missing:skip-covered --cov-fail-under=90

test-fast: $(VENV)/.installed ## Every test except those marked slow
	$(VENV)/bin/pytest -m "not slow"

.PHONY: clean
clean: ## Remove the local MLflow store, prepared data and stamps (keeps .venv)
	rm -rf $(STORE) data .make $(LINT_DIR) bench-results .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.*
