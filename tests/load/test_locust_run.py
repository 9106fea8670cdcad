"""A bounded headless locust run against real processes (model server with batching +
gateway over a small real sklearn model): the thresholds in load_tests/thresholds.toml hold,
every user class ran, and every invalid request was refused with a 4xx."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.contract import SKLEARN_MODEL
from core.paths import REPO_ROOT
from core.process import http_ok
from load_tests import models, run_locust, stack
from training.data import Split
from training.repository import ModelRepository

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def gateway(split: Split, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("load")
    repo = ModelRepository(root / "models")
    models.publish_sklearn(repo, models.small_sklearn(split.train))
    batching = REPO_ROOT / "deploy" / "tfserving" / "batching.config"  # the stack's
    server = stack.model_server(repo.config_path, root / "model-server.log", batching_file=batching)
    gateway = stack.gateway(
        {SKLEARN_MODEL: server.address("grpc")},
        root / "gateway.log",
        env={"HOUSING_PREDICTION_LOG_PATH": str(root / "predictions.sqlite3")},
    )
    try:
        # The model server first: a gateway worker that tried it before it listened waits out
        # gRPC's reconnect backoff (up to 1 s), and /readyz answers for one worker only.
        stack.serving(server.start())
        gateway.start()
        url = gateway.url()
        gateway.wait_ready(http_ok(f"{url}/readyz"), 120)
        yield url
    finally:
        gateway.stop()
        server.stop()


def test_bounded_locust_run_passes_thresholds(gateway: str, tmp_path: Path) -> None:
    out = tmp_path / "report"
    completed = subprocess.run(
        [
            sys.executable, str(REPO_ROOT / "load_tests" / "run_locust.py"),
            "--host", gateway, "--users", "6", "--spawn-rate", "6", "--run-time", "10s",
            "--targets", f"{SKLEARN_MODEL},{SKLEARN_MODEL}@1", "--out", str(out),
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] and not summary["breaches"]
    assert (out / "report.html").stat().st_size > 0
    assert (out / "locust_stats.csv").is_file()
    names = set(summary["by_name"])
    assert "/v1/predict [1 row]" in names
    assert f"/v1/models/{SKLEARN_MODEL}:predict [batch]" in names
    assert f"/v1/models/{SKLEARN_MODEL}/versions/1:predict" in names
    invalid = {n: v for n, v in summary["by_name"].items() if n.startswith("[invalid]")}
    assert invalid and summary["invalid_requests"] > 0
    assert all(v["failures"] == 0 for v in invalid.values()), invalid  # all got a 4xx
    assert summary["failures"] == 0


def test_thresholds_fail_a_run_that_passes_them() -> None:
    config = run_locust.load_config(run_locust.DEFAULT_CONFIG)["thresholds"]
    good = {
        "requests": 1000, "failures": 0, "error_ratio": 0.0, "p95_ms": 1.0, "p99_ms": 2.0,
        "invalid_requests": 10, "invalid_not_4xx": 0,
    }  # fmt: skip
    assert run_locust.breaches(good, config) == []
    slow = {**good, "p95_ms": config["max_p95_ms"] + 1}
    assert [b.split(":")[0] for b in run_locust.breaches(slow, config)] == ["max_p95_ms"]
    failing = {**good, "error_ratio": 0.5, "invalid_not_4xx": 3}
    assert len(run_locust.breaches(failing, config)) == 2
