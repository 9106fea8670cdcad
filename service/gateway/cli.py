"""``housing serve gateway``: run the REST gateway with uvicorn (uvloop, httptools).

Every ``GatewaySettings`` field has a flag (its docstring is the help); a flag given on the
command line beats ``HOUSING_*`` env vars, which beat ``.env``, which beats the defaults.
With ``--workers N > 1`` each worker binds its own ``SO_REUSEPORT`` socket, so the kernel
spreads connections evenly (a shared accept socket lets one worker take every keep-alive
connection and leaves a core idle), and the workers share one prometheus-client
multiprocess folder (``PROMETHEUS_MULTIPROC_DIR``, emptied at start, a temporary folder
unless set) so every worker's /metrics shows the whole gateway.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from core.errors import UserError

# Fields with their own flag shapes, or deliberately not on the command line.
SPECIAL = {"upstreams", "cors_origins", "api_keys", "aip_http_port", "aip_predict_route"}
SPECIAL |= {"aip_health_route", "metrics_keys", "allow_unauthenticated"}
APP_FACTORY = "service.gateway.app:create_app_from_env"


def register(subparsers: argparse._SubParsersAction) -> None:
    from .settings import GatewaySettings

    parser = subparsers.add_parser(
        "gateway",
        help="REST gateway: validated predictions proxied over gRPC",
        description=(
            "Serve the REST API on HOST:PORT and forward predictions over gRPC to TF Serving "
            "or the model server. Precedence: flags > HOUSING_* env > .env > defaults; "
            "AIP_HTTP_PORT (Vertex AI) overrides the port. API keys only come from "
            "HOUSING_API_KEYS (a JSON list; scrape-only keys from HOUSING_METRICS_KEYS), "
            "never the command line, so they stay out of ps."
        ),
    )
    parser.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        default=argparse.SUPPRESS,
        help="serve a non-loopback --host without API keys (only when something in front "
        "of the gateway authenticates, e.g. a Vertex AI endpoint; env "
        "HOUSING_ALLOW_UNAUTHENTICATED=true)",
    )
    parser.add_argument(
        "--upstream",
        action="append",
        metavar="NAME=HOST:PORT",
        default=argparse.SUPPRESS,
        help="route model NAME to the gRPC server HOST:PORT (repeatable; replaces "
        "HOUSING_UPSTREAMS when given)",
    )
    parser.add_argument(
        "--cors-origin",
        action="append",
        metavar="ORIGIN",
        default=argparse.SUPPRESS,
        help="allow this browser origin (repeatable; default: no cross-origin access)",
    )
    for name, field in GatewaySettings.model_fields.items():
        if name in SPECIAL:
            continue
        default = field.get_default(call_default_factory=True)
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            metavar=name.split("_")[-1].upper(),
            default=argparse.SUPPRESS,
            help=f"{field.description} (default: {default!r})",
        )
    parser.set_defaults(func=run)


def parse_upstreams(values: list[str]) -> dict[str, str]:
    routes = {}
    for value in values:
        name, sep, target = value.partition("=")
        if not sep or not name or not target:
            raise UserError(f"--upstream expects NAME=HOST:PORT, got {value!r}")
        routes[name] = target
    return routes


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    from .settings import GatewaySettings

    given = {k: v for k, v in vars(args).items() if k in GatewaySettings.model_fields}
    if "upstream" in vars(args):
        given["upstreams"] = parse_upstreams(args.upstream)
    if "cors_origin" in vars(args):
        given["cors_origins"] = list(args.cors_origin)
    return given


def load_settings(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """Settings with flags applied; a bad value is a one-line UserError."""
    from pydantic import ValidationError

    from .settings import GatewaySettings

    overrides = overrides_from(args)
    try:
        return GatewaySettings(**overrides), overrides
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise UserError(f"invalid gateway setting {where}: {first['msg']}") from None


def export(overrides: dict[str, Any]) -> None:
    """Hand the flags to worker processes as HOUSING_* env vars (same precedence)."""
    for name, value in overrides.items():
        text = json.dumps(value) if isinstance(value, dict | list) else str(value)
        os.environ[f"HOUSING_{name.upper()}"] = text


def reuseport_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def serve_one(host: str, port: int, level: str, reuse_port: bool) -> None:
    """One uvicorn server process (the factory builds the app after this process started)."""
    import uvicorn

    from .jsonlog import logging_config

    config = uvicorn.Config(
        APP_FACTORY,
        factory=True,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_config=logging_config(level),
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    if reuse_port:
        server.run(sockets=[reuseport_socket(host, port)])
    else:
        server.run()


def run(args: argparse.Namespace) -> int:
    from .metrics import MULTIPROC_ENV

    settings, overrides = load_settings(args)
    export(overrides)
    host, port, level = settings.host, settings.listen_port, settings.log_level
    if settings.workers == 1 and not os.environ.get(MULTIPROC_ENV):
        serve_one(host, port, level, reuse_port=False)
        return 0
    # several workers, or a metrics folder to keep tidy (emptied at start, dead marked)
    return supervise(settings.workers, host, port, level)


def metrics_folder() -> tuple[Path, bool]:
    """The workers' shared metrics folder, emptied of earlier runs' files; True when it is a
    temporary folder this process must remove."""
    from .metrics import MULTIPROC_ENV

    given = os.environ.get(MULTIPROC_ENV)
    folder = Path(given) if given else Path(tempfile.mkdtemp(prefix="housing-gateway-metrics-"))
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(folder)  # inherited by the workers, read at import
    return folder, not given


def supervise(workers: int, host: str, port: int, level: str) -> int:
    """Start N worker processes; stop them all when one exits or on SIGTERM/SIGINT."""
    probe = reuseport_socket(host, port)  # fail fast (port taken) before forking workers
    probe.close()
    folder, temporary = metrics_folder()
    try:
        return run_workers(workers, host, port, level, folder)
    finally:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)


def run_workers(workers: int, host: str, port: int, level: str, metrics_dir: Path) -> int:
    import multiprocessing

    from prometheus_client import multiprocess

    context = multiprocessing.get_context("spawn")
    procs = [
        context.Process(target=serve_one, args=(host, port, level, True), name=f"gateway-{i}")
        for i in range(workers)
    ]
    for proc in procs:
        proc.start()

    def stop(signum: int, _frame: Any) -> None:
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    from multiprocessing.connection import wait

    wait([proc.sentinel for proc in procs])
    stop(signal.SIGTERM, None)
    for proc in procs:
        proc.join(15)
        if proc.pid is not None:  # its live gauges leave the sums; its counters stay
            multiprocess.mark_process_dead(proc.pid, str(metrics_dir))
    codes = [proc.exitcode or 0 for proc in procs]
    print(f"gateway workers exited: {codes}", file=sys.stderr)
    return max((abs(code) for code in codes), default=0)
