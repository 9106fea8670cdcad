"""The retraining loop end to end on real (small, fast) models: validate, train, compare,
promote or not. The production configuration is a LinearRegression pipeline so each
candidate trains in seconds; the decision logic is the same for any model type."""

import json
from pathlib import Path

import numpy as np
import pytest

from core.cli import main
from pipelines.train_sklearn import train_sklearn
from training.repository import ModelRepository

MODEL = "housing_sklearn"


def retrain(data: Path, models: Path, runs: Path, *extra: str) -> int:
    return main(
        [
            "pipeline",
            "retrain",
            "--data",
            str(data),
            "--models-dir",
            str(models),
            "--runs-dir",
            str(runs),
            *extra,
        ]
    )


def last_results(runs: Path) -> dict:
    (path,) = sorted(runs.glob("retrain/*/results.json"))[-1:]
    return json.loads(path.read_text())


@pytest.fixture
def workdir(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "models", tmp_path / "runs"


def test_bad_new_data_stops_before_training(split, workdir, tmp_path, capsys):
    models, runs = workdir
    train_sklearn(models, model_type="linear", sample=2_000, split=split, runs_dir=runs)
    bad = split.train.drop(columns=["median_income"])
    bad.to_csv(tmp_path / "bad.csv", index=False)
    assert retrain(tmp_path / "bad.csv", models, runs) == 2
    assert "failed validation" in capsys.readouterr().err
    assert ModelRepository(models).versions(MODEL) == [1]
    report = (sorted(runs.glob("retrain/*/report.md"))[-1]).read_text()
    assert "missing columns: median_income" in report


def test_a_better_candidate_is_promoted(split, workdir, tmp_path):
    models, runs = workdir
    train_sklearn(models, model_type="linear", sample=60, split=split, runs_dir=runs)
    split.train.to_csv(tmp_path / "fresh.csv", index=False)
    assert retrain(tmp_path / "fresh.csv", models, runs, "--tolerance", "0") == 0
    results = last_results(runs)
    assert results["status"] == "promoted"
    assert (
        results["candidate"]["metrics"]["test_rmse"] < results["production"]["metrics"]["test_rmse"]
    )
    assert results["train_rows"] == len(split.train)
    assert ModelRepository(models).labels(MODEL) == {"stable": 2}
    assert (Path(results["run_dir"]) / "report.md").read_text().count("| candidate | 2 |") == 1


def test_a_worse_candidate_is_labelled_candidate_not_stable(split, workdir, tmp_path):
    models, runs = workdir
    train_sklearn(models, model_type="linear", split=split, runs_dir=runs)
    noisy = split.train.sample(n=1_000, random_state=0).copy()
    noisy["median_house_value"] = np.random.default_rng(0).permutation(
        noisy["median_house_value"].to_numpy()
    )
    noisy.to_csv(tmp_path / "noisy.csv", index=False)
    assert retrain(tmp_path / "noisy.csv", models, runs) == 0
    results = last_results(runs)
    assert results["status"] == "not promoted" and "worse than production" in results["reason"]
    assert "next config poll" in results["applied"]
    repo = ModelRepository(models)
    assert repo.labels(MODEL) == {"stable": 1, "candidate": 2}
    assert repo.manifest(MODEL, 2)["hyperparameters"]["model_type"] == "linear"


def test_a_negative_tolerance_is_refused(split, workdir, tmp_path, capsys):
    models, runs = workdir
    split.train.head(10).to_csv(tmp_path / "fresh.csv", index=False)
    assert retrain(tmp_path / "fresh.csv", models, runs, "--tolerance", "-1") == 2
    assert "--tolerance" in capsys.readouterr().err


def test_test_split_rows_never_reach_the_candidate(split, workdir, tmp_path):
    models, runs = workdir
    train_sklearn(models, model_type="linear", sample=2_000, split=split, runs_dir=runs)
    leaky = split.train.sample(n=1_500, random_state=1)
    leaky = __import__("pandas").concat([leaky, split.test.head(500)])
    leaky.to_csv(tmp_path / "leaky.csv", index=False)
    assert retrain(tmp_path / "leaky.csv", models, runs) == 0
    assert last_results(runs)["train_rows"] == 1_500


def test_keras_candidate_keeps_the_production_architecture(split, workdir, tmp_path):
    from pipelines.train_keras import train_keras

    models, runs = workdir
    train_keras(models, arch="wide_deep", epochs=1, sample=1_000, split=split, runs_dir=runs)
    split.train.sample(n=1_200, random_state=3).to_csv(tmp_path / "fresh.csv", index=False)
    # One epoch on 1,200 rows may land either side of production: a tolerance of 100x makes
    # the decision certain, so the test checks the promoted path, not a coin toss.
    args = ["--model", "housing_keras", "--epochs", "1", "--tolerance", "100"]
    assert retrain(tmp_path / "fresh.csv", models, runs, *args) == 0
    results = last_results(runs)
    assert results["status"] == "promoted" and results["label"] == "stable"
    assert results["candidate"]["version"] == 2 and results["production"]["version"] == 1
    assert "the highest version its policy serves" in results["production_chosen_by"]
    repo = ModelRepository(models)
    assert repo.manifest("housing_keras", 2)["hyperparameters"]["arch"] == "wide_deep"
    assert repo.labels("housing_keras") == {"stable": 2}
