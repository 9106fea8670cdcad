"""The job entry point: hypertune's metric file, and the SavedModel copied to AIP_MODEL_DIR."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deploy.vertex import trainer
from tests.vertex.conftest import BUCKET
from training.data import REPO_ROOT
from training.repository import ModelRepository
from training.schema import KERAS_MODEL


def publishing_trainer(calls: list[dict[str, Any]], metrics: dict[str, float]) -> Any:
    """A trainer with train_keras's calling convention that publishes a version folder."""

    def train_keras(
        models_dir: Path, epochs: int = 1, learning_rate: float = 1e-3, n_hidden: int = 1
    ) -> None:
        calls.append({"epochs": epochs, "learning_rate": learning_rate, "n_hidden": n_hidden})

        def write(folder: Path) -> dict[str, Any]:
            (folder / "saved_model.pb").write_bytes(b"\x08\x01")
            return {"framework": "keras", "metrics": metrics}

        ModelRepository(models_dir).publish(KERAS_MODEL, "tensorflow", write)

    return train_keras


def test_metric_file_has_hypertunes_format(tmp_path: Path, monkeypatch: Any) -> None:
    metric_file = tmp_path / "hypertune" / "output.metrics"
    monkeypatch.setenv("CLOUD_ML_HP_METRIC_FILE", str(metric_file))
    monkeypatch.setenv("CLOUD_ML_TRIAL_ID", "7")
    trainer.report_metric("val_rmse", 51234.5, step=20)
    trainer.report_metric("val_rmse", 50000, step=30)
    lines = [json.loads(line) for line in metric_file.read_text().splitlines()]
    assert len(lines) == 2
    assert set(lines[0]) == {"timestamp", "trial", "val_rmse", "global_step"}
    assert lines[0]["trial"] == "7" and lines[0]["val_rmse"] == "51234.5"
    assert lines[1]["global_step"] == "30" and isinstance(lines[1]["timestamp"], float)


def test_trial_trains_reports_and_exports_to_gcs(
    storage_client: Any, tmp_path: Path, monkeypatch: Any, capsys: Any
) -> None:
    monkeypatch.setenv("CLOUD_ML_HP_METRIC_FILE", str(tmp_path / "metrics"))
    monkeypatch.setenv("AIP_MODEL_DIR", f"gs://{BUCKET}/housing/jobs/j1/model/")
    if storage_client.lookup_bucket(BUCKET) is None:
        storage_client.create_bucket(BUCKET)
    calls: list[dict[str, Any]] = []
    # Vertex passes tuned parameters as --name=value; unknown ones are reported, not fatal.
    code = trainer.main(
        ["--epochs=4", "--learning_rate=0.01", "--n_hidden=3", "--optimizer=adam"],
        train_fn=publishing_trainer(calls, {"val_rmse": 48000.0, "test_rmse": 47000.0}),
    )
    assert code == 0
    assert calls == [{"epochs": 4, "learning_rate": 0.01, "n_hidden": 3}]
    out, err = capsys.readouterr()
    assert "optimizer" in err
    assert json.loads(out)["val_rmse"] == 48000.0
    (entry,) = [json.loads(x) for x in (tmp_path / "metrics").read_text().splitlines()]
    assert entry["val_rmse"] == "48000.0"
    names = {b.name for b in storage_client.list_blobs(BUCKET, prefix="housing/jobs/j1/model/")}
    assert names == {"housing/jobs/j1/model/saved_model.pb", "housing/jobs/j1/model/manifest.json"}


def test_no_validation_metric_fails_instead_of_tuning_on_the_test_set(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no validation RMSE"):
        trainer.main(
            ["--model-dir", str(tmp_path / "out")],
            train_fn=publishing_trainer([], {"test_rmse": 47000.0}),
        )


@pytest.mark.slow
def test_the_container_entry_point_runs_the_real_keras_trainer(
    storage_client: Any, storage_emulator: str, tmp_path: Path
) -> None:
    """What the CustomJob's container runs, as a process: real training, metric, gs:// export."""
    if storage_client.lookup_bucket(BUCKET) is None:
        storage_client.create_bucket(BUCKET)
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "STORAGE_EMULATOR_HOST": storage_emulator,
        "AIP_MODEL_DIR": f"gs://{BUCKET}/housing/jobs/real/model/",
        "CLOUD_ML_HP_METRIC_FILE": str(tmp_path / "output.metrics"),
        "CLOUD_ML_TRIAL_ID": "3",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "deploy.vertex.trainer",
            "--epochs=1",
            "--sample=500",
            "--n_hidden=2",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (entry,) = [json.loads(x) for x in (tmp_path / "output.metrics").read_text().splitlines()]
    assert entry["trial"] == "3" and float(entry["val_rmse"]) > 0
    names = {b.name for b in storage_client.list_blobs(BUCKET, prefix="housing/jobs/real/")}
    assert "housing/jobs/real/model/saved_model.pb" in names
    assert "housing/jobs/real/model/manifest.json" in names
