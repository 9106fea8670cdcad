# One-container serving image: the project's model server and the gateway in front of it,
# started by `housing serve stack`. For Vertex AI's custom-container contract (the
# housing_sklearn model, which Google's prebuilt containers cannot unpickle): the gateway
# listens on AIP_HTTP_PORT and answers AIP_PREDICT_ROUTE / AIP_HEALTH_ROUTE, and the model
# version at AIP_STORAGE_URI is downloaded into /models at start. Anywhere else, mount a
# model repository at /models instead.
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
RUN pip install --no-cache-dir . \
    && pip uninstall --yes housing-service

# ---- runtime: no compilers, no pip cache, a non-root user ---------------------------
FROM ${PYTHON_IMAGE} AS runtime
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
RUN mkdir -p /models /var/lib/housing && chown 10001:10001 /models /var/lib/housing
USER 10001:10001
# Vertex AI authenticates every call (IAM) before it reaches the container, so the gateway
# on 0.0.0.0 runs without API keys; set HOUSING_API_KEYS to require one anywhere else.
ENV HOUSING_PREDICTION_LOG_PATH=/var/lib/housing/predictions.sqlite3 \
    HOUSING_ALLOW_UNAUTHENTICATED=true
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % (os.environ.get('AIP_HTTP_PORT') or '8000'), timeout=2)"]
ENTRYPOINT ["python", "-m", "core.cli"]
CMD ["serve", "stack", "--bind=0.0.0.0", "--models-dir=/models", "--logs-dir=/var/lib/housing", "--no-train", "--no-prometheus", "--console-logs"]
