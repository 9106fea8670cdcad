"""The service stack, described once: ``docker-compose.yml`` and ``housing serve stack`` follow it.

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

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.contract import EXAMPLE_INSTANCE, KERAS_MODEL, SKLEARN_MODEL
from core.paths import REPO_ROOT
from core.process import (
    ManagedProcess,
    Probe,
    ProcessFailed,
    housing_argv,
    http_ok,
    port_in_use,
)

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


# ---- Prometheus configuration for the local stack ---------------------------------------


def local_prometheus_config(compose_config: dict[str, Any], layout: Layout) -> dict[str, Any]:
    """Rewrite the docker Prometheus config for loopback: ``service:port`` -> local address.

    Rule files are resolved against the project's ``deploy/prometheus`` folder, which the
    docker stack mounts at ``/etc/prometheus``.
    """
    by_container_port = {
        (name, port): (layout.hosts[name], layout.ports[name][role])
        for name, service in SERVICES.items()
        for role, port in service.ports.items()
    }
    config = json.loads(json.dumps(compose_config))
    for job in config.get("scrape_configs", []):
        for static in job.get("static_configs", []):
            targets = []
            for target in static.get("targets", []):
                host, _, port = str(target).rpartition(":")
                if host in ("localhost", "127.0.0.1"):  # Prometheus scraping itself
                    host = "prometheus"
                local = by_container_port.get((host, int(port))) if port.isdigit() else None
                targets.append(f"{local[0]}:{local[1]}" if local else target)
            static["targets"] = targets
    rules_dir = REPO_ROOT / "deploy" / "prometheus"
    config["rule_files"] = [
        str(rules_dir / Path(str(path)).relative_to("/etc/prometheus"))
        if str(path).startswith("/etc/prometheus/")
        else str(rules_dir / path)
        for path in config.get("rule_files", [])
    ]
    return config


def default_prometheus_config() -> dict[str, Any]:
    """Used when ``deploy/prometheus/prometheus.yml`` is absent: scrape what the table runs."""
    return {
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        "scrape_configs": [
            {
                "job_name": "gateway",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": ["gateway:8000"]}],
            },
            {
                "job_name": "model-server",
                "metrics_path": "/monitoring/prometheus/metrics",
                "static_configs": [{"targets": ["model-server:8501"]}],
            },
        ],
    }


def write_local_prometheus_config(layout: Layout) -> Path:
    import yaml

    source = REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml"
    compose_config = (
        yaml.safe_load(source.read_text()) if source.is_file() else default_prometheus_config()
    )
    path = Path(layout.prometheus_config)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(local_prometheus_config(compose_config, layout)))
    return path


# ---- models ---------------------------------------------------------------------------


def has_model(models_dir: Path, name: str) -> bool:
    """A published version is an integer folder with a manifest (staging folders are not)."""
    model_dir = models_dir / name
    return model_dir.is_dir() and any(
        child.name.isdigit() and (child / "manifest.json").is_file()
        for child in model_dir.iterdir()
    )


def prepare(
    models_dir: Path,
    data_dir: Path | None,
    train: bool,
    models: tuple[str, ...] = (SKLEARN_MODEL, KERAS_MODEL),
) -> None:
    """Train the default models that ``models_dir`` lacks, after verifying the dataset.

    When every model is there, nothing needs the data, so a restart skips both steps.
    """
    from core.errors import UserError

    missing = []
    for name, kind in DEFAULT_MODELS:
        if name not in models:
            continue
        if has_model(models_dir, name):
            print(f"stack: reusing {name} from {models_dir / name}", flush=True)
        elif not train:
            raise UserError(f"no {name} model in {models_dir}; train it: housing train {kind}")
        else:
            missing.append((name, kind))
    if not missing:
        return
    env = {**os.environ, "HOUSING_MODELS_DIR": str(models_dir)}
    fetch = [*housing_argv(), "data", "fetch"]
    if data_dir is not None:
        fetch += ["--data-dir", str(data_dir)]
    run_step(fetch, env)
    for name, kind in missing:
        print(f"stack: training {name} (housing train {kind}) ...", flush=True)
        run_step([*housing_argv(), "train", kind], env)


def fetch_storage_uri(uri: str, models_dir: Path) -> str:
    """Install the model version folder at ``uri`` (a ``gs://`` prefix) into ``models_dir``.

    On Vertex AI, ``AIP_STORAGE_URI`` holds a copy of the folder ``housing vertex upload``
    copied: one version with its manifest, which names the model, version and platform.
    The model server checks the artifact's SHA-256 against the manifest before loading it.
    """
    from google.cloud import storage

    from core.errors import UserError
    from deploy.vertex.gcs import split_uri
    from training.repository import ModelRepository, RepositoryError, read_manifest

    bucket, prefix = split_uri(uri)
    staging = models_dir / ".download"
    shutil.rmtree(staging, ignore_errors=True)
    count = 0
    for blob in storage.Client().list_blobs(bucket, prefix=f"{prefix}/" if prefix else None):
        relative = Path(blob.name[len(prefix) :].lstrip("/"))
        if not relative.parts or blob.name.endswith("/"):
            continue
        if ".." in relative.parts:
            raise UserError(f"refusing blob name {blob.name!r} under {uri}")
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(target))
        count += 1
    if count == 0:
        raise UserError(f"no files under {uri}")
    try:
        manifest = read_manifest(staging)
        name, version, platform = manifest["model"], int(manifest["version"]), manifest["platform"]
    except (OSError, ValueError, KeyError, TypeError, RepositoryError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(f"{uri} is not a model version folder with a manifest: {exc}") from None
    repo = ModelRepository(models_dir)
    destination = repo.version_dir(name, version)
    if destination.exists():
        shutil.rmtree(staging)
    else:
        destination.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(destination)
    repo.register(name, platform)
    print(f"stack: installed {name} version {version} from {uri}", flush=True)
    return str(name)


def run_step(argv: list[str], env: dict[str, str]) -> None:
    from core.errors import UserError

    result = subprocess.run(argv, env=env, cwd=REPO_ROOT, check=False)
    if result.returncode != 0:
        shown = " ".join(argv[2:]).replace("core.cli", "housing")
        raise UserError(f"`{shown}` failed with exit status {result.returncode}")


# ---- processes --------------------------------------------------------------------------


def health_probe(service: Service, layout: Layout) -> Probe:
    if service.health is None:
        return lambda: True
    role = service.health[0]
    port = layout.ports[service.name][role]
    return http_ok(f"http://127.0.0.1:{port}{layout.health_path(service)}")


def local_argv(service: Service, layout: Layout) -> list[str]:
    program = housing_argv() if service.program == "housing" else [str(PROMETHEUS_BINARY)]
    return [*program, *layout.command(service)]


class Stack:
    """The local processes, started in dependency order and stopped in reverse."""

    def __init__(self, layout: Layout, services: list[Service], console_logs: bool = False):
        self.layout = layout
        self.services = services
        self.console_logs = console_logs
        self.running: list[ManagedProcess] = []

    def start(self, service: Service) -> ManagedProcess:
        logs_dir = Path(self.layout.logs)
        logs_dir.mkdir(parents=True, exist_ok=True)
        process = ManagedProcess(
            service.name,
            local_argv(service, self.layout),
            None if self.console_logs else logs_dir / f"{service.name}.log",
            env=self.layout.environment(service),
        ).start()
        self.running.append(process)
        return process

    def wait_ready(self, process: ManagedProcess, service: Service, deadline: float) -> None:
        from core.errors import UserError

        try:
            process.wait_ready(health_probe(service, self.layout), deadline - time.monotonic())
        except ProcessFailed as exc:
            raise UserError(str(exc)) from None

    def stop(self, grace: float = 15.0) -> None:
        for process in reversed(self.running):
            process.stop(grace)
        self.running.clear()


def curl_examples(layout: Layout) -> list[str]:
    port = layout.ports["gateway"]["http"]
    body = json.dumps({"instances": [EXAMPLE_INSTANCE]})
    return [
        f"curl -s -X POST http://127.0.0.1:{port}/v1/models/{name}:predict "
        f"-H 'Content-Type: application/json' -d '{body}'"
        for name in layout.served
    ]


class Stop(Exception):
    """Raised by the signal handler so the main loop unwinds into ``Stack.stop``."""


def run_stack(args: argparse.Namespace) -> int:
    from core.errors import UserError

    models_dir = args.models_dir.resolve()
    logs_dir = args.logs_dir.resolve()
    models = tuple(dict.fromkeys(args.models))
    if args.prepare_only:
        prepare(models_dir, args.data_dir, not args.no_train, models)
        return 0

    layout = local_layout(
        models_dir,
        logs_dir,
        {
            "model-server": {"grpc": args.grpc_port, "rest": args.rest_port},
            "gateway": {"http": args.gateway_port},
            "prometheus": {"http": args.prometheus_port},
        },
        served=models,
        bind=args.bind,
    )
    services = [SERVICES["model-server"], SERVICES["gateway"]]
    with_prometheus = not args.no_prometheus and PROMETHEUS_BINARY.exists()
    if with_prometheus:
        services.append(SERVICES["prometheus"])
    # Before training, which can take minutes: a busy port should fail at once.
    for service in services:
        for port in layout.ports[service.name].values():
            if port_in_use(port):
                raise UserError(
                    f"port {port} ({service.name}) is in use; stop what holds it or pick "
                    "another with the --*-port flags"
                )
    if args.storage_uri:
        models = (fetch_storage_uri(args.storage_uri, models_dir),)
        layout = replace(layout, served=models)
    prepare(models_dir, args.data_dir, not args.no_train, models)
    if with_prometheus:
        write_local_prometheus_config(layout)

    def on_signal(signum: int, _frame: object) -> None:
        raise Stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    stack = Stack(layout, services, console_logs=args.console_logs)
    try:
        deadline = time.monotonic() + args.timeout
        for service in services:
            print(f"stack: starting {service.name} ...", flush=True)
            stack.wait_ready(stack.start(service), service, deadline)
        print_banner(layout, stack, with_prometheus)
        while True:
            for process in stack.running:
                code = process.returncode
                if code is not None:
                    raise UserError(
                        f"{process.name} exited with status {code}; see "
                        f"{process.log_path}:\n{process.log_tail(20)}"
                    )
            time.sleep(1.0)
    except Stop as stop:
        print(f"\nstack: {stop}: stopping ...", flush=True)
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("stack: stopped", flush=True)


def print_banner(layout: Layout, stack: Stack, with_prometheus: bool) -> None:
    gateway = layout.ports["gateway"]["http"]
    server = layout.ports["model-server"]
    lines = [
        "",
        "stack: ready",
        f"  gateway       http://127.0.0.1:{gateway}   (docs: /docs, metrics: /metrics)",
        f"  model server  grpc 127.0.0.1:{server['grpc']}, rest http://127.0.0.1:{server['rest']}"
        "  (stands in for TF Serving)",
    ]
    if with_prometheus:
        lines.append(f"  prometheus    http://127.0.0.1:{layout.ports['prometheus']['http']}")
    if not stack.console_logs:
        lines.append(f"  logs          {', '.join(str(r.log_path) for r in stack.running)}")
    lines += ["", "try:", *(f"  {line}" for line in curl_examples(layout)), "", "Ctrl-C stops."]
    print("\n".join(lines), flush=True)


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = {name: dict(service.ports) for name, service in SERVICES.items()}
    parser = subparsers.add_parser(
        "stack",
        help="run the whole service locally: model server, gateway and Prometheus",
        description=(
            "Verify the dataset, train the default models if the models folder lacks them, "
            "then start the project's model server (standing in for TF Serving, serving both "
            "models), the gateway and, where /usr/bin/prometheus exists, Prometheus, with the "
            "settings of docker-compose.yml. Waits until the gateway is ready, prints the URLs "
            "and curl examples; Ctrl-C stops everything."
        ),
    )
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=Path(os.environ.get("HOUSING_MODELS_DIR", REPO_ROOT / "models")),
        help="model repository (default: $HOUSING_MODELS_DIR or models/)",
    )
    parser.add_argument(
        "--logs-dir",
        type=Path,
        default=REPO_ROOT / "logs",
        help="service logs, prediction log and Prometheus data (default: logs/)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where `housing data fetch` extracts the dataset (default: data/)",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        choices=[name for name, _ in DEFAULT_MODELS],
        default=[name for name, _ in DEFAULT_MODELS],
        help="models to serve (and train if missing); the first is the gateway's default "
        "(default: both)",
    )
    parser.add_argument(
        "--storage-uri",
        default=os.environ.get("AIP_STORAGE_URI") or None,
        help="gs:// folder of one model version to install and serve alone (default: "
        "$AIP_STORAGE_URI, set by Vertex AI)",
    )
    parser.add_argument(
        "--bind",
        default="127.0.0.1",
        help="address the services listen on (default 127.0.0.1; 0.0.0.0 in a container)",
    )
    parser.add_argument(
        "--console-logs",
        action="store_true",
        help="services write to this terminal instead of files in --logs-dir (containers)",
    )
    parser.add_argument(
        "--gateway-port",
        type=int,
        default=int(os.environ.get("AIP_HTTP_PORT") or defaults["gateway"]["http"]),
        help="gateway HTTP port (default: $AIP_HTTP_PORT, set by Vertex AI, or 8000)",
    )
    parser.add_argument(
        "--grpc-port",
        type=int,
        default=defaults["model-server"]["grpc"],
        help="model server gRPC port",
    )
    parser.add_argument(
        "--rest-port",
        type=int,
        default=defaults["model-server"]["rest"],
        help="model server REST port",
    )
    parser.add_argument(
        "--prometheus-port",
        type=int,
        default=defaults["prometheus"]["http"],
        help="Prometheus port",
    )
    parser.add_argument(
        "--no-prometheus", action="store_true", help="do not start Prometheus even if installed"
    )
    parser.add_argument(
        "--no-train",
        action="store_true",
        help="fail instead of training when a default model is missing",
    )
    parser.add_argument(
        "--prepare-only",
        action="store_true",
        help="only verify the data and train missing models, then exit (the docker trainer)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds to wait for every service to become ready (default: 300)",
    )
    parser.set_defaults(func=run_stack)


if __name__ == "__main__":
    from core.cli import main

    sys.exit(main(["serve", "stack", *sys.argv[1:]]))
