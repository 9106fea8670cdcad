"""``housing vertex upload``: artifacts copied to GCS, Model.upload requests as built by the SDK.

One registry Model per model name: the first upload creates it, later uploads add versions
to it (``parent_model``), and the version's labels in our repository become its aliases.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from deploy.vertex.operations import STARTUP_PROBE
from tests.vertex.conftest import BUCKET, LOCATION, PROJECT, run_cli
from training.repository import ModelRepository

SERVING_IMAGE = "europe-docker.pkg.dev/test-project/housing/serving:1"


@pytest.fixture
def two_versions(models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the repository where housing_sklearn v2 is the latest and v1 is ``stable``."""
    root = tmp_path / "models"
    shutil.copytree(models_dir, root)
    shutil.copytree(root / "housing_sklearn" / "1", root / "housing_sklearn" / "2")
    manifest = root / "housing_sklearn" / "2" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"version": 1', '"version": 2'))
    monkeypatch.setenv("HOUSING_VERTEX_MODELS_DIR", str(root))
    return root


def test_sklearn_upload_uses_the_project_image_and_custom_container_routes(
    vertex: Any, storage_client: Any, capsys: Any
) -> None:
    code, result, _ = run_cli(capsys, "upload", "--model", "housing_sklearn", "--label", "stable")
    assert code == 0
    (request,) = vertex.requests("UploadModel")
    assert request.parent == f"projects/{PROJECT}/locations/{LOCATION}"
    assert not request.parent_model, "the first upload creates the registry Model"
    model = request.model
    assert model.display_name == "housing_sklearn"
    assert model.artifact_uri == f"gs://{BUCKET}/housing/models/housing_sklearn/1"
    assert model.container_spec.image_uri == SERVING_IMAGE
    assert model.container_spec.predict_route == "/v1/models/housing_sklearn:predict"
    assert model.container_spec.health_route == "/readyz"
    assert [p.container_port for p in model.container_spec.ports] == [8000]
    # the gateway listens on every interface behind Vertex AI's own authentication
    env = {e.name: e.value for e in model.container_spec.env}
    assert env == {"HOUSING_ALLOW_UNAUTHENTICATED": "true"}
    probe = model.container_spec.startup_probe
    assert list(probe.exec_.command) == STARTUP_PROBE and probe.period_seconds == 10
    assert "/readyz" in STARTUP_PROBE[-1]
    assert dict(model.labels) == {"model": "housing_sklearn", "version": "1"}
    assert set(model.version_aliases) == {"stable", "default"}
    names = {b.name for b in storage_client.list_blobs(BUCKET, prefix="housing/models/")}
    assert {
        "housing/models/housing_sklearn/1/model.joblib",
        "housing/models/housing_sklearn/1/manifest.json",
    } <= names
    assert result["model"] == f"projects/{PROJECT}/locations/{LOCATION}/models/1001"
    assert result["version"] == 1 and result["new_registry_model"] is True


def test_default_is_the_stable_version_not_the_latest(
    vertex: Any, two_versions: Path, capsys: Any
) -> None:
    assert ModelRepository(two_versions).latest_version("housing_sklearn") == 2
    code, plan, _ = run_cli(capsys, "upload", "--model", "housing_sklearn", "--dry-run")
    assert code == 0
    assert plan["version"] == 1
    upload = plan["steps"][2]["kwargs"]
    assert upload["artifact_uri"].endswith("/housing_sklearn/1")
    assert upload["version_aliases"] == ["stable"] and upload["is_default_version"] is True


def test_later_uploads_are_versions_of_one_registry_model(
    vertex: Any, two_versions: Path, capsys: Any
) -> None:
    assert run_cli(capsys, "upload", "--model", "housing_sklearn")[0] == 0
    ModelRepository(two_versions).set_label("housing_sklearn", "canary", 2)
    code, result, _ = run_cli(capsys, "upload", "--model", "housing_sklearn", "--version", "2")
    assert code == 0
    first, second = vertex.requests("UploadModel")
    assert second.parent_model == result["model"] == f"{first.parent}/models/1001"
    assert list(second.model.version_aliases) == ["canary"]
    assert result["vertex_version_id"] == "2" and result["new_registry_model"] is False
    # Vertex's view: one Model with two versions; stable stays the default.
    (versions,) = vertex.versions.values()
    assert [(v.version_id, sorted(v.version_aliases)) for v in versions] == [
        ("1", ["default", "stable"]),
        ("2", ["canary"]),
    ]


def test_keras_upload_runs_on_the_project_image_with_the_exporters_tensorflow(
    vertex: Any, capsys: Any
) -> None:
    code, _, _ = run_cli(capsys, "upload", "--model", "housing_keras")
    assert code == 0
    (request,) = vertex.requests("UploadModel")
    spec = request.model.container_spec
    assert spec.image_uri == SERVING_IMAGE
    assert spec.predict_route == "/v1/models/housing_keras:predict"
    assert request.model.artifact_uri.endswith("/housing/models/housing_keras/1")


def test_keras_serving_image_overrides_the_container(vertex: Any, capsys: Any) -> None:
    image = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-21:latest"
    code, plan, _ = run_cli(
        capsys, "upload", "--model", "housing_keras", "--keras-serving-image", image, "--dry-run"
    )
    assert code == 0
    upload = plan["steps"][2]["kwargs"]
    assert upload["serving_container_image_uri"] == image
    assert "serving_container_predict_route" not in upload


def test_upload_dry_run_prints_the_plan_and_calls_nothing(
    vertex: Any, storage_client: Any, capsys: Any
) -> None:
    code, plan, _ = run_cli(capsys, "upload", "--model", "housing_sklearn", "--dry-run")
    assert code == 0
    assert plan["dry_run"] is True and plan["project"] == PROJECT
    assert [s["call"] for s in plan["steps"]] == [
        "storage.upload_folder",
        "aiplatform.Model.list",
        "aiplatform.Model.upload",
    ]
    assert plan["steps"][1]["kwargs"]["filter"] == 'display_name="housing_sklearn"'
    assert "model.joblib" in plan["steps"][0]["kwargs"]["files"]
    assert vertex.calls == []


def test_upload_without_serving_image_is_a_one_line_error(
    vertex: Any, capsys: Any, monkeypatch: Any
) -> None:
    monkeypatch.delenv("HOUSING_VERTEX_SERVING_IMAGE")
    for model in ("housing_sklearn", "housing_keras"):
        code, _, err = run_cli(capsys, "upload", "--model", model, "--dry-run")
        assert code == 2
        assert "HOUSING_VERTEX_SERVING_IMAGE" in err and len(err.strip().splitlines()) == 1


def test_unknown_version_is_a_one_line_error(vertex: Any, capsys: Any) -> None:
    code, _, err = run_cli(capsys, "upload", "--model", "housing_sklearn", "--version", "7")
    assert code == 2
    assert "no version 7" in err
