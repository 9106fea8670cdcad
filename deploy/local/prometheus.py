"""The local stack's Prometheus config: the docker one, its targets rewritten for loopback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.paths import REPO_ROOT
from deploy.local.services import SERVICES, Layout


def local_prometheus_config(compose_config: dict[str, Any], layout: Layout) -> dict[str, Any]:
    """Rewrite the docker Prometheus config for loopback: ``service:port`` -> local address.

    Rule files are resolved against the project's ``deploy/prometheus`` folder, which the
    docker stack mounts at ``/etc/prometheus``.
    """
    by_container_port = {
        (name, port): (layout.hosts[name], layout.ports[name][role])
        for name, service in SERVICES.items()
        for role, port in service.ports.items()
    }
    config = json.loads(json.dumps(compose_config))
    for job in config.get("scrape_configs", []):
        for static in job.get("static_configs", []):
            targets = []
            for target in static.get("targets", []):
                host, _, port = str(target).rpartition(":")
                if host in ("localhost", "127.0.0.1"):  # Prometheus scraping itself
                    host = "prometheus"
                local = by_container_port.get((host, int(port))) if port.isdigit() else None
                targets.append(f"{local[0]}:{local[1]}" if local else target)
            static["targets"] = targets
    rules_dir = REPO_ROOT / "deploy" / "prometheus"
    config["rule_files"] = [
        str(rules_dir / Path(str(path)).relative_to("/etc/prometheus"))
        if str(path).startswith("/etc/prometheus/")
        else str(rules_dir / path)
        for path in config.get("rule_files", [])
    ]
    return config


def default_prometheus_config() -> dict[str, Any]:
    """Used when ``deploy/prometheus/prometheus.yml`` is absent: scrape what the table runs."""
    return {
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        "scrape_configs": [
            {
                "job_name": "gateway",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": ["gateway:8000"]}],
            },
            {
                "job_name": "model-server",
                "metrics_path": "/monitoring/prometheus/metrics",
                "static_configs": [{"targets": ["model-server:8501"]}],
            },
        ],
    }


def write_local_prometheus_config(layout: Layout) -> Path:
    import yaml

    source = REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml"
    compose_config = (
        yaml.safe_load(source.read_text()) if source.is_file() else default_prometheus_config()
    )
    path = Path(layout.prometheus_config)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(local_prometheus_config(compose_config, layout)))
    return path
