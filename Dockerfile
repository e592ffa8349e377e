# One image for every step: the model server by default, any pipeline script on request.
#
#   make docker-build                        CPU build of PyTorch (the default)
#   make docker-build DOCKER_BUILD_ARGS="--build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128"
#   docker run IMAGE                         -> python scripts/serve.py --config configs/default.yaml
#   docker run IMAGE scripts/train.py --config configs/default.yaml
#
# It runs as a numeric non-root user with a read-only root file system: only /tmp must be writable
# (HOME, caches and the Prometheus multiprocess folder live there). Secrets and URIs come from the
# environment at run time (MLFLOW_TRACKING_URI, OPTUNA_STORAGE, tokens), never from this file.

# ---- python: the base of both stages, a full patch version ---------------------------------------
# Written out (not an ARG) so that Dependabot (.github/dependabot.yml) can move it. `make
# docker-build` builds for PLATFORM (linux/amd64 unless set): an ARM laptop builds what amd64
# nodes run.
FROM python:3.11.16-slim-trixie AS python

# ---- build: a virtual environment with the runtime requirements only ----------------------------
FROM python AS build

# PyPI's default torch wheel bundles CUDA (several GB); PyTorch's own index serves the CPU build.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
# torch first, from its index, with the version pinned in requirements.txt (one place for the pin);
# the second install then finds torch satisfied ("2.13.0+cpu" matches "==2.13.0").
RUN grep -E '^torch==' /tmp/requirements.txt > /tmp/torch.txt \
    && pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" -r /tmp/torch.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt

# ---- runtime: slim Python, the venv and the code; nothing used only to build ---------------------
FROM python AS runtime

ARG VERSION=dev
ARG GIT_COMMIT=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="mlops" \
      org.opencontainers.image.description="Tabular ML pipeline (prepare, train, tune, promote) and model server" \
      org.opencontainers.image.source="https://github.com/example/mlops" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.created="${CREATED}"

# A passwd entry for the numeric user: getpass.getuser() (MLflow's run user, torch caches) raises
# KeyError for a uid the system does not know.
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid app --no-create-home --home-dir /tmp --shell /usr/sbin/nologin app

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY requirements.txt ./
COPY mlops/ mlops/
COPY scripts/ scripts/
COPY configs/ configs/
# Compiled now because the read-only root file system forbids writing __pycache__ at run time.
RUN /opt/venv/bin/python -m compileall -q mlops scripts

# HOME and every cache under /tmp: the only writable path on a read-only root file system.
# GIT_COMMIT: there is no .git in the image; models record this commit instead (mlops/tracking.py).
# GIT_PYTHON_REFRESH: MLflow imports GitPython, which warns when no git binary exists.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp/matplotlib \
    GIT_PYTHON_REFRESH=quiet \
    GIT_COMMIT=${GIT_COMMIT} \
    HOST=0.0.0.0 \
    PORT=8080

USER 10001:10001
EXPOSE 8080

# Readiness, not liveness: Docker marks the container healthy only once the model is loaded.
# Pipeline steps run from this image never listen, so `docker ps` shows them unhealthy; harmless.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8080')}/v2/health/ready\", timeout=2)"]

# Exec form: python is PID 1 and receives SIGTERM itself, so the server drains before it exits.
ENTRYPOINT ["python"]
CMD ["scripts/serve.py", "--config", "configs/default.yaml"]
