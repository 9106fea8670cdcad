import math
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from core.contract import FEATURES
from service.prediction_log import (
    DAY,
    PredictionLog,
    PredictionRecord,
    Retention,
    connect,
    read_window,
)

FEATURES_ROW = {
    "longitude": -122.2,
    "latitude": 37.8,
    "housing_median_age": 30.0,
    "total_rooms": 900.0,
    "total_bedrooms": None,
    "population": 300.0,
    "households": 120.0,
    "median_income": 4.5,
    "ocean_proximity": "NEAR BAY",
}


def record(i: int, ts: float | None = None, model: str = "housing_sklearn") -> PredictionRecord:
    return PredictionRecord(
        request_id=f"req-{i}",
        model=model,
        version=1,
        features=FEATURES_ROW,
        prediction=100_000.0 + i,
        ts=ts if ts is not None else time.time(),
    )


def test_acknowledged_records_are_committed_and_read_back(tmp_path: Path):
    log = PredictionLog(tmp_path / "log.sqlite3")
    futures = [log.append([record(i)]) for i in range(50)]
    assert all(f.result(timeout=10) == 1 for f in futures)
    frame = read_window(tmp_path / "log.sqlite3")  # read while the writer is still open
    log.close()
    assert list(frame["request_id"]) == [f"req-{i}" for i in range(50)]
    assert list(frame.columns[4:13]) == list(FEATURES)
    assert math.isnan(frame["total_bedrooms"].iloc[0])
    assert log.written_records == 50 and log.failed_records == 0


