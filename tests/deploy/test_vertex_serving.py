"""The one-container serving image's start-up: a model version from AIP_STORAGE_URI (a real
GCS emulator process) installed into the repository, and a gateway routing only that model."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from core.errors import UserError
from deploy.local.models import fetch_storage_uri
from deploy.local.services import SERVICES, local_layout
from training.repository import ModelRepository


@pytest.fixture
def bucket(storage_emulator: str, monkeypatch: pytest.MonkeyPatch):
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", storage_emulator)
    client = storage.Client()
    name = f"bucket-{time.monotonic_ns()}"
    return client.create_bucket(name)


def upload_version(bucket, prefix: str, manifest: dict) -> None:
    bucket.blob(f"{prefix}/manifest.json").upload_from_string(json.dumps(manifest))
    bucket.blob(f"{prefix}/model.joblib").upload_from_string(b"bytes")
    bucket.blob(f"{prefix}/assets/extra.txt").upload_from_string(b"nested")


def test_storage_uri_version_is_installed_and_registered(bucket, tmp_path: Path) -> None:
    manifest = {"model": "housing_sklearn", "version": 7, "platform": "sklearn"}
    upload_version(bucket, "runs/models/housing_sklearn/7", manifest)
    uri = f"gs://{bucket.name}/runs/models/housing_sklearn/7"

    assert fetch_storage_uri(uri, tmp_path) == "housing_sklearn"

    version_dir = tmp_path / "housing_sklearn" / "7"
    assert json.loads((version_dir / "manifest.json").read_text()) == manifest
    assert (version_dir / "model.joblib").read_bytes() == b"bytes"
    assert (version_dir / "assets" / "extra.txt").read_bytes() == b"nested"
    repo = ModelRepository(tmp_path)
    assert repo.versions("housing_sklearn") == [7]
    [entry] = repo.read_config().model_config_list.config
    assert (entry.name, entry.model_platform) == ("housing_sklearn", "sklearn")
    # A restart with the same URI keeps the installed copy.
    assert fetch_storage_uri(uri, tmp_path) == "housing_sklearn"
    assert not (tmp_path / ".download").exists()


def test_storage_uri_errors(bucket, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no files under"):
        fetch_storage_uri(f"gs://{bucket.name}/nothing/here", tmp_path)
    bucket.blob("bare/model.joblib").upload_from_string(b"x")
    with pytest.raises(UserError, match="not a model version folder"):
        fetch_storage_uri(f"gs://{bucket.name}/bare", tmp_path)
    # The manifest's model name becomes a folder: a path in it is refused, nothing written.
    for name in ("../escaped", "/tmp/abs", ".."):
        upload_version(bucket, "evil", {"model": name, "version": 1, "platform": "sklearn"})
        with pytest.raises(UserError, match="invalid model name"):
            fetch_storage_uri(f"gs://{bucket.name}/evil", tmp_path / "models")
    assert not (tmp_path / "escaped").exists()
    assert not (tmp_path / "models").exists() or not any(
        p.name != ".models.config.lock" for p in (tmp_path / "models").iterdir()
    )


def test_gateway_routes_only_the_served_models(tmp_path: Path) -> None:
    layout = local_layout(tmp_path, tmp_path, served=("housing_keras",), bind="0.0.0.0")
    gateway = SERVICES["gateway"]
    command = layout.command(gateway)
    assert [arg for arg in command if arg.startswith("--upstream=")] == [
        "--upstream=housing_keras=127.0.0.1:8500"
    ]
    assert "--host=0.0.0.0" in command
    assert layout.environment(gateway)["HOUSING_DEFAULT_MODEL"] == "housing_keras"
    assert layout.health_path(SERVICES["model-server"]) == "/v1/models/housing_keras"
