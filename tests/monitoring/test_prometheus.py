"""Prometheus config and alert rules: promtool checks, and a real Prometheus scraping a real
gateway process, read back through the Prometheus HTTP API."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from core.paths import REPO_ROOT
from core.process import free_port, http_ok
from load_tests import stack

PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

needs_promtool = pytest.mark.skipif(
    not Path(PROMTOOL).exists(), reason="promtool is not installed (Debian package prometheus)"
)


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=PROMETHEUS_DIR
    )


@needs_promtool
@pytest.mark.parametrize(
    "args",
    [
        ("check", "config", "prometheus.yml"),
        ("check", "rules", "rules.yml"),
        ("test", "rules", "rules_test.yml"),
    ],
    ids=["check-config", "check-rules", "test-rules"],
)
def test_promtool(args: tuple[str, ...]) -> None:
    result = promtool(*args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_config_scrapes_gateway_model_server_and_tfserving() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["gateway"]["static_configs"][0]["targets"] == ["gateway:8000"]
    for name, target in [("model-server", "model-server:8501"), ("tfserving", "tfserving:8501")]:
        assert jobs[name]["metrics_path"] == "/monitoring/prometheus/metrics"
        assert jobs[name]["static_configs"][0]["targets"] == [target]


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[str]:
    """The real gateway (``housing serve gateway``); its upstream is a closed port, which
    is fine: /metrics works whatever the upstream does."""
    process = stack.gateway(
        {"housing_sklearn": f"127.0.0.1:{free_port()}"},
        tmp_path / "gateway.log",
        extra=["--prediction-log-path", str(tmp_path / "predictions.sqlite3")],
    )
    with process:
        process.wait_ready(http_ok(f"{process.url()}/livez"), timeout=90)
        yield process.address("http")


@pytest.mark.skipif(
    not Path(stack.PROMETHEUS).exists(), reason="the prometheus server is not installed"
)
def test_real_prometheus_scrapes_the_gateway(tmp_path: Path, gateway: str) -> None:
    # One request so the gateway has a labelled request counter (503/504: no upstream).
    instance = {
        "longitude": -122.2,
        "latitude": 37.8,
        "housing_median_age": 41,
        "total_rooms": 880,
        "total_bedrooms": 129,
        "population": 322,
        "households": 126,
        "median_income": 8.3,
        "ocean_proximity": "NEAR BAY",
    }
    answer = httpx.post(f"http://{gateway}/v1/predict", json={"instances": [instance]}, timeout=30)
    assert answer.status_code in {503, 504}

    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(PROMETHEUS_DIR / "rules.yml")],
        "scrape_configs": [
            {"job_name": "gateway", "static_configs": [{"targets": [gateway]}]},
        ],
    }
    process = stack.prometheus(config, tmp_path).start()
    api = process.url()
    try:
        process.wait_ready(http_ok(f"{api}/-/ready"), timeout=60)
        query = 'sum by (code) (housing_gateway_requests_total{route="/v1/predict"})'
        deadline, result = time.monotonic() + 60, []
        while time.monotonic() < deadline and not result:
            response = httpx.get(f"{api}/api/v1/query", params={"query": query}, timeout=5)
            assert response.status_code == 200 and response.json()["status"] == "success"
            result = response.json()["data"]["result"]
            time.sleep(0.5)
        assert result, (tmp_path / "prometheus.log").read_text()[-2000:]
        (sample,) = result
        assert sample["metric"]["code"] == str(answer.status_code)
        assert float(sample["value"][1]) == 1.0
        rules = httpx.get(f"{api}/api/v1/rules", timeout=5).json()
        names = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
        assert {"GatewayHighErrorRate", "DataDriftDetected", "ModelServerDown"} <= names
    finally:
        process.stop()
