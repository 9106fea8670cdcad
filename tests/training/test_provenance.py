"""Provenance: each version records the rows it was actually fitted on, retrained
candidates repeat production's full configuration, and ``housing train`` is audited."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import joblib

from core.cli import main
from pipelines.promotion import read_audit
from pipelines.retrain import keras_configuration
from pipelines.train_sklearn import train_sklearn
from training.data import DATA_SHA256
from training.keras_models import ModelConfig
from training.provenance import frame_sha256
from training.repository import ModelRepository

MODEL = "housing_sklearn"


def test_frame_digest_is_the_rows_as_csv(split: Any) -> None:
    rows = split.train.head(50)
    text = rows.to_csv(index=False, lineterminator="\n")
    assert frame_sha256(rows) == hashlib.sha256(text.encode()).hexdigest()
    assert frame_sha256(rows) != frame_sha256(split.train.head(51))


def test_housing_train_records_its_sample_and_audits_the_publish(
    split: Any, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    argv = ["train", "sklearn", "--model-type", "linear", "--sample", "300"]
    assert main([*argv, "--models-dir", str(models), "--runs-dir", str(tmp_path)]) == 0
    data = ModelRepository(models).manifest(MODEL, 1)["data"]
    fitted = split.train.sample(n=300, random_state=42)
    assert data["train_rows"] == 300
    assert data["train_sha256"] == frame_sha256(fitted) != frame_sha256(split.train)
    assert data["test_rows"] == len(split.test)
    assert (data["source"], data["source_sha256"]) == ("data/housing.tgz", DATA_SHA256)
    (entry,) = read_audit(ModelRepository(models), MODEL)
    assert entry["action"] == "publish" and entry["version"] == 1
    assert entry["command"] == "housing train sklearn"


def test_keras_manifest_records_its_sample(published: Any, split: Any) -> None:
    data = json.loads((published.path / "manifest.json").read_text())["data"]
    assert data["train_rows"] == 2_000
    assert data["train_sha256"] != frame_sha256(split.train)


def test_retrained_candidate_repeats_production_and_records_its_data(
    split: Any, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    train_sklearn(
        models,
        model_type="tree",
        params={"random_state": 7},
        pipeline_params={"regressor__max_depth": 6, "regressor__min_samples_leaf": 3},
        sample=500,
        split=split,
        runs_dir=tmp_path,
    )
    fresh = split.train.sample(n=3_000, random_state=1)
    fresh.to_csv(tmp_path / "fresh.csv", index=False)
    argv = ["pipeline", "retrain", "--data", str(tmp_path / "fresh.csv")]
    assert main([*argv, "--models-dir", str(models), "--runs-dir", str(tmp_path)]) == 0

    repo = ModelRepository(models)
    production, candidate = (repo.manifest(MODEL, v) for v in (1, 2))
    for key in ("model_type", "params", "pipeline_params"):
        assert candidate["hyperparameters"][key] == production["hyperparameters"][key], key
    fitted = joblib.load(repo.version_dir(MODEL, 2) / "model.joblib")[-1]
    assert (fitted.max_depth, fitted.min_samples_leaf, fitted.random_state) == (6, 3, 7)
    data = candidate["data"]
    assert data["source"] == str(tmp_path / "fresh.csv") and "source_sha256" not in data
    assert data["train_rows"] == 3_000  # none of these rows is in the book's test split
    assert data["train_sha256"] != production["data"]["train_sha256"]


def test_keras_retrain_configuration_is_the_manifests(published: Any) -> None:
    manifest = json.loads((published.path / "manifest.json").read_text())
    hyperparameters = manifest["hyperparameters"]

    class Args:
        epochs = None

    options = keras_configuration(hyperparameters, Args())
    config = ModelConfig(arch=options["arch"], **options["overrides"]).as_dict()
    expected = {k: hyperparameters[k] for k in config}
    assert json.loads(json.dumps(config)) == expected
    assert options["epochs"] == hyperparameters["epochs"]
    assert options["batch_size"] == hyperparameters["batch_size"]
    Args.epochs = 3
    assert keras_configuration(hyperparameters, Args())["epochs"] == 3
