"""Fixtures: a real GCS emulator process, a local TLS Vertex API, a tiny model repository."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.vertex.fake_vertex import FakeVertex, self_signed_cert, serve
from training.repository import ModelRepository

PROJECT = "test-project"
LOCATION = "europe-west1"
BUCKET = "housing-test-bucket"


@pytest.fixture(scope="session")
def trust_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """A localhost certificate that gRPC trusts for this test process."""
    key_pem, cert_pem, path = self_signed_cert(tmp_path_factory.mktemp("tls"))
    # Read by gRPC core when it first builds SSL credentials from the default roots.
    os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(path)
    return key_pem, cert_pem


@pytest.fixture(scope="session")
def small_model(split: Any) -> Any:
    """The book's preprocessing + LinearRegression on a 2,000-row sample (fast, real)."""
    from load_tests.models import small_sklearn

    return small_sklearn(split.train, trees=0, seed=0)


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


def upload(capsys: pytest.CaptureFixture[str], model: str = "housing_sklearn") -> str:
    """``housing vertex upload --model MODEL``; the Vertex model's resource name."""
    code, result, _ = run_cli(capsys, "upload", "--model", model)
    assert code == 0
    return result["model"]
