"""bucket on the storage emulator, --dry-run of every subcommand, and credential errors."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.vertex.conftest import LOCATION, PROJECT, run_cli


def test_bucket_is_created_then_reused(vertex: Any, storage_client: Any, capsys: Any) -> None:
    code, first, _ = run_cli(capsys, "bucket", "--bucket", "gs://fresh-housing-bucket")
    assert code == 0 and first == {
        "operation": "bucket",
        "bucket": "gs://fresh-housing-bucket",
        "created": True,
    }
    assert storage_client.lookup_bucket("fresh-housing-bucket") is not None
    code, second, _ = run_cli(capsys, "bucket", "--bucket", "fresh-housing-bucket")
    assert code == 0 and second["created"] is False


DRY_RUNS = {
    "bucket": ([], ["storage.Client.create_bucket"]),
    "upload": (
        ["--model", "housing_keras"],
        ["storage.upload_folder", "aiplatform.Model.list", "aiplatform.Model.upload"],
    ),
    "deploy": (
        ["--model", "42", "--traffic-percentage", "10"],
        ["aiplatform.Endpoint.create", "aiplatform.Model", "Model.deploy"],
    ),
    "predict": (
        ["--endpoint", "7", "--instances", "INSTANCES", "--model-name", "housing_keras"],
        ["aiplatform.Endpoint", "Endpoint.predict", "output.rows"],
    ),
    "batch-predict": (
        [
            *("--model", "42", "--input", "INSTANCES", "--output", "out.parquet"),
            *("--model-name", "housing_sklearn"),
        ],
        [
            "storage.upload_jsonl",
            "aiplatform.Model",
            "Model.batch_predict",
            "output.merge_results",
        ],
    ),
    "train": (["--epochs", "3"], ["aiplatform.CustomJob", "CustomJob.submit"]),
    "tune": (
        ["--max-trials", "4"],
        [
            "aiplatform.CustomJob",
            "aiplatform.HyperparameterTuningJob",
            "JobServiceClient.create_hyperparameter_tuning_job",
        ],
    ),
    "undeploy": (["--endpoint", "7"], ["aiplatform.Endpoint", "Endpoint.undeploy_all"]),
    "cleanup": (
        ["--endpoint", "7", "--batch-job", "9", "--blobs"],
        [
            "aiplatform.Endpoint",
            "Endpoint.undeploy_all",
            "Endpoint.delete",
            "aiplatform.BatchPredictionJob",
            "BatchPredictionJob.delete",
            "storage.delete_prefix",
            "storage.delete_prefix",
        ],
    ),
}


@pytest.mark.parametrize("command", sorted(DRY_RUNS))
def test_every_subcommand_has_a_dry_run_that_touches_nothing(
    command: str, vertex: Any, storage_client: Any, capsys: Any, split: Any, tmp_path: Path
) -> None:
    instances = tmp_path / "instances.csv"
    split.test.head(2).to_csv(instances, index=False)
    argv, calls = DRY_RUNS[command]
    argv = [str(instances) if a == "INSTANCES" else a for a in argv]
    blobs_before = [b.name for b in storage_client.list_blobs("housing-test-bucket")]
    code, plan, err = run_cli(capsys, command, *argv, "--dry-run")
    assert code == 0, err
    assert plan["dry_run"] is True
    assert (plan["operation"], plan["project"], plan["location"]) == (command, PROJECT, LOCATION)
    assert [step["call"] for step in plan["steps"]] == calls
    json.dumps(plan)  # plain JSON all the way down
    assert vertex.calls == []
    assert [b.name for b in storage_client.list_blobs("housing-test-bucket")] == blobs_before


def test_missing_project_names_the_setting(capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("HOUSING_VERTEX_PROJECT", raising=False)
    code, _, err = run_cli(capsys, "bucket", "--bucket", "b", "--dry-run")
    assert code == 2 and "HOUSING_VERTEX_PROJECT" in err


def test_missing_credentials_give_one_line_naming_what_to_set(
    vertex: Any, capsys: Any, monkeypatch: Any, tmp_path: Path
) -> None:
    monkeypatch.delenv("HOUSING_VERTEX_ANONYMOUS")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    code, out, err = run_cli(capsys, "bucket")
    assert code == 2 and out is None
    assert err.count("\n") == 1 and err.startswith("housing: error: no usable Google Cloud")
    assert "GOOGLE_APPLICATION_CREDENTIALS" in err
    assert "gcloud auth application-default login" in err
    assert vertex.calls == []


class TokenRefusal(BaseHTTPRequestHandler):
    """An OAuth token endpoint that refuses every grant, like Google's for a revoked key."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"error": "invalid_grant", "error_description": "Invalid JWT"})
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


def test_rejected_credentials_give_one_line(
    vertex: Any, capsys: Any, monkeypatch: Any, tmp_path: Path
) -> None:
    server = HTTPServer(("127.0.0.1", 0), TokenRefusal)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    key_file = tmp_path / "key.json"
    key_file.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": PROJECT,
                "private_key_id": "k1",
                "private_key": pem,
                "client_email": f"revoked@{PROJECT}.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": f"http://127.0.0.1:{server.server_port}/token",
            }
        )
    )
    monkeypatch.delenv("HOUSING_VERTEX_ANONYMOUS")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    try:
        code, _, err = run_cli(capsys, "upload", "--model", "housing_keras")
    finally:
        server.shutdown()
    assert code == 2 and err.count("\n") == 1
    assert "credentials were rejected" in err and "GOOGLE_APPLICATION_CREDENTIALS" in err
    assert "BEGIN PRIVATE KEY" not in err


def test_malformed_key_file_is_a_one_line_error(
    vertex: Any, capsys: Any, monkeypatch: Any, tmp_path: Path
) -> None:
    bad = tmp_path / "key.json"
    bad.write_text("{not json")
    monkeypatch.delenv("HOUSING_VERTEX_ANONYMOUS")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(bad))
    code, _, err = run_cli(capsys, "bucket")
    assert code == 2 and err.count("\n") == 1 and "GOOGLE_APPLICATION_CREDENTIALS" in err


def test_help_documents_every_subcommand(capsys: Any) -> None:
    from core.cli import main

    with pytest.raises(SystemExit):
        main(["vertex", "--help"])
    out = capsys.readouterr().out
    for command in DRY_RUNS:
        assert command in out
