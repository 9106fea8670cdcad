# The FastAPI gateway (port 8000): validates REST requests and forwards them over gRPC
# to TF Serving or the project's model server. Models are not baked in.
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
# The prediction log (SQLite) lives on a volume mounted here.
RUN mkdir -p /var/lib/housing && chown housing:housing /var/lib/housing
VOLUME ["/var/lib/housing"]
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/livez', timeout=2)"]
ENTRYPOINT ["python", "-m", "core.cli"]
CMD ["serve", "gateway", "--host=0.0.0.0", "--port=8000"]
