"""Shared fixtures, each built once per session: the dataset and its split, a GCS emulator,
the fake TF Serving upstream, one OpenMP thread for tests that train boosters, and one small
Keras training run (2,000 training rows, 2 epochs, into a temp repository; it
runs a 2-trial random search first, so the search path is exercised end to end too)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from threadpoolctl import threadpool_limits

from core.process import ManagedProcess, free_port, tcp_open
from tests.fake_upstream import Behaviour, FakeUpstream
from training.data import Split, load_split


@pytest.fixture(scope="session")
def split() -> Split:
    return load_split()


@pytest.fixture(scope="session")
def storage_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """gcp-storage-emulator as a real HTTP server on a free port (in memory); its URL."""
    port = free_port()
    argv = [
        str(Path(sys.executable).parent / "gcp-storage-emulator"),
        "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "--quiet",
    ]  # fmt: skip
    log = tmp_path_factory.mktemp("gcs") / "emulator.log"
    with ManagedProcess("gcp-storage-emulator", argv, log) as emulator:
        emulator.wait_ready(tcp_open(port), timeout=30)
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstream]:
    """The fake TF Serving upstream, one per session; ``behaviour`` resets it per test."""
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def behaviour(upstream: FakeUpstream) -> Behaviour:
    return upstream.servicer.reset()


@pytest.fixture(scope="module")
def one_openmp_thread() -> Iterator[None]:
    """One OpenMP thread: on a busy shared machine spin-waiting threads cost minutes."""
    with threadpool_limits(1):
        yield


@dataclass(frozen=True)
class Published:
    result: dict[str, Any]
    serving: Any  # the in-memory keras.Model that was exported
    models_dir: Path

    @property
    def path(self) -> Path:
        return Path(self.result["path"])


@pytest.fixture(scope="session")
def published(tmp_path_factory: pytest.TempPathFactory) -> Published:
    from pipelines.train_keras import run_training

    root = tmp_path_factory.mktemp("keras")
    result, serving = run_training(
        models_dir=root / "models",
        arch="wide_deep",
        epochs=2,
        sample=2_000,
        seed=7,
        runs_dir=root / "runs",
        trials=2,
    )
    return Published(result, serving, root / "models")


@pytest.fixture(scope="session")
def signature(published: Published):
    import tensorflow as tf

    return tf.saved_model.load(str(published.path)).signatures["serving_default"]
