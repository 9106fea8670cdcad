"""simulate-drift end to end over real HTTP: shifted traffic -> prediction log -> drift flag.

The "gateway" here is a small FastAPI app on a real uvicorn server with the gateway's
predict route shape, a real PredictionLog and the real drift router; the model is a
stand-in (the drift monitor only reads the features and the logged prediction).
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from core.cli import main
from core.contract import CATEGORICAL_FEATURE, SKLEARN_MODEL
from core.process import free_port
from service.monitoring.monitor import DriftMonitor, MonitorSettings
from service.monitoring.routes import drift_router
from service.monitoring.simulate import shifted_rows
from service.prediction_log import PredictionLog, PredictionRecord
from training.data import Split


def test_shifts_change_what_they_say(split: Split) -> None:
    calm = shifted_rows(split.test, 2000, "none", seed=1)
    income = shifted_rows(split.test, 2000, "income", seed=1)
    ocean = shifted_rows(split.test, 2000, "ocean", seed=1)
    assert income["median_income"].mean() > 1.4 * calm["median_income"].mean()
    assert (ocean[CATEGORICAL_FEATURE] == "INLAND").mean() == pytest.approx(0.6, abs=0.04)
    assert (calm[CATEGORICAL_FEATURE] == "INLAND").mean() == pytest.approx(0.32, abs=0.04)
    with pytest.raises(ValueError, match="shift must be one of"):
        shifted_rows(split.test, 10, "weather")


@pytest.fixture
def demo_gateway(tmp_path: Path, models_dir: Path):
    log = PredictionLog(tmp_path / "predictions.sqlite3")
    settings = MonitorSettings(
        log_path=log.path, models_dir=models_dir, min_rows=100, interval_seconds=0
    )
    monitor = DriftMonitor(settings, CollectorRegistry())
    app = FastAPI()
    app.include_router(drift_router(monitor))

    @app.post("/v1/predict")
    def predict(body: dict) -> dict:
        rows = body["instances"]
        values = [40_000.0 * row["median_income"] for row in rows]
        request_id = uuid.uuid4().hex
        records = [
            PredictionRecord(request_id, SKLEARN_MODEL, 1, row, value)
            for row, value in zip(rows, values, strict=True)
        ]
        log.append(records).result(timeout=30)
        return {
            "predictions": [{"median_house_value": v} for v in values],
            "model": {"name": SKLEARN_MODEL, "version": 1},
        }

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        log.close()


def test_simulate_drift_turns_the_flag_on(demo_gateway: str, capsys) -> None:
    argv = ["monitor", "simulate-drift", "--gateway", demo_gateway, "--requests", "30"]
    assert main([*argv, "--batch", "10", "--shift", "both"]) == 0
    out = capsys.readouterr().out
    assert "sent 300 rows in 30 requests: status codes {'200': 30}" in out
    assert "dataset drift: YES" in out and "median_income" in out and "ocean_proximity" in out
    assert "window: housing_sklearn version 1, 300 rows from" in out
    latest = httpx.get(f"{demo_gateway}/v1/monitoring/drift", timeout=10).json()
    assert latest["dataset_drift"] is True and latest["current"]["rows"] == 300

    # The issue: right after a shifted run, unshifted traffic was reported as drift because
    # the report's window took the shifted rows in too. It compares this run's rows only.
    assert main([*argv, "--batch", "10", "--shift", "none", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "dataset drift: no (drifted columns: none)" in out and ", 300 rows from" in out


def test_simulate_drift_bad_gateway_is_one_line() -> None:
    argv = ["monitor", "simulate-drift", "--gateway", "http://127.0.0.1:9", "--requests", "1"]
    assert main(argv) == 2
