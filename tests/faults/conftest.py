"""Fault-test fixtures: real model server and gateway processes over small real models.

One model server (``shared_server``) serves the tests that do not break it; tests that kill
a process start their own. Every process is stopped in teardown, whatever happened.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sklearn.pipeline import Pipeline

from core.contract import KERAS_MODEL, SKLEARN_MODEL
from core.process import ManagedProcess, http_ok
from load_tests import models, stack
from training.data import Split
from training.repository import ModelRepository

ROW = {
    "longitude": -118.18,
    "latitude": 33.8,
    "housing_median_age": 30.0,
    "total_rooms": 2734.0,
    "total_bedrooms": 758.0,
    "population": 2951.0,
    "households": 691.0,
    "median_income": 1.7689,
    "ocean_proximity": "NEAR OCEAN",
}
MONITORING = 'prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }\n'
READY_TIMEOUT = 120


@pytest.fixture(scope="session")
def small_model(split: Split) -> Pipeline:
    return models.small_sklearn(split.train)


@pytest.fixture(scope="session")
def tiny_savedmodel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SavedModel with the service's signature, built once and copied into repos."""
    repo = ModelRepository(tmp_path_factory.mktemp("savedmodel"))
    models.publish_tiny_savedmodel(repo)
    return repo.version_dir(KERAS_MODEL, 1)


def new_repo(root: Path, model: Pipeline, savedmodel: Path | None = None) -> ModelRepository:
    repo = ModelRepository(root)
    models.publish_sklearn(repo, model)
    if savedmodel is not None:
        shutil.copytree(savedmodel, repo.version_dir(KERAS_MODEL, 1))
        repo.register(KERAS_MODEL, "tensorflow")
    return repo


def start_model_server(
    repo: ModelRepository, logs: Path, grpc_port: int | None = None
) -> ManagedProcess:
    monitoring = repo.root / "monitoring.config"
    monitoring.write_text(MONITORING)
    server = stack.model_server(
        repo.config_path,
        logs / f"model-server-{uuid.uuid4().hex[:6]}.log",
        grpc_port=grpc_port,
        poll_seconds=0.5,
        extra=["--monitoring_config_file", str(monitoring)],
    ).start()
    rest = server.url("rest")
    return server.wait_ready(http_ok(f"{rest}/v1/models/{SKLEARN_MODEL}"), READY_TIMEOUT)


def start_gateway(
    server: ManagedProcess, logs: Path, models_served: tuple[str, ...], **env: str
) -> ManagedProcess:
    target = server.address("grpc")
    settings = {
        "HOUSING_PREDICTION_LOG_PATH": str(logs / f"predictions-{uuid.uuid4().hex[:6]}.sqlite3"),
        "HOUSING_DEADLINE_SECONDS": "2",
        "HOUSING_READY_CACHE_SECONDS": "0.2",
        **env,
    }
    gateway = stack.gateway(
        {name: target for name in models_served},
        logs / f"gateway-{uuid.uuid4().hex[:6]}.log",
        env=settings,
    ).start()
    return gateway.wait_ready(http_ok(f"{gateway.url()}/readyz"), READY_TIMEOUT)


@pytest.fixture(scope="session")
def fault_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fault-logs")


@pytest.fixture(scope="session")
def shared_repo(
    tmp_path_factory: pytest.TempPathFactory, small_model: Pipeline, tiny_savedmodel: Path
) -> ModelRepository:
    return new_repo(tmp_path_factory.mktemp("models"), small_model, tiny_savedmodel)


@pytest.fixture(scope="session")
def shared_server(shared_repo: ModelRepository, fault_logs: Path) -> Iterator[ManagedProcess]:
    server = start_model_server(shared_repo, fault_logs)
    yield server
    server.stop()


@dataclass
class Outcome:
    request_id: str
    started: float
    elapsed: float
    status: int
    version: int | None = None
    retry_after: str | None = None


@dataclass
class Hammer:
    """Closed-loop load from a few threads, recording every answer; bounded by ``stop()``
    and by a hard time limit so a test can never leave it running."""

    url: str
    threads: int = 4
    limit_seconds: float = 60
    body: dict = field(default_factory=lambda: {"instances": [ROW]})
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [
            threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)
        ]

    def __enter__(self) -> Hammer:
        self._deadline = time.monotonic() + self.limit_seconds
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=30)
        return self.outcomes

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                request_id = uuid.uuid4().hex
                started = time.monotonic()
                try:
                    response = client.post(
                        self.url, json=self.body, headers={"x-request-id": request_id}
                    )
                    status = response.status_code
                    version = response.json()["model"]["version"] if status == 200 else None
                    retry_after = response.headers.get("retry-after")
                except httpx.HTTPError:
                    status, version, retry_after = 0, None, None
                outcome = Outcome(
                    request_id, started, time.monotonic() - started, status, version, retry_after
                )
                with self._lock:
                    self.outcomes.append(outcome)

    def count(self, predicate: Callable[[Outcome], bool]) -> int:
        with self._lock:
            return sum(1 for o in self.outcomes if predicate(o))

    def wait_for(self, predicate: Callable[[Outcome], bool], n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(predicate) >= n:
                return True
            time.sleep(0.05)
        return False


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            total += float(value)
    return total
