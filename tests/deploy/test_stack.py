"""``housing serve stack`` for real: small real models, every process started, a prediction
from both models through the gateway, then a clean stop on SIGINT (Ctrl-C)."""

from __future__ import annotations

import math
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.cli import main
from core.contract import KERAS_MODEL, SKLEARN_MODEL
from core.process import ManagedProcess, ProcessFailed, free_port, housing_argv, port_in_use
from deploy.local.services import PROMETHEUS_BINARY

pytestmark = pytest.mark.slow

INSTANCE = {
    "longitude": -122.23,
    "latitude": 37.88,
    "housing_median_age": 41.0,
    "total_rooms": 880.0,
    "total_bedrooms": None,
    "population": 322.0,
    "households": 126.0,
    "median_income": 8.3252,
    "ocean_proximity": "NEAR BAY",
}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory, split) -> Path:
    """A repository with a small forest and a small SavedModel with the service signature."""
    models = pytest.importorskip("load_tests.models")
    from training.repository import ModelRepository

    root = tmp_path_factory.mktemp("models")
    repo = ModelRepository(root)
    models.publish_sklearn(repo, models.small_sklearn(split.train, rows=500, trees=3))
    models.publish_tiny_savedmodel(repo)
    return root


class Launcher:
    """``housing serve stack`` as a subprocess; its output is read back from its log file."""

    def __init__(self, args: list[str], log_path: Path):
        argv = housing_argv("serve", "stack", *args)
        self.process = ManagedProcess("housing serve stack", argv, log_path).start()

    @property
    def output(self) -> str:
        return self.process.log_text()

    def wait_for(self, text: str, timeout: float) -> None:
        try:
            self.process.wait_ready(lambda: text in self.output, timeout)
        except ProcessFailed:
            if text not in self.output:
                pytest.fail(f"no {text!r} within {timeout} s:\n{self.output}")

    def stop(self) -> int | None:
        """Ctrl-C: SIGINT to the launcher alone, which stops its services in order."""
        return self.process.stop(grace=60, sig=signal.SIGINT, group=False)


@pytest.fixture
def ports() -> dict[str, int]:
    return {name: free_port() for name in ("gateway", "grpc", "rest", "prometheus")}


def stack_args(models_dir: Path, logs_dir: Path, ports: dict[str, int]) -> list[str]:
    return [
        "--models-dir",
        str(models_dir),
        "--logs-dir",
        str(logs_dir),
        "--data-dir",
        str(logs_dir.parent / "data"),
        "--gateway-port",
        str(ports["gateway"]),
        "--grpc-port",
        str(ports["grpc"]),
        "--rest-port",
        str(ports["rest"]),
        "--prometheus-port",
        str(ports["prometheus"]),
        "--no-train",
        "--timeout",
        "150",
    ]


@pytest.fixture
def launcher(models_dir: Path, tmp_path: Path, ports: dict[str, int]) -> Iterator[Launcher]:
    running = Launcher(stack_args(models_dir, tmp_path / "logs", ports), tmp_path / "stack.log")
    try:
        yield running
    finally:
        running.stop()


def test_stack_serves_both_models_and_stops_on_ctrl_c(
    launcher: Launcher, ports: dict[str, int], tmp_path: Path
) -> None:
    launcher.wait_for("stack: ready", timeout=200)
    assert f"reusing {SKLEARN_MODEL}" in launcher.output
    assert f"reusing {KERAS_MODEL}" in launcher.output
    assert f"curl -s -X POST http://127.0.0.1:{ports['gateway']}/v1/models/" in launcher.output

    base = f"http://127.0.0.1:{ports['gateway']}"
    for name in (SKLEARN_MODEL, KERAS_MODEL):
        response = httpx.post(
            f"{base}/v1/models/{name}:predict", json={"instances": [INSTANCE]}, timeout=30
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"]["name"] == name
        [prediction] = body["predictions"]
        value = prediction["median_house_value"]
        assert math.isfinite(value) and value > 0
    assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200
    if PROMETHEUS_BINARY.exists():
        url = f"http://127.0.0.1:{ports['prometheus']}/-/ready"
        assert httpx.get(url, timeout=10).status_code == 200
        assert (tmp_path / "logs" / "prometheus" / "prometheus.yml").is_file()

    assert launcher.stop() == 0
    assert "stack: stopped" in launcher.output
    for port in ports.values():
        assert not port_in_use(port), f"port {port} still bound after Ctrl-C"
    for log in ("model-server.log", "gateway.log"):
        assert (tmp_path / "logs" / log).stat().st_size > 0


def test_port_in_use_is_a_one_line_error(
    tmp_path: Path, ports: dict[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ports["gateway"]))
        holder.listen()
        # Checked before anything else (training can take minutes), so no models are needed.
        code = main(["serve", "stack", *stack_args(tmp_path / "empty", tmp_path / "logs", ports)])
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"housing: error: port {ports['gateway']} (gateway) is in use")


def test_missing_model_without_training_is_a_one_line_error(
    tmp_path: Path, ports: dict[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["serve", "stack", *stack_args(tmp_path / "empty", tmp_path / "logs", ports)])
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert error == (
        f"housing: error: no {SKLEARN_MODEL} model in {tmp_path / 'empty'}; "
        "train it: housing train sklearn"
    )
