"""A real Prometheus scrapes a real gateway that has API keys, with a scrape-only key in a
credentials file (the set-up the README documents); a scrape without a key is refused."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest
import yaml

from load_tests import stack

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


@pytest.mark.skipif(not Path(PROMETHEUS).exists(), reason="the prometheus server is not installed")
def test_prometheus_scrapes_an_authenticated_gateway_with_a_scrape_key(tmp_path: Path) -> None:
    gateway = stack.gateway(
        {"housing_sklearn": f"{stack.LOOPBACK}:{stack.free_port()}"},  # no upstream needed
        tmp_path / "gateway.log",
        env={
            "HOUSING_API_KEYS": '["predict-key"]',
            "HOUSING_METRICS_KEYS": '["scrape-key"]',
            "HOUSING_PREDICTION_LOG_PATH": "",
        },
    )
    target = f"{stack.LOOPBACK}:{gateway.ports['http']}"
    key_file = tmp_path / "scrape.key"
    key_file.write_text("scrape-key\n")
    port = stack.free_port()
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "with-key",
                "authorization": {"type": "Bearer", "credentials_file": str(key_file)},
                "static_configs": [{"targets": [target]}],
            },
            {"job_name": "without-key", "static_configs": [{"targets": [target]}]},
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prometheus = stack.ManagedProcess(
        "prometheus",
        [
            PROMETHEUS,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address={stack.LOOPBACK}:{port}",
        ],
        tmp_path / "prometheus.log",
    )
    api = f"http://{stack.LOOPBACK}:{port}/api/v1/query"
    try:
        gateway.start().wait_ready(stack.http_ok(f"http://{target}/livez"), 120)
        prometheus.start().wait_ready(stack.http_ok(f"http://{stack.LOOPBACK}:{port}/-/ready"))
        up: dict[str, float] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(up) < 2:
            result = httpx.get(api, params={"query": "up"}, timeout=5).json()["data"]["result"]
            up = {r["metric"]["job"]: float(r["value"][1]) for r in result}
            time.sleep(0.5)
        assert up == {"with-key": 1.0, "without-key": 0.0}, prometheus.log_tail()
        query = 'housing_gateway_in_flight_requests{job="with-key"}'
        result = httpx.get(api, params={"query": query}, timeout=5).json()["data"]["result"]
        assert len(result) == 1
    finally:
        prometheus.stop()
        gateway.stop()
