"""The Grafana dashboard: provisioned as compose mounts it, every query parses (promtool) and
returns data from a real Prometheus scraping a real gateway and model server."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from core.contract import FEATURES, SKLEARN_MODEL, TARGET
from core.paths import REPO_ROOT
from core.process import LOOPBACK, free_port, http_ok
from load_tests import models, stack
from service.monitoring.simulate import instances
from training.reference import reference_sample, write_reference
from training.repository import ModelRepository

GRAFANA_DIR = REPO_ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "housing.json"
TFSERVING_DIR = REPO_ROOT / "deploy" / "tfserving"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
# Grafana's interval variables, as Prometheus sees them once Grafana substitutes them.
GRAFANA_VARIABLES = {"$__rate_interval": "30s", "$__interval": "15s", "$__range": "5m"}
METRIC_NAME = re.compile(r"\b((?:housing|model_server)_[a-zA-Z0-9_]+)\b")
MODEL_SERVER_METRICS = "/monitoring/prometheus/metrics"


def queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel, Grafana variables replaced."""
    out = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            out.append((panel["title"], expr))
    return out


def test_dashboard_is_provisioned_the_way_compose_mounts_it() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    datasource = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    provider = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "housing.yml").read_text()
    )["providers"][0]
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    mounts = dict(entry.split(":")[:2][::-1] for entry in grafana["volumes"])
    assert mounts[provider["options"]["path"]] == "./deploy/grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    assert datasource["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
            assert panel["targets"], panel["title"]
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("request rate", "error", "p50", "batch", "queue", "drift", "rmse", "log"):
        assert topic in titles, topic


@pytest.mark.skipif(not Path(PROMTOOL).exists(), reason="promtool is not installed")
def test_every_query_parses_with_promtool(tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": expr}
                    for i, (_, expr) in enumerate(queries())
                ],
            }
        ]
    }
    (tmp_path / "dashboard_rules.yml").write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [PROMTOOL, "check", "rules", "dashboard_rules.yml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def exported_names(text: str) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


@pytest.fixture(scope="module")
def running_stack(tmp_path_factory: pytest.TempPathFactory, split) -> Iterator[dict]:
    """Model server (batching, metrics) + gateway (prediction log, drift every 2 s, labels)
    + Prometheus scraping both every second; some traffic with known request ids."""
    root = tmp_path_factory.mktemp("dashboard")
    repository = ModelRepository(root / "models")
    model = models.small_sklearn(split.train)
    version = models.publish_sklearn(repository, model)
    write_reference(
        repository.version_dir(SKLEARN_MODEL, version),
        reference_sample(split.train, model.predict),
    )
    server = stack.model_server(
        repository.config_path,
        root / "model-server.log",
        batching_file=TFSERVING_DIR / "batching.config",
        extra=["--monitoring_config_file", str(TFSERVING_DIR / "monitoring.config")],
    )
    labels_path = root / "labels.csv"
    gateway = stack.gateway(
        {SKLEARN_MODEL: f"{LOOPBACK}:{server.ports['grpc']}"},
        root / "gateway.log",
        env={
            "HOUSING_PREDICTION_LOG_PATH": str(root / "predictions.sqlite3"),
            "HOUSING_MODELS_DIR": str(repository.root),
            "HOUSING_DRIFT_INTERVAL_SECONDS": "2",
            "HOUSING_DRIFT_MIN_ROWS": "30",
            "HOUSING_DRIFT_LABELS_PATH": str(labels_path),
        },
    )
    procs = []
    try:
        rest = server.url("rest")
        server.start().wait_ready(http_ok(f"{rest}/v1/models/{SKLEARN_MODEL}"), 120)
        procs.append(server)
        url = gateway.url()
        gateway.start().wait_ready(http_ok(f"{url}/readyz"), 120)
        procs.append(gateway)
        config = {
            "global": {"scrape_interval": "1s"},
            "scrape_configs": [
                {"job_name": "gateway", "static_configs": [{"targets": [url.split("//")[1]]}]},
                {
                    "job_name": "model-server",
                    "metrics_path": MODEL_SERVER_METRICS,
                    "static_configs": [{"targets": [rest.split("//")[1]]}],
                },
            ],
        }
        prometheus = stack.prometheus(config, root)
        api = prometheus.url()
        prometheus.start().wait_ready(http_ok(f"{api}/-/ready"), 60)
        procs.append(prometheus)
        rows = split.test.sample(80, random_state=3)
        labels = []
        with httpx.Client(base_url=url, timeout=30) as client:
            for start in range(0, len(rows), 4):  # over a few scrapes, so rates are non-zero
                for _, row in rows.iloc[start : start + 4].iterrows():
                    request_id = uuid.uuid4().hex
                    body = {"instances": instances(pd.DataFrame([row[list(FEATURES)]]))}
                    answer = client.post(
                        "/v1/predict", json=body, headers={"x-request-id": request_id}
                    )
                    assert answer.status_code == 200, answer.text
                    labels.append({"request_id": request_id, TARGET: row[TARGET]})
                time.sleep(0.25)
            assert client.post("/v1/predict", json={"instances": [{}]}).status_code == 422
        pd.DataFrame(labels).to_csv(labels_path, index=False)
        wait_for_a_drift_run(url)
        yield {"gateway": url, "model_server": rest, "prometheus": api}
    finally:
        for proc in reversed(procs):
            proc.stop()


def wait_for_a_drift_run(gateway: str, timeout: float = 60) -> None:
    """The scheduled drift round that sees the traffic: its gauges are what the drift panels
    show (with several gateway workers the schedule's phase varies by a few seconds)."""
    done = 'housing_drift_runs_total{model="housing_sklearn",outcome="ok"}'
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in httpx.get(f"{gateway}/metrics").text.splitlines():
            if line.startswith(done) and float(line.split()[-1]) >= 1:
                return
        time.sleep(0.5)
    raise AssertionError(f"no successful drift run within {timeout:.0f} s")


@pytest.mark.skipif(
    not Path(stack.PROMETHEUS).exists(), reason="the prometheus server is not installed"
)
def test_every_query_names_exported_metrics_and_returns_data(running_stack: dict) -> None:
    exported = exported_names(httpx.get(f"{running_stack['gateway']}/metrics").text)
    exported |= exported_names(
        httpx.get(f"{running_stack['model_server']}{MODEL_SERVER_METRICS}").text
    )
    for title, expr in queries():
        names = set(METRIC_NAME.findall(expr))
        assert names, f"{title}: {expr} names no metric"
        assert names <= exported, f"{title}: not exported: {sorted(names - exported)}"

    pending = dict(enumerate(queries()))
    deadline = time.monotonic() + 120
    while pending and time.monotonic() < deadline:
        for key, (_, expr) in list(pending.items()):
            answer = httpx.get(
                f"{running_stack['prometheus']}/api/v1/query", params={"query": expr}, timeout=10
            ).json()
            assert answer["status"] == "success", (expr, answer)
            if answer["data"]["result"]:
                del pending[key]
        time.sleep(1)
    assert not pending, f"queries without data: {list(pending.values())}"


def test_the_local_stack_finds_a_running_grafana() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from deploy.local.supervisor import grafana_dashboard_url

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200 if self.path == "/api/health" else 404)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://{LOOPBACK}:{server.server_address[1]}"
        uid = json.loads(DASHBOARD.read_text())["uid"]
        assert grafana_dashboard_url(base) == f"{base}/d/{uid}"
    finally:
        server.shutdown()
    assert grafana_dashboard_url(f"http://{LOOPBACK}:{free_port()}") is None
