"""Train -> publish -> load in a fresh process -> predict; manifests; tampering; evaluate.

One small model (2,000 training rows, few boosting rounds) is trained once per session and
published into a temporary repository (``quick_sklearn``); the tests read it from there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.contract import FEATURES, SKLEARN_MODEL, TARGET
from pipelines.train_sklearn import train_sklearn
from training.data import features_and_target
from training.evaluation import rmse
from training.repository import (
    ChecksumMismatch,
    ModelRepository,
    load_sklearn_model,
    read_config_file,
)

pytestmark = pytest.mark.usefixtures("one_openmp_thread")


def test_results_and_manifest_have_the_shared_keys(quick_sklearn):
    assert quick_sklearn["model"] == SKLEARN_MODEL
    assert quick_sklearn["version"] == 1
    version_dir = Path(quick_sklearn["path"])
    manifest = json.loads((version_dir / "manifest.json").read_text())
    for key in (
        "model",
        "version",
        "platform",
        "created_at",
        "framework",
        "artifact",
        "data",
        "metrics",
        "hyperparameters",
        "libraries",
        "reference",
        "serving",
    ):
        assert key in manifest, key
    assert manifest["platform"] == "sklearn"
    assert manifest["metrics"] == quick_sklearn["metrics"]
    assert manifest["metrics"]["test_rows"] == 4_128
    low, high = manifest["metrics"]["test_rmse_ci95_t"]
    assert low < manifest["metrics"]["test_rmse"] < high
    assert manifest["artifact"]["size_bytes"] == (version_dir / "model.joblib").stat().st_size
    assert manifest["artifact"]["load_seconds"] > 0
    assert manifest["serving"]["predict_1_row_seconds"] > 0
    assert manifest["serving"]["predict_1000_rows_seconds"] > 0
    assert manifest["hyperparameters"]["train_rows"] == 2_000
    assert manifest["hyperparameters"]["neighbour_ks"] == [4, 16, 64]
    assert {"geo", "neighbours", "coordinates"} <= set(
        manifest["hyperparameters"]["feature_blocks"]
    )
    # A sampled, overridden run is not the CV-selected model: no CV evidence is claimed.
    assert "cv_rmse" not in manifest["metrics"]
    results = json.loads(Path(quick_sklearn["results_path"]).read_text())
    assert results["version"] == 1
    assert Path(quick_sklearn["results_path"]).is_relative_to(quick_sklearn["runs_dir"])


def test_reference_sample_and_models_config(quick_sklearn):
    version_dir = Path(quick_sklearn["path"])
    reference = pd.read_parquet(version_dir / "reference.parquet")
    assert len(reference) == 2_000
    assert list(reference.columns) == [*FEATURES, TARGET, "prediction"]
    assert np.isfinite(reference["prediction"]).all()
    config = read_config_file(quick_sklearn["models_dir"] / "models.config")
    entries = {c.name: c for c in config.model_config_list.config}
    assert entries[SKLEARN_MODEL].model_platform == "sklearn"
    assert entries[SKLEARN_MODEL].base_path == SKLEARN_MODEL


def test_fresh_process_loads_and_predicts_the_same(quick_sklearn, split, tmp_path):
    """The joblib artifact needs only importable modules (no __main__ pickling trap), and
    a fresh process scoring the full test split gets the manifest's test RMSE."""
    version_dir = Path(quick_sklearn["path"])
    X_test, y_test = features_and_target(split.test)  # noqa: N806
    in_process = load_sklearn_model(version_dir).predict(X_test[list(FEATURES)])
    out = tmp_path / "predictions.npy"
    script = textwrap.dedent(
        f"""
        import numpy as np
        from pathlib import Path
        from training.data import load_split, features_and_target
        from training.repository import load_sklearn_model
        from core.contract import FEATURES
        model = load_sklearn_model(Path({str(version_dir)!r}))
        X, _ = features_and_target(load_split().test)
        np.save({str(out)!r}, model.predict(X[list(FEATURES)]))
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", script], check=True, timeout=180, env=env)
    fresh = np.load(out)
    np.testing.assert_array_equal(fresh, in_process)
    assert rmse(y_test, fresh) == pytest.approx(quick_sklearn["metrics"]["test_rmse"], rel=1e-12)


def test_missing_bedrooms_and_unknown_category_still_predict(quick_sklearn, split):
    model = load_sklearn_model(Path(quick_sklearn["path"]))
    rows = split.test[list(FEATURES)].head(3).copy()
    rows["total_bedrooms"] = np.nan
    rows.loc[rows.index[1], "ocean_proximity"] = "ON THE MOON"
    predictions = model.predict(rows)
    assert predictions.shape == (3,)
    assert np.isfinite(predictions).all()


def test_model_behaves_sensibly_on_income(quick_sklearn, split):
    """Direction: the same district with a much higher income is predicted to be dearer."""
    model = load_sklearn_model(Path(quick_sklearn["path"]))
    rows = split.test[list(FEATURES)].head(200).copy()
    richer = rows.assign(median_income=rows["median_income"] * 3)
    assert np.mean(model.predict(richer)) > np.mean(model.predict(rows))


def test_tampered_artifact_is_refused(quick_sklearn, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(Path(quick_sklearn["path"]), copy)
    with open(copy / "model.joblib", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ChecksumMismatch):
        load_sklearn_model(copy)


def test_next_publish_is_version_two(quick_sklearn, split, tmp_path):
    """Publishing again into the same repository adds version 2 (a tiny forest here)."""
    models_dir = tmp_path / "models"
    import shutil

    shutil.copytree(quick_sklearn["models_dir"], models_dir)
    results = train_sklearn(
        models_dir,
        sample=500,
        n_jobs=1,
        runs_dir=tmp_path / "runs",
        model_type="forest",
        params={"n_estimators": 5},
        split=split,
    )
    assert results["version"] == 2
    assert ModelRepository(models_dir).versions(SKLEARN_MODEL) == [1, 2]
    assert results["hyperparameters"]["regressor"]["estimator"] == "RandomForestRegressor"
    assert results["hyperparameters"]["n_clusters"] == 45


def test_evaluate_scores_like_the_manifest(quick_sklearn, tmp_path):
    from pipelines.evaluate import evaluate

    results = evaluate(
        quick_sklearn["models_dir"], permutation_repeats=1, runs_dir=tmp_path / "runs"
    )
    assert results["version"] == 1
    assert results["metrics"]["test_rmse"] == pytest.approx(quick_sklearn["metrics"]["test_rmse"])
    categories = results["by_income_category"]
    assert [row["income_cat"] for row in categories] == [1, 2, 3, 4, 5]
    assert sum(row["rows"] for row in categories) == 4_128
    assert set(results["permutation_importances"]) == set(FEATURES)
    assert results["feature_importances"] is None  # boosting has no impurity importances
    assert Path(results["results_path"]).is_file()
