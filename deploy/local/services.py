"""The service table, described once: ``docker-compose.yml`` and ``housing serve stack`` follow it.

``SERVICES`` is the single table of what runs: program, arguments, container ports,
environment and health probe of every service. Arguments and environment are templates
whose ``{placeholders}`` a :class:`Layout` fills in: :data:`COMPOSE` gives the paths and
host names inside the docker stack, :func:`local_layout` the paths of this checkout and
loopback addresses. A test renders the table with :data:`COMPOSE` and compares it with
``docker-compose.yml``, so the two cannot drift apart.

Locally there is no TensorFlow Serving binary (it ships only as a docker image), so the
project's model server, which speaks the same protocol, stands in for it: it serves both
models from ``models/models.config`` and the gateway sends both models to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from core.contract import KERAS_MODEL, SKLEARN_MODEL
from core.paths import REPO_ROOT

PROMETHEUS_IMAGE = "prom/prometheus:v3.5.0"
LOCUST_IMAGE = "locustio/locust:2.43.1"

DEFAULT_MODELS = ((SKLEARN_MODEL, "sklearn"), (KERAS_MODEL, "keras"))
PROMETHEUS_BINARY = Path("/usr/bin/prometheus")

# Model server flags shared by TF Serving and the project's server (same names, same meaning).
MODEL_SERVER_FLAGS = (
    "--port={grpc}",
    "--rest_api_port={rest}",
    "--model_config_file_poll_wait_seconds=30",
    "--file_system_poll_wait_seconds=5",
    "--enable_batching",
    "--batching_parameters_file={tfserving_conf}/batching.config",
    "--monitoring_config_file={tfserving_conf}/monitoring.config",
)


@dataclass(frozen=True)
class Service:
    """One deployable: how it is started and how to tell that it is ready."""

    name: str
    program: str
    """Executable inside the container (``housing`` is the project's console script)."""
    args: tuple[str, ...]
    ports: Mapping[str, int] = field(default_factory=dict)
    """Container ports by role; locally the same numbers unless overridden by flags."""
    environment: Mapping[str, str] = field(default_factory=dict)
    health: tuple[str, str] | None = None
    """(port role, HTTP path) that answers 200 once the service can do its job."""
    local: bool = True
    """False for services the local stack does not start (TF Serving, the one-shot trainer)."""


SERVICES: dict[str, Service] = {
    service.name: service
    for service in (
        Service(
            name="trainer",
            program="housing",
            args=("serve", "stack", "--prepare-only", "--models-dir", "{models}"),
            environment={"HOUSING_MODELS_DIR": "{models}"},
            local=False,
        ),
        Service(
            name="tfserving",
            program="tensorflow_model_server",
            args=(
                *MODEL_SERVER_FLAGS,
                "--model_config_file={models}/tfserving.config",
            ),
            ports={"grpc": 8500, "rest": 8501},
            health=("rest", f"/v1/models/{KERAS_MODEL}"),
            local=False,
        ),
        Service(
            name="model-server",
            program="housing",
            args=(
                "serve",
                "model-server",
                "--host={bind}",
                *MODEL_SERVER_FLAGS,
                "--model_config_file={models}/models.config",
            ),
            ports={"grpc": 8500, "rest": 8501},
            environment={"HOUSING_MODELS_DIR": "{models}"},
            health=("rest", "/v1/models/{served_model}"),
        ),
        Service(
            name="gateway",
            program="housing",
            args=(
                "serve",
                "gateway",
                "--host={bind}",
                "--port={http}",
                f"--upstream={KERAS_MODEL}={{tfserving_host}}:{{tfserving_grpc}}",
                f"--upstream={SKLEARN_MODEL}={{model_server_host}}:{{model_server_grpc}}",
            ),
            ports={"http": 8000},
            environment={
                "HOUSING_DEFAULT_MODEL": "{served_model}",
                "HOUSING_MODELS_DIR": "{models}",
                "HOUSING_PREDICTION_LOG_PATH": "{logs}/predictions.sqlite3",
                "HOUSING_DEADLINE_SECONDS": "5",
            },
            health=("http", "/readyz"),
        ),
        Service(
            name="prometheus",
            program="prometheus",
            args=(
                "--config.file={prometheus_config}",
                "--storage.tsdb.path={prometheus_data}",
                "--web.listen-address={bind}:{http}",
            ),
            ports={"http": 9090},
            health=("http", "/-/ready"),
        ),
    )
}


@dataclass(frozen=True)
class Layout:
    """Where things are and how services reach each other, in one deployment."""

    models: str
    tfserving_conf: str
    logs: str
    prometheus_config: str
    prometheus_data: str
    bind: str
    hosts: Mapping[str, str]
    """Service name -> host name other services use to reach it."""
    ports: Mapping[str, Mapping[str, int]]
    """Service name -> port role -> port number."""
    served: tuple[str, ...] = (SKLEARN_MODEL, KERAS_MODEL)
    """Models the gateway routes; the first is its default model."""

    def values(self, service: Service) -> dict[str, str]:
        values = {
            "models": self.models,
            "tfserving_conf": self.tfserving_conf,
            "logs": self.logs,
            "prometheus_config": self.prometheus_config,
            "prometheus_data": self.prometheus_data,
            "bind": self.bind,
            "served_model": self.served[0],
        }
        for name, host in self.hosts.items():
            key = name.replace("-", "_")
            values[f"{key}_host"] = host
            for role, port in self.ports.get(name, {}).items():
                values[f"{key}_{role}"] = str(port)
        for role, port in self.ports.get(service.name, {}).items():
            values[role] = str(port)
        return values

    def command(self, service: Service) -> list[str]:
        values = self.values(service)
        return [
            arg.format(**values)
            for arg in service.args
            if not arg.startswith("--upstream=") or arg.split("=")[1] in self.served
        ]

    def health_path(self, service: Service) -> str | None:
        return service.health[1].format(**self.values(service)) if service.health else None

    def environment(self, service: Service) -> dict[str, str]:
        values = self.values(service)
        return {key: value.format(**values) for key, value in service.environment.items()}


COMPOSE = Layout(
    models="/models",
    tfserving_conf="/etc/tfserving",
    logs="/var/lib/housing",
    prometheus_config="/etc/prometheus/prometheus.yml",
    prometheus_data="/prometheus",
    bind="0.0.0.0",
    hosts={name: name for name in SERVICES},
    ports={name: dict(service.ports) for name, service in SERVICES.items()},
)
"""The docker stack: every service in its own container, reached by its service name."""


def local_layout(
    models_dir: Path,
    logs_dir: Path,
    ports: Mapping[str, Mapping[str, int]] | None = None,
    served: tuple[str, ...] = (SKLEARN_MODEL, KERAS_MODEL),
    bind: str = "127.0.0.1",
) -> Layout:
    """This checkout on loopback, the project's model server standing in for TF Serving."""
    port_map = {name: dict(service.ports) for name, service in SERVICES.items()}
    for name, overrides in (ports or {}).items():
        port_map[name].update(overrides)
    port_map["tfserving"] = port_map["model-server"]
    return Layout(
        models=str(models_dir),
        tfserving_conf=str(REPO_ROOT / "deploy" / "tfserving"),
        logs=str(logs_dir),
        prometheus_config=str(logs_dir / "prometheus" / "prometheus.yml"),
        prometheus_data=str(logs_dir / "prometheus" / "data"),
        bind=bind,
        hosts={name: "127.0.0.1" for name in SERVICES},
        ports=port_map,
        served=served,
    )
