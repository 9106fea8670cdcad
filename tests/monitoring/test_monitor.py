"""The monitor's gauges and the drift router reflect the latest run (real log, real reference)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from core.contract import FEATURES, SKLEARN_MODEL
from service.monitoring.monitor import DriftMonitor, MonitorError, MonitorSettings
from service.monitoring.routes import drift_router
from training.data import Split

from .conftest import fill_log


def make_monitor(tmp_path: Path, models_dir: Path) -> tuple[DriftMonitor, CollectorRegistry]:
    registry = CollectorRegistry()
    settings = MonitorSettings(
        log_path=tmp_path / "predictions.sqlite3",
        models_dir=models_dir,
        model=SKLEARN_MODEL,
        window_seconds=600,
        min_rows=100,
        interval_seconds=0,
    )
    return DriftMonitor(settings, registry), registry


def gauge(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {"model": SKLEARN_MODEL, **labels})


async def test_router_and_gauges_follow_the_latest_run(
    tmp_path: Path, models_dir: Path, split: Split, income_shifted: pd.DataFrame
) -> None:
    monitor, registry = make_monitor(tmp_path, models_dir)
    app = FastAPI()
    app.include_router(drift_router(monitor))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        before = await client.get("/v1/monitoring/drift")
        assert before.status_code == 503 and before.headers["retry-after"]
        assert "no drift report yet" in before.json()["detail"]
        assert (await client.get("/v1/monitoring/drift.html")).status_code == 503

        fill_log(monitor.settings.log_path, split.test.head(50))
        too_few = await client.post("/v1/monitoring/drift:run")
        assert too_few.status_code == 503 and "only 50 predictions" in too_few.json()["detail"]
        assert gauge(registry, "housing_drift_runs_total", outcome="skipped") == 1

        fill_log(monitor.settings.log_path, split.test.sample(600, random_state=21))
        calm = await client.post("/v1/monitoring/drift:run")
        assert calm.status_code == 200 and calm.json()["dataset_drift"] is False
        assert calm.json()["current"]["rows"] == 650
        assert calm.json()["monitor"]["version"] == 1
        assert gauge(registry, "housing_drift_dataset_drift") == 0
        assert gauge(registry, "housing_drift_window_rows") == 650
        first_run = gauge(registry, "housing_drift_last_run_timestamp_seconds")
        assert first_run == pytest.approx(time.time(), abs=120)

        # New traffic with richer districts: the window is now mostly shifted rows.
        fill_log(monitor.settings.log_path, income_shifted)
        fill_log(monitor.settings.log_path, income_shifted)
        drifted = await client.post("/v1/monitoring/drift:run")
        assert drifted.status_code == 200 and drifted.json()["dataset_drift"] is True
        latest = await client.get("/v1/monitoring/drift")
        assert latest.json() == drifted.json()
        html = await client.get("/v1/monitoring/drift.html")
        assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
        assert "median_income" in html.text

    assert gauge(registry, "housing_drift_dataset_drift") == 1
    assert gauge(registry, "housing_drift_feature_drift", feature="median_income") == 1
    assert gauge(registry, "housing_drift_feature_score", feature="median_income") < 1e-6
    assert gauge(registry, "housing_drift_feature_drift", feature="housing_median_age") == 0
    assert gauge(registry, "housing_drift_share") == pytest.approx(drifted.json()["drift_share"])
    assert gauge(registry, "housing_drift_runs_total", outcome="ok") == 2
    features = {
        s.labels["feature"]
        for m in registry.collect()
        if m.name == "housing_drift_feature_score"
        for s in m.samples
    }
    assert features == set(FEATURES)


def test_scheduled_runs_and_clear_errors(tmp_path: Path, models_dir: Path, split: Split) -> None:
    monitor, registry = make_monitor(tmp_path, models_dir)
    with pytest.raises(MonitorError, match="no prediction log"):
        monitor.run_once()
    fill_log(monitor.settings.log_path, split.test.head(200), ts=time.time() - 3600)
    with pytest.raises(MonitorError, match="no predictions of model housing_sklearn"):
        monitor.run_once()  # rows older than the 600 s window
    fill_log(monitor.settings.log_path, split.test.sample(300, random_state=5), version=7)
    with pytest.raises(MonitorError, match="no reference.parquet"):
        monitor.run_once()  # version 7 has no folder in the repository
    assert monitor.latest is None and "reference.parquet" in monitor.status()["last_error"]

    fill_log(monitor.settings.log_path, split.test.sample(300, random_state=6), version=1)
    monitor.settings = monitor.settings.model_copy(update={"interval_seconds": 3600})
    monitor.start()
    deadline = time.monotonic() + 90
    while monitor.latest is None and time.monotonic() < deadline:
        time.sleep(0.2)
    monitor.stop()
    assert monitor.latest is not None and monitor.latest["monitor"]["version"] == 1
    assert monitor.latest["current"]["rows"] == 300  # only the served version's rows
    assert not monitor.status()["running"]
