"""A two-worker gateway (``housing serve gateway --workers 2``, real processes) in front of
the real model server: under load every acknowledged prediction is in the prediction log,
and whichever worker answers a scrape, /metrics counts both workers' requests."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client import multiprocess
from prometheus_client.parser import text_string_to_metric_families

from core.contract import EXAMPLE_INSTANCE, SKLEARN_MODEL
from core.process import ManagedProcess, http_ok
from load_tests import models
from load_tests import stack as launch
from service.prediction_log import read_window
from training.repository import ModelRepository

REQUESTS = 2_000
THREADS = 8
REQUESTS_PER_CONNECTION = 50  # fresh connections, so SO_REUSEPORT spreads them over workers
ROUTE = "/v1/predict"


@dataclass
class TwoWorkers:
    url: str
    gateway: ManagedProcess
    log_path: Path
    metrics_dir: Path


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory, split) -> Iterator[TwoWorkers]:
    root = tmp_path_factory.mktemp("workers")
    repo = ModelRepository(root / "models")
    models.publish_sklearn(repo, models.small_sklearn(split.train))
    log_path, metrics_dir = root / "predictions.sqlite3", root / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"stale")  # a previous run's file: removed
    with launch.model_server(repo.config_path, root / "model-server.log") as server:
        launch.serving(server)
        gateway = launch.gateway(
            {SKLEARN_MODEL: server.address("grpc")},
            root / "gateway.log",
            env={
                "HOUSING_PREDICTION_LOG_PATH": str(log_path),
                "HOUSING_MODELS_DIR": str(repo.root),
                "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            },
            extra=["--workers", "2"],
        )
        with gateway:
            gateway.wait_ready(http_ok(f"{gateway.url()}/readyz"))
            yield TwoWorkers(gateway.url(), gateway, log_path, metrics_dir)


def hammer(url: str, count: int, answers: list[tuple[str, int]]) -> None:
    """``count`` one-row predictions, each with its own request id, recorded as answered."""
    body = {"instances": [dict(EXAMPLE_INSTANCE)]}
    done = 0
    while done < count:
        with httpx.Client(base_url=url, timeout=30) as client:
            for _ in range(min(REQUESTS_PER_CONNECTION, count - done)):
                request_id = uuid.uuid4().hex
                try:
                    status = client.post(
                        ROUTE, json=body, headers={"x-request-id": request_id}
                    ).status_code
                except httpx.HTTPError:
                    status = 0
                answers.append((request_id, status))
                done += 1


def predictions_counted(samples: list) -> float:
    return sum(
        s.value
        for s in samples
        if s.name == "housing_gateway_requests_total"
        and s.labels.get("route") == ROUTE
        and s.labels.get("code") == "200"
    )


def scraped_total(text: str) -> float:
    return predictions_counted([s for m in text_string_to_metric_families(text) for s in m.samples])


def test_every_acknowledged_prediction_is_logged_and_counted_by_every_scrape(two_workers):
    assert not (two_workers.metrics_dir / "counter_1.db").exists()
    answers: list[tuple[str, int]] = []
    threads = [
        threading.Thread(target=hammer, args=(two_workers.url, REQUESTS // THREADS, answers))
        for _ in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert len(answers) == REQUESTS
    statuses = Counter(status for _, status in answers)
    assert statuses == {200: REQUESTS}, statuses
    acknowledged = {request_id for request_id, status in answers if status == 200}

    # 0 lost: every 200 has its row, and nothing else is in the log
    logged = read_window(two_workers.log_path)
    assert len(logged) == len(acknowledged)
    assert set(logged["request_id"]) == acknowledged

    # both workers served, each from its own metrics file ...
    per_worker = {
        path.name: predictions_counted(
            [s for m in multiprocess.MultiProcessCollector.merge([str(path)]) for s in m.samples]
        )
        for path in two_workers.metrics_dir.glob("counter_*.db")
    }
    assert len(per_worker) == 2 and all(count > 0 for count in per_worker.values()), per_worker
    assert sum(per_worker.values()) == len(acknowledged)
    # ... and every scrape, whichever worker answers it (fresh connections), sees the sum
    for _ in range(6):
        text = httpx.get(f"{two_workers.url}/metrics", timeout=10).text
        assert scraped_total(text) == len(acknowledged)
        assert "housing_gateway_in_flight_requests 0.0" in text


def test_stopped_workers_leave_no_live_gauges(two_workers):
    assert list(two_workers.metrics_dir.glob("gauge_livesum_*.db"))
    two_workers.gateway.stop()
    assert not two_workers.gateway.alive()
    assert not list(two_workers.metrics_dir.glob("gauge_livesum_*.db"))
    assert len(list(two_workers.metrics_dir.glob("counter_*.db"))) == 2  # counts are kept
