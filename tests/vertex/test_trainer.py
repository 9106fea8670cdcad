"""The job entry point: hypertune's metric file, and the SavedModel copied to AIP_MODEL_DIR."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from deploy.vertex import trainer
from tests.commands import run_python
from tests.vertex.conftest import BUCKET


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


def test_no_validation_metric_fails_instead_of_tuning_on_the_test_set() -> None:
    with pytest.raises(SystemExit, match="no validation RMSE"):
        trainer.validation_rmse({"metrics": {"test_rmse": 47000.0}})


def test_tuned_parameters_map_to_the_keras_settings() -> None:
    from training.keras_models import ModelConfig

    assert set(trainer.TUNED_FIELDS.values()) <= set(ModelConfig.__dataclass_fields__)


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
    done = run_python(
        "-m",
        "deploy.vertex.trainer",
        "--epochs=1",
        "--sample=500",
        "--n_hidden=2",
        "--n_neurons=17",
        "--learning_rate=0.002",
        "--optimizer=sgd",
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (entry,) = [json.loads(x) for x in (tmp_path / "output.metrics").read_text().splitlines()]
    assert entry["trial"] == "3" and float(entry["val_rmse"]) > 0
    names = {b.name for b in storage_client.list_blobs(BUCKET, prefix="housing/jobs/real/")}
    assert "housing/jobs/real/model/saved_model.pb" in names
    assert "housing/jobs/real/model/manifest.json" in names
    blob = storage_client.bucket(BUCKET).blob("housing/jobs/real/model/manifest.json")
    tuned = json.loads(blob.download_as_text())["hyperparameters"]
    assert (tuned["hidden_layers"], tuned["units"]) == (2, 17)
    assert (tuned["learning_rate"], tuned["optimizer"]) == (0.002, "sgd")
