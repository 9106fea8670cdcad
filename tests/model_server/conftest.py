"""One models folder and two real server processes shared by the model server's tests.

Main server: ``--model_config_file`` with both platforms, batching on (small queue, so the
UNAVAILABLE path is reachable), Prometheus on, fast file polling. Second server: single-model
mode (``--model_name``/``--model_base_path``), no batching, no REST.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from tests.model_server import artifacts
from training.repository import ModelRepository

LIVE = "housing_live"
METRICS_PATH = "/monitoring/prometheus/metrics"
KERAS_SCALE = 40_000.0
BATCHING = """
max_batch_size { value: 32 }
batch_timeout_micros { value: 20000 }
max_enqueued_batches { value: 2 }
num_batch_threads { value: 2 }
"""


@dataclass
class ModelsFolder:
    root: Path
    repo: ModelRepository
    sklearn_models: dict[int, object]
    original_config: str


@pytest.fixture(scope="session")
def models(tmp_path_factory, split) -> ModelsFolder:
    root = tmp_path_factory.mktemp("ms") / "models"
    repo = ModelRepository(root)
    fitted = {
        1: artifacts.fit_sklearn(split.train, seed=42),
        2: artifacts.fit_sklearn(split.train, seed=7),
    }
    for version in (1, 2):
        assert artifacts.publish_sklearn(repo, fitted[version]) == version
    assert artifacts.publish_saved_model(repo, KERAS_SCALE) == 1
    # The live model starts with version 1; tests copy newer versions in.
    shutil.copytree(repo.version_dir(artifacts.SKLEARN, 1), root / LIVE / "1")
    repo.register(LIVE, "sklearn")
    config = repo.read_config()
    sklearn_entry = repo.find_config(config, artifacts.SKLEARN)
    sklearn_entry.model_version_policy.Clear()
    sklearn_entry.model_version_policy.all.SetInParent()
    sklearn_entry.version_labels["stable"] = 1
    sklearn_entry.version_labels["canary"] = 2
    repo.write_config(config)
    return ModelsFolder(root, repo, fitted, repo.config_path.read_text())


@pytest.fixture(scope="session")
def servers(models, tmp_path_factory) -> Iterator[dict[str, artifacts.ServerProcess]]:
    folder = tmp_path_factory.mktemp("ms_config")
    (folder / "batching.config").write_text(BATCHING)
    (folder / "monitoring.config").write_text(
        f'prometheus_config {{ enable: true, path: "{METRICS_PATH}" }}\n'
    )
    started = {
        "main": artifacts.ServerProcess(
            [
                f"--model_config_file={models.repo.config_path}",
                "--file_system_poll_wait_seconds=0.3",
                "--enable_reload_config",
                "--enable_batching",
                f"--batching_parameters_file={folder / 'batching.config'}",
                f"--monitoring_config_file={folder / 'monitoring.config'}",
            ],
            folder / "main.log",
        ),
        "single": artifacts.ServerProcess(
            [
                f"--model_name={artifacts.SKLEARN}",
                f"--model_base_path={models.root / artifacts.SKLEARN}",
            ],
            folder / "single.log",
            rest=False,
        ),
    }
    try:
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        for server in started.values():
            server.process.terminate()
        for server in started.values():
            server.stop()


@pytest.fixture(scope="session")
def server(servers) -> artifacts.ServerProcess:
    return servers["main"]


@pytest.fixture(scope="session")
def channel(server) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target) as channel:
        yield channel
