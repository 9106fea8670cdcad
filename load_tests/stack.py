"""Start the project's model server and gateway as real processes on free loopback ports.

Shared by the peer benchmark and by the load and fault tests, so they all exercise the
same command lines a user runs (``housing serve model-server`` / ``housing serve gateway``).
Every process is started in its own session and always stopped (TERM, then KILL).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
HOUSING = [sys.executable, "-m", "core.cli"]
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class ManagedProcess:
    """A subprocess with its output in a log file, waited on with a bounded probe."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path = REPO_ROOT,
        ports: dict[str, int] | None = None,
    ):
        self.name = name
        self.ports = ports or {}
        self.argv = list(argv)
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} not started"
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_ready(self, probe: Callable[[], bool], timeout: float = 90) -> ManagedProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            try:
                if probe():
                    return self
            except (httpx.HTTPError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"{self.name} not ready within {timeout:.0f}s:\n{self.log_tail()}")

    def signal_group(self, sig: signal.Signals) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL, no chance to clean up: what a crash or the OOM killer does."""
        self.signal_group(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)

    def stop(self, grace: float = 10) -> None:
        if not self.alive():
            return
        self.signal_group(signal.SIGTERM)
        try:
            assert self.proc is not None
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()


def http_ok(url: str) -> Callable[[], bool]:
    return lambda: httpx.get(url, timeout=2).status_code == 200


def model_server(
    config_file: Path,
    log_path: Path,
    grpc_port: int | None = None,
    rest_port: int | None = None,
    batching_file: Path | None = None,
    poll_seconds: float = 1,
    extra: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> ManagedProcess:
    """The project's model server over ``config_file``; ``ports["grpc"]``, ``ports["rest"]``."""
    grpc_port = grpc_port or free_port()
    rest_port = rest_port or free_port()
    argv = [
        *HOUSING, "serve", "model-server",
        "--host", LOOPBACK, "--port", str(grpc_port), "--rest_api_port", str(rest_port),
        "--model_config_file", str(config_file),
        "--file_system_poll_wait_seconds", str(poll_seconds),
        *(["--enable_batching", "--batching_parameters_file", str(batching_file)]
          if batching_file else []),
        *extra,
    ]  # fmt: skip
    ports = {"grpc": grpc_port, "rest": rest_port}
    return ManagedProcess("model-server", argv, log_path, env=env, ports=ports)


def gateway(
    upstreams: dict[str, str],
    log_path: Path,
    port: int | None = None,
    env: dict[str, str] | None = None,
    extra: Sequence[str] = (),
) -> ManagedProcess:
    """The gateway routing each model name to a ``host:port`` gRPC target; ``ports["http"]``."""
    port = port or free_port()
    argv = [*HOUSING, "serve", "gateway", "--host", LOOPBACK, "--port", str(port)]
    for name, target in upstreams.items():
        argv += ["--upstream", f"{name}={target}"]
    return ManagedProcess("gateway", [*argv, *extra], log_path, env=env, ports={"http": port})


def base_url(proc: ManagedProcess, port_name: str = "http") -> str:
    return f"http://{LOOPBACK}:{proc.ports[port_name]}"
