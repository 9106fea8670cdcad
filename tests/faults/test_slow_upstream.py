"""A slow upstream: requests end with 504 at the gateway's deadline (not later), and the
gateway's in-flight gauge and memory return to normal once the storm is over."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from core.contract import SKLEARN_MODEL
from core.process import http_ok
from load_tests import stack
from tests.fake_upstream import FakeUpstream

from .conftest import READY_TIMEOUT, ROW, metric_value

pytestmark = pytest.mark.timeout(180)
DEADLINE = 1.0
SERVER_BUCKET = "2.5"  # histogram bucket holding deadline + scheduling slack
CLIENT_SLACK = 5.0  # the test's own 32 threads queue on a busy 2-core machine
STORM = 32  # concurrent slow requests per round


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def storm(url: str, size: int = STORM) -> list[tuple[int, float]]:
    """``size`` concurrent requests; (status, seconds) of each."""
    limits = httpx.Limits(max_connections=size)
    with httpx.Client(timeout=30, limits=limits) as client:

        def one(_: int) -> tuple[int, float]:
            started = time.monotonic()
            response = client.post(url, json={"instances": [ROW] * 5})
            return response.status_code, time.monotonic() - started

        with ThreadPoolExecutor(size) as pool:
            return list(pool.map(one, range(size)))


def test_slow_upstream_times_out_at_deadline_and_recovers(fault_logs: Path) -> None:
    upstream = FakeUpstream().start()
    behaviour = upstream.servicer.reset()
    gateway = stack.gateway(
        {SKLEARN_MODEL: upstream.target},
        fault_logs / "gateway-slow.log",
        env={
            "HOUSING_DEADLINE_SECONDS": str(DEADLINE),
            "HOUSING_PREDICTION_LOG_PATH": str(fault_logs / "predictions-slow.sqlite3"),
        },
    ).start()
    base = gateway.url()
    url = f"{base}/v1/models/{SKLEARN_MODEL}:predict"
    try:
        gateway.wait_ready(http_ok(f"{base}/readyz"), READY_TIMEOUT)
        warm = storm(url, 8)
        assert all(code == 200 for code, _ in warm), f"the fast warm-up failed: {warm}"
        behaviour.delay = 10 * DEADLINE
        first = storm(url)
        baseline = rss_bytes(gateway.pid)
        rounds = [storm(url) for _ in range(2)]
        grown = rss_bytes(gateway.pid) - baseline
        behaviour.delay = 0.0
        after = httpx.post(url, json={"instances": [ROW]}, timeout=10)
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
    finally:
        gateway.stop()
        upstream.stop()
    answers = [a for r in (first, *rounds) for a in r]
    assert {code for code, _ in answers} == {504}, sorted({code for code, _ in answers})
    took = sorted(round(t, 2) for _, t in answers)
    print(f"client-side 504 times: min {took[0]}s, median {took[len(took) // 2]}s, max {took[-1]}s")
    assert took[0] >= DEADLINE * 0.9, took[:5]
    assert took[-1] <= DEADLINE + CLIENT_SLACK, took[-5:]
    # The gateway's own clock (no client-side queueing): every 504 within deadline + slack.
    name = "housing_gateway_request_duration_seconds"
    all_504 = metric_value(metrics, f"{name}_count", code="504")
    in_time = metric_value(metrics, f"{name}_bucket", code="504", le=SERVER_BUCKET)
    assert all_504 >= 3 * STORM and in_time == all_504, (in_time, all_504)
    assert after.status_code == 200, after.text
    assert metric_value(metrics, "housing_gateway_in_flight_requests") == 0
    assert grown < 32 * 1024 * 1024, f"gateway RSS grew {grown / 2**20:.1f} MiB over 2 storms"
