"""Fixtures: a real GCS emulator process, a local TLS Vertex API, a tiny model repository."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.vertex.fake_vertex import FakeVertex, self_signed_cert, serve
from training.repository import ModelRepository

PROJECT = "test-project"
LOCATION = "europe-west1"
BUCKET = "housing-test-bucket"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {port} after {timeout}s")


@pytest.fixture(scope="session")
def trust_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """A localhost certificate that gRPC trusts for this test process."""
    key_pem, cert_pem, path = self_signed_cert(tmp_path_factory.mktemp("tls"))
    # Read by gRPC core when it first builds SSL credentials from the default roots.
    os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(path)
    return key_pem, cert_pem


@pytest.fixture(scope="session")
def storage_emulator() -> Any:
    """gcp-storage-emulator as a real HTTP server on a free port (in memory)."""
    port = free_port()
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gcp-storage-emulator"),
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--in-memory",
            "--quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def small_model(split: Any) -> Any:
    """The book's preprocessing + LinearRegression on a 2,000-row sample (fast, real)."""
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline

    from training.data import features_and_target
    from training.features import preprocessing

    features, target = features_and_target(split.train.sample(2000, random_state=0))
    return make_pipeline(preprocessing(), LinearRegression()).fit(features, target)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory, small_model: Any) -> Path:
    """A model repository with one housing_sklearn and one housing_keras version."""
    from load_tests.models import publish_sklearn

    root = tmp_path_factory.mktemp("models")
    repo = ModelRepository(root)

    def keras_artifacts(folder: Path) -> dict[str, Any]:
        # Upload only copies the folder: a SavedModel's file layout is enough here.
        (folder / "saved_model.pb").write_bytes(b"\x08\x01")
        (folder / "variables").mkdir()
        (folder / "variables" / "variables.index").write_bytes(b"index")
        return {"framework": "keras"}

    publish_sklearn(repo, small_model)
    repo.publish("housing_keras", "tensorflow", keras_artifacts)
    repo.set_label("housing_sklearn", "stable", 1)
    return root


@pytest.fixture
def storage_client(storage_emulator: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", storage_emulator)
    return storage.Client(project=PROJECT, credentials=AnonymousCredentials())


@pytest.fixture
def vertex(
    trust_root: tuple[bytes, bytes],
    storage_client: Any,
    small_model: Any,
    models_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    """The fake Vertex API, and the HOUSING_VERTEX_* environment pointing at it."""
    import pandas as pd

    def predict(instances: list[dict[str, Any]]) -> list[float]:
        return [
            float(v)
            for v in small_model.predict(
                pd.DataFrame(instances).astype({"total_bedrooms": "float64"})
            )
        ]

    fake = FakeVertex(PROJECT, LOCATION, storage_client, predict)
    server, port = serve(fake, *trust_root)
    for key, value in {
        "PROJECT": PROJECT,
        "LOCATION": LOCATION,
        "BUCKET": BUCKET,
        "API_ENDPOINT": f"localhost:{port}",
        "ANONYMOUS": "true",
        "MODELS_DIR": str(models_dir),
        "SERVING_IMAGE": "europe-docker.pkg.dev/test-project/housing/serving:1",
        "TRAINER_IMAGE": "europe-docker.pkg.dev/test-project/housing/trainer:1",
    }.items():
        monkeypatch.setenv(f"HOUSING_VERTEX_{key}", value)
    if storage_client.lookup_bucket(BUCKET) is None:
        storage_client.create_bucket(BUCKET, location=LOCATION)
    yield fake
    server.stop(grace=None)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    """Run ``housing vertex ...`` in-process; (exit code, parsed stdout JSON or None, stderr)."""
    from core.cli import main

    code = main(["vertex", *argv])
    out, err = capsys.readouterr()
    try:
        payload = json.loads(out) if out.strip() else None
    except json.JSONDecodeError:
        payload = out
    return code, payload, err