def test_concurrent_writers_lose_nothing(tmp_path: Path):
    log = PredictionLog(tmp_path / "log.sqlite3")

    def writer(offset: int) -> None:
        for i in range(100):
            log.append([record(offset + i)]).result(timeout=10)

    threads = [threading.Thread(target=writer, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    frame = read_window(tmp_path / "log.sqlite3")
    assert len(frame) == 400 and frame["request_id"].is_unique


def test_window_filters_by_time_model_and_limit(tmp_path: Path):
    log = PredictionLog(tmp_path / "log.sqlite3")
    log.append([record(i, ts=1000.0 + i) for i in range(10)]).result(timeout=10)
    log.append([record(99, ts=1005.5, model="housing_keras")]).result(timeout=10)
    log.close()
    path = tmp_path / "log.sqlite3"
    assert len(read_window(path, since=1005.0)) == 6
    assert len(read_window(path, since=1005.0, model="housing_sklearn")) == 5
    assert list(read_window(path, limit=3)["request_id"]) == ["req-8", "req-9", "req-99"]
    assert len(read_window(path, until=1002.0)) == 2


def test_a_failed_write_is_counted_not_dropped_silently(tmp_path: Path):
    path = tmp_path / "log.sqlite3"
    log = PredictionLog(path)
    # waits for the writer thread, which may still be creating the table
    blocker = sqlite3.connect(str(path), timeout=10)
    blocker.execute("DROP TABLE predictions")
    blocker.commit()
    blocker.close()
    future = log.append([record(1), record(2)])
    with pytest.raises(sqlite3.Error):
        future.result(timeout=10)
    assert log.failed_records == 2
    log.close()


def test_non_finite_feature_values_are_stored_as_null(tmp_path: Path):
    log = PredictionLog(tmp_path / "log.sqlite3")
    rec = PredictionRecord("r", "m", 1, {**FEATURES_ROW, "total_bedrooms": float("nan")}, 1.0)
    log.append([rec]).result(timeout=10)
    log.close()
    assert math.isnan(read_window(tmp_path / "log.sqlite3")["total_bedrooms"].iloc[0])


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def fill(path: Path, records: list[PredictionRecord]) -> None:
    """Records written by an earlier run that kept everything."""
    keep_all = Retention(max_age_seconds=1e12, max_rows=10**9)
    log = PredictionLog(path, retention=keep_all)
    log.append(records).result(timeout=10)
    log.close()


def test_retention_deletes_records_past_the_age_limit(tmp_path: Path):
    path = tmp_path / "log.sqlite3"
    now = time.time()
    fill(path, [record(i, ts=now - 40 * DAY) for i in range(5)] + [record(9, ts=now - DAY)])
    log = PredictionLog(path, retention=Retention(max_age_seconds=30 * DAY))
    assert wait_until(lambda: log.deleted_records == 5)
    log.close()
    assert list(read_window(path)["request_id"]) == ["req-9"]


def test_retention_keeps_the_newest_rows(tmp_path: Path):
    path = tmp_path / "log.sqlite3"
    fill(path, [record(i) for i in range(25)])
    log = PredictionLog(path, retention=Retention(max_rows=10, every_seconds=0.05))
    assert wait_until(lambda: log.deleted_records == 15)
    log.append([record(i) for i in range(25, 30)]).result(timeout=10)  # 5 more: 5 older go
    assert wait_until(lambda: log.deleted_records == 20)
    log.close()
    assert list(read_window(path)["request_id"]) == [f"req-{i}" for i in range(20, 30)]


def test_a_retention_run_deletes_a_bounded_number(tmp_path: Path):
    path = tmp_path / "log.sqlite3"
    fill(path, [record(i) for i in range(30)])
    policy = Retention(max_rows=1, max_deletes=4, every_seconds=3600, catch_up_seconds=3600)
    log = PredictionLog(path, retention=policy)
    assert wait_until(lambda: log.deleted_records == 4)
    time.sleep(0.2)
    assert log.deleted_records == 4 and len(read_window(path)) == 26  # the rest: next runs
    log.close()
    # runs that hit the bound come back soon, until the log is within its limits
    quick = Retention(max_rows=1, max_deletes=4, every_seconds=3600, catch_up_seconds=0.01)
    log = PredictionLog(path, retention=quick)
    assert wait_until(lambda: log.deleted_records == 25)
    log.close()
    assert list(read_window(path)["request_id"]) == ["req-29"]


def drop_table(path: Path) -> None:
    outsider = sqlite3.connect(str(path))
    outsider.execute("DROP TABLE predictions")
    outsider.commit()
    outsider.close()


def test_failing_writes_raise_a_warning_until_a_write_succeeds(tmp_path: Path):
    path = tmp_path / "log.sqlite3"
    log = PredictionLog(path)
    assert log.warning() is None
    drop_table(path)
    with pytest.raises(sqlite3.Error):
        log.append([record(1), record(2), record(3)]).result(timeout=10)
    warning = log.warning()
    assert warning is not None and "3 records lost" in warning
    connect(path).close()  # the table is back
    assert log.append([record(4)]).result(timeout=10) == 1
    assert log.warning() is None and log.failed_records == 3
    log.close()


def test_a_locked_database_is_a_counted_failure_not_a_hang(tmp_path: Path):
    path = tmp_path / "log.sqlite3"
    log = PredictionLog(path, busy_timeout=0.2)
    holder = sqlite3.connect(str(path), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            log.append([record(1)]).result(timeout=10)
        assert log.failed_records == 1 and log.warning() is not None
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert log.append([record(2)]).result(timeout=10) == 1
    log.close()


def test_readers_create_nothing_and_cannot_undo_a_write_failure(tmp_path: Path):
    missing = tmp_path / "nowhere.sqlite3"
    assert read_window(missing).empty and not missing.exists()
    path = tmp_path / "log.sqlite3"
    log = PredictionLog(path)
    drop_table(path)
    assert read_window(path).empty  # a drift run reading now must not recreate the table
    with pytest.raises(sqlite3.Error):
        log.append([record(1)]).result(timeout=10)
    log.close()


def _open_log(path: Path, results) -> None:
    try:
        connect(path, 10).close()
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put(repr(exc))


def test_gateway_workers_opening_a_new_log_at_once_all_succeed(tmp_path: Path):
    """Two or three workers start together on a fresh file: switching it to WAL must wait
    for the others, not fail the worker's start-up ('database is locked')."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    answers = []
    for round_ in range(25):
        path = tmp_path / f"log-{round_}.sqlite3"
        results = context.Queue()
        workers = [context.Process(target=_open_log, args=(path, results)) for _ in range(3)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=30)
        answers += [results.get(timeout=5) for _ in workers]
    assert answers == ["ok"] * len(answers)
