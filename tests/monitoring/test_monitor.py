"""The drift monitor over a real prediction log and real references: explicit windows, every
model, kept reports, gauges from start-up, one run at a time, one scheduler among workers."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from core.contract import FEATURES, KERAS_MODEL, SKLEARN_MODEL
from service.monitoring.locks import FileLock
from service.monitoring.monitor import DriftMonitor, MonitorBusy, MonitorError, MonitorSettings
from service.monitoring.routes import drift_router
from service.monitoring.simulate import shifted_rows
from training.data import Split
from training.repository import PLATFORM_TENSORFLOW, ModelRepository

from .conftest import fill_log


def make_monitor(
    tmp_path: Path, models_dir: Path, **overrides
) -> tuple[DriftMonitor, CollectorRegistry]:
    registry = CollectorRegistry()
    options = {
        "log_path": tmp_path / "predictions.sqlite3",
        "models_dir": models_dir,
        "models": [SKLEARN_MODEL],
        "window_seconds": 600,
        "min_rows": 100,
        "interval_seconds": 0,
        **overrides,
    }
    return DriftMonitor(MonitorSettings(**options), registry), registry


def gauge(registry: CollectorRegistry, name: str, model: str = SKLEARN_MODEL, **labels) -> float:
    value = registry.get_sample_value(name, {"model": model, **labels})
    assert value is not None, name
    return value


@pytest.fixture
def two_models(models_dir: Path, tmp_path: Path) -> Path:
    """housing_sklearn and housing_keras, each with version 1 and its reference."""
    root = tmp_path / "models"
    shutil.copytree(models_dir, root)
    keras_dir = root / KERAS_MODEL / "1"
    shutil.copytree(root / SKLEARN_MODEL / "1", keras_dir)
    manifest = json.loads((keras_dir / "manifest.json").read_text())
    (keras_dir / "manifest.json").write_text(json.dumps({**manifest, "model": KERAS_MODEL}))
    ModelRepository(root).register(KERAS_MODEL, PLATFORM_TENSORFLOW)
    return root


async def test_router_gauges_and_history_follow_the_runs(
    tmp_path: Path, models_dir: Path, split: Split, income_shifted: pd.DataFrame
) -> None:
    monitor, registry = make_monitor(tmp_path, models_dir)
    monitor.start()  # no schedule (interval 0), but the gauges exist from now on
    assert math.isnan(gauge(registry, "housing_drift_dataset_drift"))
    assert gauge(registry, "housing_drift_window_rows") == 0
    assert gauge(registry, "housing_drift_runs_total", outcome="ok") == 0
    assert math.isnan(gauge(registry, "housing_drift_feature_score", feature="median_income"))
    app = FastAPI()
    app.include_router(drift_router(monitor))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        before = await client.get("/v1/monitoring/drift")
        assert before.status_code == 503 and before.headers["retry-after"]
        assert "no drift report for housing_sklearn yet" in before.json()["detail"]
        assert (await client.get("/v1/monitoring/drift.html")).status_code == 503

        fill_log(monitor.settings.log_path, split.test.head(50))
        too_few = await client.post("/v1/monitoring/drift:run")
        assert too_few.status_code == 503 and "only 50 predictions" in too_few.json()["detail"]
        assert gauge(registry, "housing_drift_runs_total", outcome="skipped") == 1

        fill_log(monitor.settings.log_path, split.test.sample(600, random_state=21))
        calm = await client.post("/v1/monitoring/drift:run")
        assert calm.status_code == 200 and calm.json()["dataset_drift"] is False
        window = calm.json()["window"]
        assert window["rows_compared"] == 650 and window["version"] == 1
        assert window["until"] - window["since"] == pytest.approx(600)
        assert window["truncated"] is False and window["rows_other_versions"] == 0
        assert gauge(registry, "housing_drift_dataset_drift") == 0
        assert gauge(registry, "housing_drift_window_rows") == 650
        assert gauge(registry, "housing_drift_window_seconds") == pytest.approx(600)
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

        history = (await client.get("/v1/monitoring/drift/history")).json()["reports"]
        assert [r["dataset_drift"] for r in history] == [True, False]  # newest first
        assert history[0]["drifted"] == ["median_income"]
        assert history[1]["window"]["rows_compared"] == 650
        kept = await client.get(f"/v1/monitoring/drift/history/{history[1]['id']}")
        assert kept.json()["window"] == window
        page = await client.get(f"/v1/monitoring/drift/history/{history[1]['id']}?format=html")
        assert page.headers["content-type"].startswith("text/html")
        for bad, code in [
            ("/v1/monitoring/drift/history/..%2F..%2Fetc", 404),
            ("/v1/monitoring/drift/history/20990101T000000000000Z", 404),
            ("/v1/monitoring/drift?model=nope", 404),
            ("/v1/monitoring/drift/history?limit=0", 422),
        ]:
            assert (await client.get(bad)).status_code == code, bad
        bad_window = await client.post("/v1/monitoring/drift:run?since=2000000000&until=1900000000")
        assert bad_window.status_code == 422
        millis = await client.post("/v1/monitoring/drift:run?since=1700000000000")
        assert millis.status_code == 422 and "since" in millis.text

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

    # A restarted gateway publishes the latest kept report at once.
    restarted, registry2 = make_monitor(tmp_path, models_dir)
    restarted.start()
    assert gauge(registry2, "housing_drift_dataset_drift") == 1
    assert gauge(registry2, "housing_drift_last_run_timestamp_seconds") == pytest.approx(
        gauge(registry, "housing_drift_last_run_timestamp_seconds")
    )
    restarted.stop()


def test_the_issue_reproduced_older_traffic_decided_the_flag(
    tmp_path: Path, models_dir: Path, split: Split
) -> None:
    """The issue, as a new user met it: after an earlier shifted simulate-drift run,
    ``--shift none`` reported drift (the last hour mixed the old rows in), and a 500-row
    income shift on top of 4,500 calm rows went unflagged. Both came from a window nobody
    saw; a window that starts when the run started gives the right answers."""
    log_path = tmp_path / "predictions.sqlite3"
    monitor, _ = make_monitor(tmp_path, models_dir, window_seconds=3600, min_rows=200)
    now = time.time()
    fill_log(log_path, shifted_rows(split.test, 500, "both", seed=1), ts=now - 1800)
    fill_log(log_path, shifted_rows(split.test, 500, "none", seed=2), ts=now - 60)

    hour = monitor.run_once(SKLEARN_MODEL)  # the old default: the last hour
    assert hour["dataset_drift"] is True  # the false alarm ...
    assert hour["window"]["rows_compared"] == 1000  # ... and the report says why
    calm = monitor.run_once(SKLEARN_MODEL, since=now - 120)
    assert calm["dataset_drift"] is False and calm["window"]["rows_compared"] == 500

    fill_log(log_path, shifted_rows(split.test, 4000, "none", seed=3), ts=now - 30)
    fill_log(log_path, shifted_rows(split.test, 500, "income", seed=4), ts=now - 1)
    mixed = monitor.run_once(SKLEARN_MODEL)  # the last hour again: 5,500 rows, newest 5,000
    assert mixed["window"]["rows_compared"] == 5000 and mixed["window"]["truncated"]
    shifted = monitor.run_once(SKLEARN_MODEL, since=now - 10)
    assert shifted["dataset_drift"] is True and shifted["window"]["rows_compared"] == 500
    assert shifted["columns"]["median_income"]["drift_detected"]
    # Diluted by 4,500 calm rows the same shift is borderline (p near the 1e-4 cut-off);
    # alone it is unmistakable.
    diluted, alone = (
        mixed["columns"]["median_income"]["score"],
        shifted["columns"]["median_income"]["score"],
    )
    assert alone < diluted / 1000


def test_every_routed_model_is_watched(tmp_path: Path, two_models: Path, split: Split) -> None:
    monitor, registry = make_monitor(tmp_path, two_models, models=[SKLEARN_MODEL, KERAS_MODEL])
    monitor.start()
    assert math.isnan(gauge(registry, "housing_drift_share", model=KERAS_MODEL))
    log_path = monitor.settings.log_path
    fill_log(log_path, split.test.sample(300, random_state=7))
    fill_log(log_path, shifted_rows(split.test, 300, "ocean", seed=8), model=KERAS_MODEL)
    results = monitor.run_all()
    assert results[SKLEARN_MODEL]["dataset_drift"] is False
    assert results[KERAS_MODEL]["dataset_drift"] is True
    assert results[KERAS_MODEL]["window"]["model"] == KERAS_MODEL
    assert gauge(registry, "housing_drift_dataset_drift", model=KERAS_MODEL) == 1
    assert gauge(registry, "housing_drift_dataset_drift", model=SKLEARN_MODEL) == 0
    assert monitor.latest(KERAS_MODEL)["columns"]["ocean_proximity"]["drift_detected"]


def test_clear_errors_and_the_served_version(
    tmp_path: Path, models_dir: Path, split: Split
) -> None:
    monitor, _ = make_monitor(tmp_path, models_dir)
    with pytest.raises(MonitorError, match="no prediction log"):
        monitor.run_once()
    fill_log(monitor.settings.log_path, split.test.head(200), ts=time.time() - 3600)
    with pytest.raises(MonitorError, match="no predictions of model housing_sklearn from"):
        monitor.run_once()  # rows older than the 600 s window
    # A canary version's rows are left out and counted; the default version's are compared.
    fill_log(monitor.settings.log_path, split.test.sample(300, random_state=5), version=7)
    with pytest.raises(MonitorError, match="only 0 predictions of housing_sklearn version 1"):
        monitor.run_once()
    fill_log(monitor.settings.log_path, split.test.sample(300, random_state=6), version=1)
    report = monitor.run_once()
    assert report["window"]["version"] == 1 and report["window"]["rows_compared"] == 300
    assert report["window"]["rows_other_versions"] == 300
    with pytest.raises(MonitorError, match="not watched"):
        monitor.run_once(KERAS_MODEL)


def test_one_run_at_a_time_and_one_scheduler(
    tmp_path: Path, models_dir: Path, split: Split
) -> None:
    first, registry = make_monitor(tmp_path, models_dir, interval_seconds=0.5)
    second, _ = make_monitor(tmp_path, models_dir, interval_seconds=0.5)
    fill_log(first.settings.log_path, split.test.sample(300, random_state=9))

    # A run in progress (another worker holds run.lock): a second one is refused at once.
    other_worker = FileLock(first.history.root / "run.lock")
    assert other_worker.try_acquire()
    with pytest.raises(MonitorBusy):
        first.run_once()
    assert gauge(registry, "housing_drift_runs_total", outcome="busy") == 1
    other_worker.release()

    # Two "workers" start: only one runs the schedule; the other takes over when it stops.
    first.start()
    deadline = time.monotonic() + 90
    while first.latest(SKLEARN_MODEL) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert first.leader.held and first.latest(SKLEARN_MODEL) is not None
    first.stop()  # between rounds, so the reports below stay put
    first.leader.try_acquire()  # ... but still the leader, as a live worker would be
    second.start()
    time.sleep(1.5)  # three of second's ticks
    assert not second.leader.held
    assert second.latest(SKLEARN_MODEL) == first.latest(SKLEARN_MODEL)  # shared reports
    reports = len(second.history.ids(SKLEARN_MODEL))
    time.sleep(1.0)
    assert len(second.history.ids(SKLEARN_MODEL)) == reports  # second never ran one
    first.leader.release()  # the leader goes (the kernel does this when a worker dies)
    deadline = time.monotonic() + 30
    while not second.leader.held and time.monotonic() < deadline:
        time.sleep(0.1)
    assert second.leader.held  # taken over at second's next tick
    second.stop()


def test_live_rmse_gauge_from_delayed_labels(
    tmp_path: Path, models_dir: Path, split: Split
) -> None:
    from service.prediction_log import read_window

    labels_path = tmp_path / "labels.csv"
    monitor, registry = make_monitor(tmp_path, models_dir, labels_path=labels_path)
    fill_log(monitor.settings.log_path, split.test.head(120))
    logged = read_window(monitor.settings.log_path).head(90)
    offsets = np.array([0.0, 3_000.0, -12_000.0] * 30)
    labels = pd.DataFrame(
        {"request_id": logged["request_id"], "median_house_value": logged["prediction"] + offsets}
    )
    labels.to_csv(labels_path, index=False)
    monitor.run_all()  # a drift report over the 120 rows, then the live RMSE
    rmse = gauge(registry, "housing_live_rmse_usd", version="1")
    assert rmse == pytest.approx(float(np.sqrt(np.mean(offsets**2))), rel=1e-6)
    assert gauge(registry, "housing_live_labelled_predictions", version="1") == 90
