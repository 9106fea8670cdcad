"""The supervisor of ``housing serve stack``: start the services in order, wait until each is
ready, watch them, and stop them all in reverse order on Ctrl-C, SIGTERM or a crash."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from core.contract import EXAMPLE_INSTANCE
from core.errors import UserError
from core.process import ManagedProcess, Probe, ProcessFailed, housing_argv, http_ok
from deploy.local.services import PROMETHEUS_BINARY, Layout, Service


def health_probe(service: Service, layout: Layout) -> Probe:
    if service.health is None:
        return lambda: True
    role = service.health[0]
    port = layout.ports[service.name][role]
    return http_ok(f"http://127.0.0.1:{port}{layout.health_path(service)}")


def local_argv(service: Service, layout: Layout) -> list[str]:
    program = housing_argv() if service.program == "housing" else [str(PROMETHEUS_BINARY)]
    return [*program, *layout.command(service)]


class Stop(Exception):
    """Raised by the signal handler so the main loop unwinds into :meth:`Supervisor.stop`."""


class Supervisor:
    """The local processes, started in dependency order and stopped in reverse."""

    def __init__(
        self,
        layout: Layout,
        services: list[Service],
        console_logs: bool = False,
        env: dict[str, dict[str, str]] | None = None,
    ):
        self.layout = layout
        self.services = services
        self.console_logs = console_logs
        self.env = env or {}
        """Service name -> variables added to its environment (the stack's own flags)."""
        self.running: list[ManagedProcess] = []

    def start(self, service: Service) -> ManagedProcess:
        logs_dir = Path(self.layout.logs)
        logs_dir.mkdir(parents=True, exist_ok=True)
        process = ManagedProcess(
            service.name,
            local_argv(service, self.layout),
            None if self.console_logs else logs_dir / f"{service.name}.log",
            env={**self.layout.environment(service), **self.env.get(service.name, {})},
        ).start()
        self.running.append(process)
        return process

    def wait_ready(self, process: ManagedProcess, service: Service, deadline: float) -> None:
        try:
            process.wait_ready(health_probe(service, self.layout), deadline - time.monotonic())
        except ProcessFailed as exc:
            raise UserError(str(exc)) from None

    def stop(self, grace: float = 15.0) -> None:
        for process in reversed(self.running):
            process.stop(grace)
        self.running.clear()

    def run(self, timeout: float, banner: str) -> int:
        """Start every service, print ``banner`` once all are ready, then watch them until a
        signal (exit 0) or until one exits (a :class:`UserError`); always stop them all."""

        def on_signal(signum: int, _frame: object) -> None:
            raise Stop(signal.Signals(signum).name)

        watched = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, on_signal) for sig in watched}
        try:
            deadline = time.monotonic() + timeout
            for service in self.services:
                print(f"stack: starting {service.name} ...", flush=True)
                self.wait_ready(self.start(service), service, deadline)
            print(banner, flush=True)
            while True:
                for process in self.running:
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
            for sig in watched:
                signal.signal(sig, signal.SIG_IGN)
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            print("stack: stopped", flush=True)


def curl_examples(layout: Layout) -> list[str]:
    port = layout.ports["gateway"]["http"]
    body = json.dumps({"instances": [EXAMPLE_INSTANCE]})
    return [
        f"curl -s -X POST http://127.0.0.1:{port}/v1/models/{name}:predict "
        f"-H 'Content-Type: application/json' -d '{body}'"
        for name in layout.served
    ]


GRAFANA_URL = "http://127.0.0.1:3000"
DASHBOARD_PATH = "/d/housing-service"  # the uid in deploy/grafana/dashboards/housing.json


def grafana_dashboard_url(base: str = GRAFANA_URL) -> str | None:
    """The dashboard's URL when a Grafana answers at ``base`` (e.g. ``docker compose up
    grafana``), else None."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"{base}/api/health", timeout=1) as response:  # noqa: S310
            healthy = response.status == 200
    except OSError:
        return None
    return f"{base}{DASHBOARD_PATH}" if healthy else None


def banner(layout: Layout, services: list[Service], console_logs: bool) -> str:
    gateway = layout.ports["gateway"]["http"]
    server = layout.ports["model-server"]
    names = [service.name for service in services]
    lines = [
        "",
        "stack: ready",
        f"  gateway       http://127.0.0.1:{gateway}   (docs: /docs, metrics: /metrics)",
        f"  model server  grpc 127.0.0.1:{server['grpc']}, rest http://127.0.0.1:{server['rest']}"
        "  (stands in for TF Serving)",
    ]
    if "prometheus" in names:
        lines.append(f"  prometheus    http://127.0.0.1:{layout.ports['prometheus']['http']}")
    dashboard = grafana_dashboard_url()
    if dashboard:
        lines.append(f"  grafana       {dashboard}")
    if not console_logs:
        logs = ", ".join(str(Path(layout.logs) / f"{name}.log") for name in names)
        lines.append(f"  logs          {logs}")
    lines += ["", "try:", *(f"  {line}" for line in curl_examples(layout)), "", "Ctrl-C stops."]
    return "\n".join(lines)
