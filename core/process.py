"""The one process launcher: the local stack, the tests and the benchmarks all start through it.

A :class:`ManagedProcess` runs an argv with its output in a log file (or the launcher's
own terminal), in its own session so that stopping it reaches every process it spawned
(uvicorn workers, batch threads' helpers). Readiness is a probe polled until it answers
true (:func:`http_ok`, :func:`tcp_open`, :func:`grpc_serving`); when the process dies or
the time runs out, :class:`ProcessFailed` carries the tail of its log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

from core.paths import REPO_ROOT

LOOPBACK = "127.0.0.1"

Probe = Callable[[], bool]
"""Answers true once a service can do its job; an exception counts as "not yet"."""


class ProcessFailed(RuntimeError):
    """A managed process exited during start-up or was not ready in time."""


def housing_argv(*args: str) -> list[str]:
    """The ``housing`` command of this interpreter, whether or not the script is on PATH."""
    return [sys.executable, "-m", "core.cli", *args]


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nothing listens on now (the OS picks it; a race with others is unlikely)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    """Whether binding ``port`` would fail, i.e. something already holds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def http_ok(url: str, timeout: float = 2.0) -> Probe:
    """Ready when ``GET url`` answers 200."""

    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return bool(response.status == 200)
        except urllib.error.HTTPError:
            return False

    return probe


def tcp_open(port: int, host: str = LOOPBACK) -> Probe:
    """Ready when something accepts connections on ``host:port``."""

    def probe() -> bool:
        with socket.create_connection((host, port), timeout=0.5):
            return True

    return probe


def grpc_serving(target: str) -> Probe:
    """Ready when the standard gRPC health service reports SERVING for the whole server."""

    def probe() -> bool:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        with grpc.insecure_channel(target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    return probe


class ManagedProcess:
    """One child process: started, probed until ready, stopped whatever happened.

    ``log_path`` None means the child writes to this process's own stdout/stderr.
    ``env`` is added to this process's environment (``inherit_env=False``: it is the whole
    environment, for a child that must not see some variable). ``ports`` names the ports it
    listens on by role (``grpc``, ``rest``, ``http``).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path | None,
        env: Mapping[str, str] | None = None,
        cwd: Path = REPO_ROOT,
        ports: Mapping[str, int] | None = None,
        inherit_env: bool = True,
    ):
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        inherited = os.environ if inherit_env else {}
        self.env = {**inherited, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.cwd = cwd
        self.ports = dict(ports or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> ManagedProcess:
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT if self._log else None,
            start_new_session=True,  # a terminal's Ctrl-C reaches the launcher, which stops us
        )
        return self

    def __enter__(self) -> ManagedProcess:
        return self.start() if self.proc is None else self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ProcessFailed(f"{self.name} was not started")
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def address(self, role: str) -> str:
        """``host:port`` of the port named ``role`` (a gRPC target, say)."""
        return f"{LOOPBACK}:{self.ports[role]}"

    def url(self, role: str = "http") -> str:
        return f"http://{self.address(role)}"

    def log_text(self) -> str:
        if self.log_path is None:
            return ""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None:
            return "(its output is above)"
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_ready(self, probe: Probe, timeout: float = 120.0) -> ManagedProcess:
        """Poll ``probe`` until true; stop the process and raise if it dies or time runs out."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while True:
            code = self.returncode
            if code is not None:
                raise ProcessFailed(
                    f"{self.name} exited with status {code} during start-up; "
                    f"see {self.log_path}:\n{self.log_tail()}"
                )
            try:
                if probe():
                    return self
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
                last_error = exc
            if time.monotonic() > deadline:
                self.stop()
                detail = f" (last probe: {last_error!r})" if last_error else ""
                raise ProcessFailed(
                    f"{self.name} not ready within {timeout:.0f}s{detail}; "
                    f"see {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to exit on its own; its exit status."""
        if self.proc is None:
            raise ProcessFailed(f"{self.name} was not started")
        code = self.proc.wait(timeout=timeout)
        self._close_log()
        return code

    def send_signal(self, sig: signal.Signals) -> None:
        """Signal the process alone (e.g. SIGINT to a launcher that stops its own children)."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def signal_group(self, sig: signal.Signals) -> None:
        """Signal the process and everything it spawned (its session's process group)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)

    def kill(self) -> int | None:
        """SIGKILL the group, no chance to clean up: what a crash or the OOM killer does."""
        self.signal_group(signal.SIGKILL)
        if self.proc is None:
            return None
        code = self.proc.wait(timeout=30)
        self._close_log()
        return code

    def stop(
        self, grace: float = 15.0, sig: signal.Signals = signal.SIGTERM, group: bool = True
    ) -> int | None:
        """``sig`` (to the group, or the process alone), then SIGKILL after ``grace`` seconds.

        Returns the exit status (None if never started). Safe to call more than once.
        """
        if self.proc is None:
            return None
        if self.alive():
            if group:
                self.signal_group(sig)
            else:
                self.send_signal(sig)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                return self.kill()
        self._close_log()
        return self.proc.poll()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
