"""The gateway is SIGKILLed while it logs predictions: the SQLite prediction log opens
cleanly afterwards and holds every prediction the gateway acknowledged (HTTP 200)."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from core.contract import SKLEARN_MODEL
from core.process import ManagedProcess
from service.prediction_log import PredictionLog

from .conftest import ROW, Hammer, start_gateway

pytestmark = pytest.mark.timeout(180)
ROWS_PER_REQUEST = 3


def test_sigkill_keeps_every_acknowledged_prediction(
    shared_server: ManagedProcess, fault_logs: Path, tmp_path: Path
) -> None:
    log_path = tmp_path / "predictions.sqlite3"
    gateway = start_gateway(
        shared_server, fault_logs, (SKLEARN_MODEL,), HOUSING_PREDICTION_LOG_PATH=str(log_path)
    )
    url = f"{gateway.url()}/v1/models/{SKLEARN_MODEL}:predict"
    body = {"instances": [ROW] * ROWS_PER_REQUEST}
    try:
        with Hammer(url, threads=6, limit_seconds=60, body=body) as hammer:
            assert hammer.wait_for(lambda o: o.status == 200, 150, timeout=60)
            gateway.kill()  # SIGKILL mid-stream: writes are in flight right now
    finally:
        gateway.stop()
    acknowledged = {o.request_id for o in hammer.outcomes if o.status == 200}
    assert len(acknowledged) >= 150
    assert any(o.status == 0 for o in hammer.outcomes), "the kill did not cut any request"

    with sqlite3.connect(log_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        logged = Counter(r for (r,) in conn.execute("SELECT request_id FROM predictions"))
    missing = [r for r in acknowledged if logged[r] != ROWS_PER_REQUEST]
    assert not missing, f"{len(missing)} acknowledged requests not (fully) in the log"

    reopened = PredictionLog(log_path)  # the writer side opens (and recovers the WAL) too
    reopened.close()
    assert reopened.failed_records == 0
