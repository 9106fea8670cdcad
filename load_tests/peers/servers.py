"""How each server under comparison is started and spoken to, all over the same model.

Each ``Peer`` knows how to start its process(es) on free loopback ports, the URL to POST
to per model, and how to encode the same feature rows in its own wire format. The project's
entry is what a user runs: ``housing serve stack`` (what ``make run`` starts) with its own
defaults; only its ports (free ones) and its logs folder are set here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from core.contract import FEATURES, KERAS_MODEL, NUMERIC_FEATURES, SKLEARN_MODEL
from core.process import LOOPBACK, ManagedProcess, free_port, housing_argv
from load_tests.peers import envs

Rows = list[dict[str, Any]]


@dataclass
class Context:
    """What every peer gets: the sklearn version folder every server serves, the model
    repository the project's stack serves (that version is its default), a scratch folder."""

    version_dir: Path
    models_dir: Path
    workdir: Path
    workers: int = 2
    ready_timeout: float = 600

    @property
    def joblib_path(self) -> Path:
        return self.version_dir / "model.joblib"


@dataclass
class Started:
    processes: list[ManagedProcess]
    urls: dict[str, str]
    """predict URL by model name (peers serve only the sklearn model)"""
    startup: dict[str, float] = field(default_factory=dict)
    """seconds from spawn to ready, by component, where the launcher reports it"""

    @property
    def url(self) -> str:
        return self.urls[SKLEARN_MODEL]

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
        return all(
            httpx.post(url, content=body, headers=headers, timeout=5).is_success
            for url in started.urls.values()
        )

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
    """``housing serve stack`` as ``make run`` starts it, on free ports. Ready once it prints
    its banner; the gateway's start-up time is read off its progress lines."""
    folder = ctx.workdir / "project"
    ports = {role: free_port() for role in ("gateway", "grpc", "rest", "prometheus")}
    argv = housing_argv(
        "serve", "stack", "--models-dir", str(ctx.models_dir), "--logs-dir", str(folder),
        "--gateway-port", str(ports["gateway"]), "--grpc-port", str(ports["grpc"]),
        "--rest-port", str(ports["rest"]), "--prometheus-port", str(ports["prometheus"]),
    )  # fmt: skip
    proc = ManagedProcess("stack", argv, folder / "stack.log", ports={"http": ports["gateway"]})
    proc.start()
    seen: dict[str, float] = {}
    started_at = time.monotonic()

    def banner() -> bool:
        text = proc.log_text()
        for marker in ("starting gateway", "stack: ready"):
            if marker in text and marker not in seen:
                seen[marker] = time.monotonic()
        return "stack: ready" in seen

    proc.wait_ready(banner, ctx.ready_timeout)
    startup = {"stack": seen["stack: ready"] - started_at}
    if "starting gateway" in seen:
        startup["gateway"] = seen["stack: ready"] - seen["starting gateway"]
    urls = {m: f"{proc.url()}/v1/models/{m}:predict" for m in (SKLEARN_MODEL, KERAS_MODEL)}
    return Started([proc], urls, startup)


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
    return Started([proc], {SKLEARN_MODEL: f"http://{LOOPBACK}:{port}/v1/predict"})


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
    return Started([proc], {SKLEARN_MODEL: f"http://{LOOPBACK}:{port}/v2/models/housing/infer"})


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
    return Started([proc], {SKLEARN_MODEL: f"http://{LOOPBACK}:{port}/invocations"})


PEERS: dict[str, Peer] = {
    "project": Peer(
        "project", "housing serve stack (its defaults, as make run)", start_project, instances_body
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
