# The trainer: verifies the bundled dataset and trains model versions into /models
# (a bind mount of ./models in docker-compose.yml). One-shot; no ports.
# GPU variant for Vertex AI training (`vertex train --accelerator-type ...`): build with
#   --build-arg EXTRAS='[gpu]'   (TensorFlow with its CUDA libraries, same version)
# syntax=docker/dockerfile:1
# Build context: the repository root (docker compose sets it; by hand:
#   docker build -f docker/NAME.Dockerfile .).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- build: resolve and install the dependencies into a virtual environment ----------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
ARG EXTRAS=""
COPY pyproject.toml setup.py README.md ./
COPY core/ core/
COPY training/ training/
COPY pipelines/ pipelines/
COPY service/ service/
COPY deploy/ deploy/
# Install the project with its pinned dependency ranges, then drop the project itself:
# the runtime stage runs the source from /app, where REPO_ROOT-relative paths
# (data/, deploy/) resolve. The install also generates the TF Serving protocol modules
# into core/tfserving_protos (setup.py), which the runtime stage takes from here.
# EXTRAS is the project's own extra (pinned in pyproject.toml).
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".${EXTRAS}" \
    && pip uninstall --yes housing-service

# ---- runtime: no pip cache, a non-root user; gcc because `housing train sklearn` ----
# ---- compiles the boosters to C (trees.so, training/compiled.py) --------------------
FROM ${PYTHON_IMAGE} AS runtime
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install --yes --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 housing \
    && useradd --system --uid 10001 --gid housing --home-dir /app --no-create-home housing
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOUSING_MODELS_DIR=/models
WORKDIR /app
COPY core/ core/
COPY training/ training/
COPY pipelines/ pipelines/
COPY service/ service/
COPY deploy/ deploy/
COPY --from=build /src/core/tfserving_protos/ core/tfserving_protos/
COPY data/housing.tgz data/housing.tgz
COPY docker/entrypoint.py docker/entrypoint.py
# The trainer may run as the host user's uid (so files in the ./models bind mount belong
# to them): the folders it writes besides /models are writable by any uid, like /tmp.
RUN mkdir -p /app/runs /app/logs /models \
    && chmod 1777 /app/data /app/runs /app/logs \
    && chown housing:housing /models
USER 10001:10001
# A one-shot job: healthy means the CLI imports.
HEALTHCHECK --interval=30s --timeout=10s --retries=3 \
    CMD ["python", "-c", "import core.cli"]
# Compose starts it as root so that docker/entrypoint.py can give a root-owned ./models to
# the checkout's owner and drop root before training; as any other uid it just checks
# that /models is writable.
ENTRYPOINT ["python", "/app/docker/entrypoint.py", "--writable", "/models", \
            "--owner-of", "/etc/housing/checkout", "--", "python", "-m", "core.cli"]
CMD ["serve", "stack", "--prepare-only", "--models-dir", "/models"]
