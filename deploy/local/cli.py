"""``housing serve stack``: its flags, and the order of the steps (ports, models, Prometheus
config, then the supervisor)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from core.errors import UserError
from core.paths import REPO_ROOT
from core.process import port_in_use
from deploy.local.models import fetch_storage_uri, prepare
from deploy.local.prometheus import write_local_prometheus_config
from deploy.local.services import DEFAULT_MODELS, PROMETHEUS_BINARY, SERVICES, local_layout
from deploy.local.settings import StackSettings
from deploy.local.supervisor import Supervisor, banner
from pipelines.common import add_models_dir


def run_stack(args: argparse.Namespace) -> int:
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
    if not args.no_prometheus and PROMETHEUS_BINARY.exists():
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
    if SERVICES["prometheus"] in services:
        write_local_prometheus_config(layout)
    if not 0 <= args.canary_percent <= 100:
        raise UserError(f"--canary-percent must be between 0 and 100, got {args.canary_percent}")
    gateway_env = {"HOUSING_CANARY_PERCENT": str(args.canary_percent)}
    supervisor = Supervisor(
        layout, services, console_logs=args.console_logs, env={"gateway": gateway_env}
    )
    return supervisor.run(args.timeout, banner(layout, services, args.console_logs))


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = {name: dict(service.ports) for name, service in SERVICES.items()}
    env = StackSettings()
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
    add_models_dir(parser)
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
        default=env.storage_uri or None,
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
        default=env.gateway_port or defaults["gateway"]["http"],
        help="gateway HTTP port (default: $AIP_HTTP_PORT, set by Vertex AI, or 8000)",
    )
    for flag, service, role, help_text in (
        ("--grpc-port", "model-server", "grpc", "model server gRPC port"),
        ("--rest-port", "model-server", "rest", "model server REST port"),
        ("--prometheus-port", "prometheus", "http", "Prometheus port"),
    ):
        parser.add_argument(flag, type=int, default=defaults[service][role], help=help_text)
    parser.add_argument(
        "--canary-percent",
        type=float,
        default=env.canary_percent,
        help="share of the gateway's requests (0-100) sent to the label canary "
        "(default: $HOUSING_CANARY_PERCENT or 0)",
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
