"""A real Prometheus scrapes a real gateway that has API keys, with a scrape-only key in a
credentials file (the set-up the README documents); a scrape without a key is refused."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from core.process import LOOPBACK, free_port, http_ok
from load_tests import stack as launch


@pytest.mark.skipif(
    not Path(launch.PROMETHEUS).exists(), reason="the prometheus server is not installed"
)
def test_prometheus_scrapes_an_authenticated_gateway_with_a_scrape_key(tmp_path: Path) -> None:
    gateway = launch.gateway(
        {"housing_sklearn": f"{LOOPBACK}:{free_port()}"},  # no upstream needed
        tmp_path / "gateway.log",
        env={
            "HOUSING_API_KEYS": '["predict-key"]',
            "HOUSING_METRICS_KEYS": '["scrape-key"]',
            "HOUSING_PREDICTION_LOG_PATH": "",
        },
    )
    target = gateway.address("http")
    key_file = tmp_path / "scrape.key"
    key_file.write_text("scrape-key\n")
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
    prometheus = launch.prometheus(config, tmp_path)
    api = prometheus.url()
    with gateway, prometheus:
        gateway.wait_ready(http_ok(f"http://{target}/livez"))
        prometheus.wait_ready(http_ok(f"{api}/-/ready"))
        # poll the targets until the keyed scrape has succeeded (a first scrape of a busy,
        # just started gateway may time out) and the keyless one has been answered
        targets: dict[str, dict] = {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            answer = httpx.get(f"{api}/api/v1/targets", timeout=5).json()
            targets = {t["labels"]["job"]: t for t in answer["data"]["activeTargets"]}
            keyed, keyless = targets.get("with-key", {}), targets.get("without-key", {})
            if keyed.get("health") == "up" and "401" in keyless.get("lastError", ""):
                break
            time.sleep(0.5)
        assert targets["with-key"]["health"] == "up", (targets, prometheus.log_tail())
        assert targets["without-key"]["health"] == "down"
        assert "401" in targets["without-key"]["lastError"]
        query = 'housing_gateway_in_flight_requests{job="with-key"}'
        result = httpx.get(f"{api}/api/v1/query", params={"query": query}, timeout=5).json()[
            "data"
        ]["result"]
        assert len(result) == 1
