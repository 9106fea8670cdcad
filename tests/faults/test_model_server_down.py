"""The model server dies under load: the gateway answers 503 (with Retry-After) within its
deadline, never hangs, turns /readyz to 503, and recovers by itself when the server is back."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from sklearn.pipeline import Pipeline

from core.contract import SKLEARN_MODEL
from core.process import ManagedProcess

from .conftest import Hammer, new_repo, start_gateway, start_model_server

pytestmark = pytest.mark.timeout(300)
DEADLINE = 2.0
SLACK = 1.5  # scheduling on a busy 2-core machine; a hang would be far beyond this


def wait_status(url: str, status: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=DEADLINE + SLACK).status_code == status:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def test_model_server_killed_then_restarted(
    tmp_path: Path, small_model: Pipeline, fault_logs: Path
) -> None:
    repo = new_repo(tmp_path / "models", small_model)
    server = start_model_server(repo, fault_logs)
    grpc_port = server.ports["grpc"]
    gateway = start_gateway(
        server, fault_logs, (SKLEARN_MODEL,), HOUSING_DEADLINE_SECONDS=str(DEADLINE)
    )
    restarted: ManagedProcess | None = None
    readyz = f"{gateway.url()}/readyz"
    url = f"{gateway.url()}/v1/models/{SKLEARN_MODEL}:predict"
    try:
        with Hammer(url, threads=4, limit_seconds=150) as hammer:
            assert hammer.wait_for(lambda o: o.status == 200, 20, timeout=30)
            killed_at = time.monotonic()
            server.kill()
            assert hammer.wait_for(lambda o: o.started > killed_at and o.status == 503, 10, 30)
            assert wait_status(readyz, 503, timeout=10), "/readyz stayed ready with no upstream"
            body = httpx.get(readyz, timeout=5).json()
            restarted = start_model_server(repo, fault_logs, grpc_port=grpc_port)
            back_at = time.monotonic()
            recovered = hammer.wait_for(lambda o: o.started > back_at and o.status == 200, 20, 60)
            recovery = time.monotonic() - back_at
        assert recovered, "the gateway did not recover after the model server came back"
        assert wait_status(readyz, 200, timeout=30), "/readyz never turned ready again"
        outcomes = hammer.outcomes
        outage = [o for o in outcomes if killed_at < o.started < back_at]
        assert outage, "no request was sent while the model server was down"
        codes = {o.status for o in outage}
        assert codes <= {200, 503, 504}, f"unexpected answers while down: {codes}"
        assert all(o.retry_after for o in outage if o.status == 503), "503 without Retry-After"
        slow = [round(o.elapsed, 2) for o in outcomes if o.elapsed > DEADLINE + SLACK]
        assert not slow, f"answers slower than the {DEADLINE}s deadline: {slow[:10]}"
        assert body["ready"] is False and SKLEARN_MODEL in body["models"]
        print(f"outage answers: {len(outage)}, recovery after restart: {recovery:.1f}s")
    finally:
        gateway.stop()
        server.stop()
        if restarted is not None:
            restarted.stop()
