"""One models folder and two real server processes shared by the model server's tests.

Main server: ``--model_config_file`` with both platforms, batching on (small queue, so the
UNAVAILABLE path is reachable), Prometheus on, fast file polling, config reloads with a shared
secret. Second server: single-model mode (``--model_name``/``--model_base_path``), no
batching, no REST, bound on every interface with config reloads from loopback only.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from core.contract import SKLEARN_MODEL
from core.process import ManagedProcess
from load_tests import models as test_models
from load_tests import stack
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
        1: test_models.small_sklearn(split.train, trees=0, seed=42),
        2: test_models.small_sklearn(split.train, trees=0, seed=7),
    }
    for version in (1, 2):
        assert test_models.publish_sklearn(repo, fitted[version]) == version
    assert test_models.publish_tiny_savedmodel(repo, KERAS_SCALE) == 1
    # The live model starts with version 1; tests copy newer versions in.
    shutil.copytree(repo.version_dir(SKLEARN_MODEL, 1), root / LIVE / "1")
    repo.register(LIVE, "sklearn")
    config = repo.read_config()
    sklearn_entry = repo.find_config(config, SKLEARN_MODEL)
    sklearn_entry.model_version_policy.Clear()
    sklearn_entry.model_version_policy.all.SetInParent()
    sklearn_entry.version_labels["stable"] = 1
    sklearn_entry.version_labels["canary"] = 2
    repo.write_config(config)
    return ModelsFolder(root, repo, fitted, repo.config_path.read_text())


@pytest.fixture(scope="session")
def reload_secret() -> str:
    return secrets.token_hex(16)


@pytest.fixture(scope="session")
def servers(models, tmp_path_factory, reload_secret) -> Iterator[dict[str, ManagedProcess]]:
    folder = tmp_path_factory.mktemp("ms_config")
    (folder / "reload.secret").write_text(reload_secret + "\n")
    (folder / "batching.config").write_text(BATCHING)
    (folder / "monitoring.config").write_text(
        f'prometheus_config {{ enable: true, path: "{METRICS_PATH}" }}\n'
    )
    started = {
        "main": stack.model_server(
            models.repo.config_path,
            folder / "main.log",
            batching_file=folder / "batching.config",
            poll_seconds=0.3,
            extra=[
                "--enable_reload_config",
                f"--reload_secret_file={folder / 'reload.secret'}",
                f"--monitoring_config_file={folder / 'monitoring.config'}",
            ],
        ),
        "single": stack.model_server(
            None,
            folder / "single.log",
            rest_port=0,
            extra=[
                f"--model_name={SKLEARN_MODEL}",
                f"--model_base_path={models.root / SKLEARN_MODEL}",
                "--enable_reload_config",
                "--host=0.0.0.0",  # last --host wins: reachable from a non-loopback peer
            ],
        ),
    }
    try:
        for server in started.values():
            server.start()
        for server in started.values():
            stack.serving(server)
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(scope="session")
def server(servers) -> ManagedProcess:
    return servers["main"]


@pytest.fixture(scope="session")
def channel(server) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address("grpc")) as channel:
        yield channel
