"""``housing vertex upload``: artifacts copied to GCS, Model.upload requests as built by the SDK."""

from __future__ import annotations

from typing import Any

from tests.vertex.conftest import BUCKET, LOCATION, PROJECT, run_cli


def test_sklearn_upload_uses_the_project_image_and_custom_container_routes(
    vertex: Any, storage_client: Any, capsys: Any
) -> None:
    code, result, _ = run_cli(capsys, "upload", "--model", "housing_sklearn", "--label", "stable")
    assert code == 0
    (request,) = vertex.requests("UploadModel")
    assert request.parent == f"projects/{PROJECT}/locations/{LOCATION}"
    model = request.model
    assert model.display_name == "housing_sklearn-v1"
    assert model.artifact_uri == f"gs://{BUCKET}/housing/models/housing_sklearn/1"
    assert model.container_spec.image_uri.endswith("/housing/serving:1")
    assert model.container_spec.predict_route == "/v1/models/housing_sklearn:predict"
    assert model.container_spec.health_route == "/readyz"
    assert [p.container_port for p in model.container_spec.ports] == [8000]
    # the gateway listens on every interface behind Vertex AI's own authentication
    env = {e.name: e.value for e in model.container_spec.env}
    assert env == {"HOUSING_ALLOW_UNAUTHENTICATED": "true"}
    assert dict(model.labels) == {"model": "housing_sklearn", "version": "1"}
    names = {b.name for b in storage_client.list_blobs(BUCKET, prefix="housing/models/")}
    assert {
        "housing/models/housing_sklearn/1/model.joblib",
        "housing/models/housing_sklearn/1/manifest.json",
    } <= names
    assert result["model"] == f"projects/{PROJECT}/locations/{LOCATION}/models/1001"


def test_keras_upload_uses_the_prebuilt_tensorflow_container(vertex: Any, capsys: Any) -> None:
    code, _, _ = run_cli(capsys, "upload", "--model", "housing_keras")
    assert code == 0
    (request,) = vertex.requests("UploadModel")
    spec = request.model.container_spec
    assert spec.image_uri == "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"
    assert not spec.predict_route
    assert request.model.artifact_uri.endswith("/housing/models/housing_keras/1")


def test_gpu_upload_picks_the_gpu_container(vertex: Any, capsys: Any) -> None:
    code, plan, _ = run_cli(
        capsys,
        "upload",
        "--model",
        "housing_keras",
        "--accelerator-type",
        "NVIDIA_TESLA_T4",
        "--dry-run",
    )
    assert code == 0
    kwargs = plan["steps"][1]["kwargs"]
    assert kwargs["serving_container_image_uri"].endswith("/tf2-gpu.2-15:latest")
    assert vertex.calls == []


def test_upload_dry_run_prints_the_plan_and_calls_nothing(
    vertex: Any, storage_client: Any, capsys: Any
) -> None:
    code, plan, _ = run_cli(capsys, "upload", "--model", "housing_sklearn", "--dry-run")
    assert code == 0
    assert plan["dry_run"] is True and plan["project"] == PROJECT
    assert [s["call"] for s in plan["steps"]] == [
        "storage.upload_folder",
        "aiplatform.Model.upload",
    ]
    assert "model.joblib" in plan["steps"][0]["kwargs"]["files"]
    assert vertex.calls == []


def test_sklearn_upload_without_serving_image_is_a_one_line_error(
    vertex: Any, capsys: Any, monkeypatch: Any
) -> None:
    monkeypatch.delenv("HOUSING_VERTEX_SERVING_IMAGE")
    code, _, err = run_cli(capsys, "upload", "--model", "housing_sklearn", "--dry-run")
    assert code == 2
    assert "HOUSING_VERTEX_SERVING_IMAGE" in err and len(err.strip().splitlines()) == 1


def test_unknown_version_is_a_one_line_error(vertex: Any, capsys: Any) -> None:
    code, _, err = run_cli(capsys, "upload", "--model", "housing_sklearn", "--version", "7")
    assert code == 2
    assert "no version 7" in err
