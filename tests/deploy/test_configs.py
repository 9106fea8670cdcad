"""TF Serving's batching and monitoring files, and the local Prometheus config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.paths import REPO_ROOT
from deploy.local.prometheus import local_prometheus_config
from deploy.local.services import local_layout

TFSERVING_DIR = REPO_ROOT / "deploy" / "tfserving"


def test_batching_parameters_parse() -> None:
    config = pytest.importorskip("service.model_server.config")
    options = config.read_batching_parameters(TFSERVING_DIR / "batching.config", os.cpu_count())
    assert options.max_batch_size == 64
    assert options.batch_timeout_micros == 0  # a lone request is not held back
    assert options.num_batch_threads == 1
    assert options.max_enqueued_batches == 100


def test_monitoring_config_enables_prometheus_at_tf_servings_path() -> None:
    config = pytest.importorskip("service.model_server.config")
    path = config.read_monitoring_config(TFSERVING_DIR / "monitoring.config")
    assert path == "/monitoring/prometheus/metrics"


def test_local_prometheus_config_points_at_loopback(tmp_path: Path) -> None:
    layout = local_layout(
        tmp_path / "models",
        tmp_path / "logs",
        {
            "model-server": {"grpc": 9500, "rest": 9501},
            "gateway": {"http": 9000},
            "prometheus": {"http": 9999},
        },
    )
    compose_config = {
        "rule_files": ["rules.yml", "/etc/prometheus/more.yml"],
        "scrape_configs": [
            {"job_name": "gateway", "static_configs": [{"targets": ["gateway:8000"]}]},
            {"job_name": "tfserving", "static_configs": [{"targets": ["tfserving:8501"]}]},
            {"job_name": "ms", "static_configs": [{"targets": ["model-server:8501"]}]},
            {"job_name": "other", "static_configs": [{"targets": ["example.org:80"]}]},
            {"job_name": "self", "static_configs": [{"targets": ["localhost:9090"]}]},
        ],
    }
    local = local_prometheus_config(compose_config, layout)
    targets = [job["static_configs"][0]["targets"] for job in local["scrape_configs"]]
    # TF Serving's stand-in locally is the project's model server.
    assert targets == [
        ["127.0.0.1:9000"],
        ["127.0.0.1:9501"],
        ["127.0.0.1:9501"],
        ["example.org:80"],
        ["127.0.0.1:9999"],
    ]
    rules_dir = REPO_ROOT / "deploy" / "prometheus"
    assert local["rule_files"] == [str(rules_dir / "rules.yml"), str(rules_dir / "more.yml")]
    assert compose_config["scrape_configs"][0]["static_configs"][0]["targets"] == ["gateway:8000"]
