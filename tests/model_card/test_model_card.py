"""Model cards: written at training time, numbers recomputed independently, the CLI's errors."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest

from core.cli import main
from core.contract import FEATURES, TARGET
from load_tests.models import (
    publish_sklearn,
    publish_tiny_savedmodel,
    small_sklearn,
    tiny_savedmodel_formula,
)
from pipelines import model_card
from pipelines.train_sklearn import train_sklearn
from training.repository import (
    CARD_DIR,
    ModelRepository,
    load_sklearn_model,
    read_manifest,
    tree_sha256,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def trained(split, tmp_path_factory):
    """One small linear housing_sklearn version, trained the ordinary way (card included)."""
    root = tmp_path_factory.mktemp("card")
    results = train_sklearn(
        root / "models", model_type="linear", sample=2_000, split=split, runs_dir=root / "runs"
    )
    return root / "models", results


def card_of(models, version: int = 1, name: str = "housing_sklearn") -> dict:
    return json.loads((models / name / str(version) / CARD_DIR / "card.json").read_text())


def test_training_writes_the_card_next_to_the_manifest(trained):
    models, results = trained
    folder = models / "housing_sklearn" / "1" / CARD_DIR
    assert results["card"] == str(folder / "card.md")
    md = (folder / "card.md").read_text()
    for stem in re.findall(r"\]\(([a-z_]+)\.png\)", md):
        assert (folder / f"{stem}.png").read_bytes().startswith(PNG_SIGNATURE)
    assert "predicted_vs_actual.png" in md and "## Limitations" in md
    html = (folder / "card.html").read_text()
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(images) == 4
    assert all(base64.b64decode(data).startswith(PNG_SIGNATURE) for data in images)
    card = card_of(models)
    assert card["metrics"]["test_rmse"] == pytest.approx(results["metrics"]["test_rmse"])
    assert (
        card["provenance"]["artifact_sha256"] == read_manifest(folder.parent)["artifact"]["sha256"]
    )
    assert set(card["permutation_importances"]) == set(FEATURES)
    assert card["serving"]["artifact_size_bytes"] == results["artifact"]["size_bytes"]
    assert card["serving"]["train_seconds"] is not None


def test_card_slices_match_an_independent_computation(trained, split):
    models, _ = trained
    card = card_of(models)
    model = load_sklearn_model(models / "housing_sklearn" / "1")
    test = split.test
    predicted = model.predict(test[list(FEATURES)])
    actual = test[TARGET].to_numpy()

    def rmse(mask):
        return float(np.sqrt(np.mean((predicted[mask] - actual[mask]) ** 2)))

    for row in card["by_ocean_proximity"]:
        mask = (test["ocean_proximity"] == row["ocean_proximity"]).to_numpy()
        assert row["rows"] == mask.sum()
        assert row["rmse"] == pytest.approx(rmse(mask))
    assert sum(r["rows"] for r in card["by_ocean_proximity"]) == len(test)
    income_cat = np.digitize(test["median_income"], [1.5, 3.0, 4.5, 6.0], right=True) + 1
    for row in card["by_income_category"]:
        mask = income_cat == row["income_cat"]
        assert row["rmse"] == pytest.approx(rmse(mask))
        assert row["bias"] == pytest.approx(float(np.mean(predicted[mask] - actual[mask])))
    at_cap = actual >= 500_001
    assert card["capped_target"]["at_cap"]["rows"] == at_cap.sum() > 0
    assert card["capped_target"]["at_cap"]["rmse"] == pytest.approx(rmse(at_cap))
    assert card["capped_target"]["below_cap"]["rmse"] == pytest.approx(rmse(~at_cap))


def test_predicted_vs_actual_figure_plots_the_predictions():
    actual = np.array([100_000.0, 200_000.0, 500_001.0])
    predicted = np.array([110_000.0, 190_000.0, 420_000.0])
    figure = model_card.predicted_vs_actual_figure(actual, predicted)
    points = figure.axes[0].collections[0].get_offsets()
    assert np.asarray(points).tolist() == np.column_stack([actual, predicted]).tolist()


def test_model_card_command_defaults_to_the_stable_version(trained, split, capsys):
    models, _ = trained
    repository = ModelRepository(models)
    assert publish_sklearn(repository, small_sklearn(split.train, rows=500, trees=2)) == 2
    repository.set_label("housing_sklearn", "stable", 1)
    card_path = models / "housing_sklearn" / "1" / CARD_DIR / "card.json"
    card_path.unlink()
    command = ["model-card", "housing_sklearn", "--models-dir", str(models)]
    assert main([*command, "--permutation-repeats", "1"]) == 0
    assert "housing_sklearn version 1" in capsys.readouterr().out
    assert card_path.is_file()


@pytest.mark.parametrize(
    ("spec", "message"),
    [("housing_sklearn:9", "has no version '9'"), ("nope", "no versions of 'nope'")],
)
def test_model_card_command_names_what_is_wrong(trained, capsys, spec, message):
    models, _ = trained
    assert main(["model-card", spec, "--models-dir", str(models)]) == 2
    assert message in capsys.readouterr().err


def test_a_savedmodel_card_leaves_the_artifact_checksum_alone(split, tmp_path):
    repository = ModelRepository(tmp_path)
    version = publish_tiny_savedmodel(repository)
    version_dir = repository.version_dir("housing_keras", version)
    before = tree_sha256(version_dir)
    folder = model_card.write_card(tmp_path, "housing_keras", version, 1, split.test.iloc[:1500])
    assert (folder / "card.html").is_file()
    assert tree_sha256(version_dir) == before == read_manifest(version_dir)["artifact"]["sha256"]
    card = card_of(tmp_path, version, "housing_keras")
    # The tiny model is a known formula: the card's RMSE is that formula's, computed here.
    test = split.test.iloc[:1500]
    expected = np.sqrt(np.mean((tiny_savedmodel_formula(test) - test[TARGET]) ** 2))
    assert card["metrics"]["test_rmse"] == pytest.approx(expected, rel=1e-5)
    assert card["serving"]["predict_latency"]["predict_1_row_seconds"] > 0
