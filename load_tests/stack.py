"""How the project's model server and gateway (and a Prometheus scraping them) are started as
real processes on loopback.

Shared by the benchmarks and by the load, fault and integration tests, so they all run the
command lines a user runs (``housing serve model-server`` / ``housing serve gateway``)
through the one launcher, :class:`core.process.ManagedProcess`.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from core.process import LOOPBACK, ManagedProcess, free_port, grpc_serving, housing_argv

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"  # Debian package prometheus


def model_server(
    config_file: Path | None,
    log_path: Path,
    grpc_port: int | None = None,
    rest_port: int | None = None,
    batching_file: Path | None = None,
    poll_seconds: float = 1,
    extra: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> ManagedProcess:
    """The project's model server over ``config_file``; ``ports["grpc"]``, ``ports["rest"]``.

    ``config_file`` None: ``extra`` names the model (``--model_name``/``--model_base_path``).
    ``rest_port=0`` turns the REST API off.
    """
    grpc_port = grpc_port or free_port()
    rest_port = free_port() if rest_port is None else rest_port
    argv = [
        *housing_argv("serve", "model-server"),
        "--host", LOOPBACK, "--port", str(grpc_port), "--rest_api_port", str(rest_port),
        *(["--model_config_file", str(config_file)] if config_file else []),
        "--file_system_poll_wait_seconds", str(poll_seconds),
        *(["--enable_batching", "--batching_parameters_file", str(batching_file)]
          if batching_file else []),
        *extra,
    ]  # fmt: skip
    ports = {"grpc": grpc_port, **({"rest": rest_port} if rest_port else {})}
    env = {"TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return ManagedProcess("model-server", argv, log_path, env=env, ports=ports)


def serving(server: ManagedProcess, timeout: float = 120) -> ManagedProcess:
    """Wait until the model server's gRPC health service says SERVING (every model loaded)."""
    return server.wait_ready(grpc_serving(server.address("grpc")), timeout)


def gateway(
    upstreams: Mapping[str, str],
    log_path: Path,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    extra: Sequence[str] = (),
) -> ManagedProcess:
    """The gateway routing each model name to a ``host:port`` gRPC target; ``ports["http"]``."""
    port = port or free_port()
    argv = housing_argv("serve", "gateway", "--host", LOOPBACK, "--port", str(port))
    for name, target in upstreams.items():
        argv += ["--upstream", f"{name}={target}"]
    return ManagedProcess("gateway", [*argv, *extra], log_path, env=env, ports={"http": port})


def prometheus(config: Mapping[str, Any], folder: Path) -> ManagedProcess:
    """The Prometheus server with ``config`` (prometheus.yml as a mapping), its data and log in
    ``folder``; ``ports["http"]``. Started, it is ready once ``/-/ready`` answers."""
    port = free_port()
    config_file = folder / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(dict(config)))
    argv = [
        PROMETHEUS,
        f"--config.file={config_file}",
        f"--storage.tsdb.path={folder / 'prometheus-data'}",
        f"--web.listen-address={LOOPBACK}:{port}",
    ]
    return ManagedProcess("prometheus", argv, folder / "prometheus.log", ports={"http": port})
