"""How each server under comparison is started and spoken to, all over the same model.

Each ``Peer`` knows how to start its process(es) on free loopback ports, the URL to POST
to, and how to encode the same feature rows in its own wire format. The project's entry
is the production path: gateway (REST) → gRPC → model server with server-side batching.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from core.contract import FEATURES, NUMERIC_FEATURES, SKLEARN_MODEL
from core.process import LOOPBACK, ManagedProcess, free_port
from load_tests import stack
from load_tests.peers import envs

Rows = list[dict[str, Any]]

# TF Serving's BatchingParameters text proto, read by the project's model server. One batch
# thread and no batch timeout measured best here: two threads in one Python process fight
# over the GIL (about 35% more CPU per request), and with a closed loop the queue fills
# while the single thread runs, so batches form without waiting.
BATCHING = """\
max_batch_size { value: 256 }
batch_timeout_micros { value: 0 }
max_enqueued_batches { value: 1000 }
num_batch_threads { value: 1 }
"""


@dataclass
class Context:
    """What every peer gets: the joblib artifact, its version folder, a scratch folder."""

    version_dir: Path
    workdir: Path
    workers: int = 2
    batching: str = BATCHING

    @property
    def joblib_path(self) -> Path:
        return self.version_dir / "model.joblib"


@dataclass
class Started:
    processes: list[ManagedProcess]
    url: str

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()


@dataclass(frozen=True)
class Peer:
    name: str
    what: str
    start: Callable[[Context], Started]
    encode: Callable[[Rows], str]


def wait_predicting(started: Started, encode: Callable[[Rows], str], rows: Rows, timeout: float):
    """Ready = answers a real prediction with 200 (not just a health check)."""
    body = encode(rows[:1])
    headers = {"content-type": "application/json"}

    def probe() -> bool:
        return httpx.post(started.url, content=body, headers=headers, timeout=5).is_success

    try:
        for proc in started.processes:
            proc.wait_ready(probe, timeout)
    except BaseException:
        started.stop()
        raise


def instances_body(rows: Rows) -> str:
    return json.dumps({"instances": rows})


def v2_body(rows: Rows) -> str:
    """Open Inference Protocol (V2) request, decoded by MLServer into a pandas DataFrame."""
    inputs = [
        {"name": n, "shape": [len(rows)], "datatype": "FP64", "data": [r[n] for r in rows]}
        for n in NUMERIC_FEATURES
    ]
    inputs.append(
        {
            "name": "ocean_proximity",
            "shape": [len(rows)],
            "datatype": "BYTES",
            "data": [r["ocean_proximity"] for r in rows],
            "parameters": {"content_type": "str"},
        }
    )
    return json.dumps({"inputs": inputs, "parameters": {"content_type": "pd"}})


def mlflow_body(rows: Rows) -> str:
    return json.dumps({"dataframe_records": [{n: r[n] for n in FEATURES} for r in rows]})


def on_path(env: envs.PeerEnv) -> dict[str, str]:
    """The peer's venv first on PATH: its servers spawn their own tools (mlflow → uvicorn)."""
    return {"PATH": f"{env.path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}


def start_project(ctx: Context) -> Started:
    """Model server (only this version, batching on) + gateway, as in production."""
    folder = ctx.workdir / "project"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "models.config"
    config.write_text(
        "model_config_list {\n  config {\n"
        f'    name: "{SKLEARN_MODEL}"\n    base_path: "{ctx.version_dir.parent}"\n'
        '    model_platform: "sklearn"\n'
        f"    model_version_policy {{ specific {{ versions: {int(ctx.version_dir.name)} }} }}\n"
        "  }\n}\n"
    )
    batching = folder / "batching.config"
    batching.write_text(ctx.batching)
    server = stack.model_server(config, folder / "model-server.log", batching_file=batching)
    server.start()
    gateway = stack.gateway(
        {SKLEARN_MODEL: server.address("grpc")},
        folder / "gateway.log",
        env={"HOUSING_PREDICTION_LOG_PATH": str(folder / "predictions.sqlite3")},
    )
    gateway.start()
    url = f"{gateway.url()}/v1/models/{SKLEARN_MODEL}:predict"
    return Started([server, gateway], url)


def start_plain_fastapi(ctx: Context) -> Started:
    port = free_port()
    argv = [
        sys.executable, "-m", "uvicorn", "load_tests.peers.plain_fastapi:app",
        "--host", LOOPBACK, "--port", str(port),
        "--workers", str(ctx.workers), "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    proc = ManagedProcess(
        "plain-fastapi",
        argv,
        ctx.workdir / "plain-fastapi.log",
        env={"HOUSING_PEER_MODEL": str(ctx.joblib_path)},
    ).start()
    return Started([proc], f"http://{LOOPBACK}:{port}/v1/predict")


def start_mlserver(ctx: Context) -> Started:
    env = envs.ensure(envs.PEERS["mlserver"])
    folder = ctx.workdir / "mlserver"
    (folder / "housing").mkdir(parents=True, exist_ok=True)
    port = free_port()
    settings = {
        "host": LOOPBACK,
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "parallel_workers": ctx.workers,
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    model_settings = {
        "name": "housing",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(ctx.joblib_path)},
    }
    (folder / "housing" / "model-settings.json").write_text(json.dumps(model_settings))
    proc = ManagedProcess(
        "mlserver",
        [str(env.bin("mlserver")), "start", str(folder)],
        folder / "mlserver.log",
        env=on_path(env),
    ).start()
    return Started([proc], f"http://{LOOPBACK}:{port}/v2/models/housing/infer")


def start_mlflow(ctx: Context) -> Started:
    env = envs.ensure(envs.PEERS["mlflow"])
    model_dir = ctx.workdir / "mlflow-model"
    if not model_dir.exists():
        export = Path(__file__).with_name("mlflow_export.py")
        subprocess.run(
            [str(env.python), str(export), str(ctx.joblib_path), str(model_dir)], check=True
        )
    port = free_port()
    argv = [
        str(env.bin("mlflow")), "models", "serve", "-m", str(model_dir),
        "--env-manager", "local", "-h", LOOPBACK, "-p", str(port),
        "-w", str(ctx.workers),
    ]  # fmt: skip
    proc = ManagedProcess("mlflow", argv, ctx.workdir / "mlflow.log", env=on_path(env))
    proc.start()
    return Started([proc], f"http://{LOOPBACK}:{port}/invocations")


PEERS: dict[str, Peer] = {
    "project": Peer(
        "project", "gateway → gRPC → model server (batching)", start_project, instances_body
    ),
    "plain-fastapi": Peer(
        "plain-fastapi",
        "FastAPI + uvicorn workers, predict per request",
        start_plain_fastapi,
        instances_body,
    ),  # fmt: skip
    "mlserver": Peer("mlserver", "MLServer + mlserver-sklearn (V2)", start_mlserver, v2_body),
    "mlflow": Peer("mlflow", "mlflow models serve (pyfunc)", start_mlflow, mlflow_body),
}
