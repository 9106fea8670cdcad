"""Drift decisions on real data: unshifted samples pass, shifted ones are flagged."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.contract import CATEGORICAL_FEATURE, FEATURES
from service.monitoring.calibrate import p_values, scenario
from service.monitoring.drift import (
    COLUMN_P_VALUE,
    DriftInputError,
    chi2_homogeneity_p_value,
    compare,
)
from service.monitoring.simulate import shifted_rows
from training.data import Split


def test_random_test_split_sample_is_not_drift(split: Split, reference: pd.DataFrame) -> None:
    result = compare(reference, split.test.sample(1000, random_state=7))
    assert result.summary["dataset_drift"] is False
    assert not [n for n, c in result.summary["columns"].items() if c["drift_detected"]]


@pytest.mark.parametrize(("rows", "seed"), [(200, 11), (4000, 12)])
def test_unshifted_samples_of_other_sizes_are_not_drift(
    split: Split, reference: pd.DataFrame, rows: int, seed: int
) -> None:
    everything = pd.concat([split.train, split.test])
    assert compare(reference, everything.sample(rows, random_state=seed)).dataset_drift is False


def test_income_shift_is_flagged(reference: pd.DataFrame, income_shifted: pd.DataFrame) -> None:
    columns = compare(reference, income_shifted).summary["columns"]
    assert columns["median_income"]["drift_detected"] is True
    assert columns["median_income"]["score"] < 1e-10


def test_ocean_mix_is_flagged(reference: pd.DataFrame, ocean_shifted: pd.DataFrame) -> None:
    result = compare(reference, ocean_shifted)
    assert result.dataset_drift is True
    assert result.summary["columns"][CATEGORICAL_FEATURE]["drift_detected"] is True
    assert result.summary["columns"][CATEGORICAL_FEATURE]["method"] == "chi2_homogeneity"


def test_small_shifted_window_is_flagged(split: Split, reference: pd.DataFrame) -> None:
    assert compare(reference, shifted_rows(split.test, 200, "income", seed=5)).dataset_drift


def test_drift_json_shape(tmp_path, reference: pd.DataFrame, income_shifted) -> None:
    result = compare(reference, income_shifted, current_info={"source": "test"})
    json_path, html_path = result.save(tmp_path / "out")
    payload = json.loads(json_path.read_text())
    assert isinstance(payload["dataset_drift"], bool) and payload["dataset_drift"]
    assert payload["drift_share"] == pytest.approx(
        sum(c["drift_detected"] for c in payload["columns"].values()) / 9
    )
    assert set(payload["columns"]) == set(FEATURES)
    for column in payload["columns"].values():
        assert isinstance(column["drift_detected"], bool)
        assert isinstance(column["score"], float) and 0 <= column["score"] <= 1
        assert column["method"] in {"ks", "chi2_homogeneity"}
    assert payload["current"] == {"source": "test", "rows": 500}
    assert payload["reference"]["rows"] == len(reference)
    assert payload["thresholds"]["column_p_value"] == COLUMN_P_VALUE
    assert html_path.stat().st_size > 10_000 and "<html" in html_path.read_text()[:2000].lower()


def test_unshifted_windows_of_200_to_4000_rows_pass_and_shifted_ones_fail(
    split: Split, reference: pd.DataFrame
) -> None:
    """The report's own per-column tests (fast SciPy path) on windows of every size."""
    everything = pd.concat([split.train, split.test])
    cases = [("unshifted", rows, seed) for rows in (200, 500, 1000, 2000, 4000) for seed in (1, 2)]
    cases += [(name, rows, 3) for name in ("income x1.5", "60% INLAND") for rows in (200, 4000)]
    false_alarms, missed = [], []
    for name, rows, seed in cases:
        window = scenario(name, split, everything, rows, 100 + seed)
        drift = min(p_values(reference, window).values()) < COLUMN_P_VALUE
        if drift and name == "unshifted":
            false_alarms.append((rows, seed))
        if not drift and name != "unshifted":
            missed.append((name, rows, seed))
    assert false_alarms == [] and missed == []


def test_chi2_homogeneity_pools_rare_categories() -> None:
    reference = pd.Series(["<1H OCEAN"] * 900 + ["INLAND"] * 600 + ["NEAR BAY"] * 500)
    current = pd.Series(["<1H OCEAN"] * 90 + ["INLAND"] * 59 + ["NEAR BAY"] * 50 + ["ISLAND"])
    assert chi2_homogeneity_p_value(reference, current) > 0.5
    shifted = pd.Series(["<1H OCEAN"] * 50 + ["INLAND"] * 120 + ["NEAR BAY"] * 30)
    assert chi2_homogeneity_p_value(reference, shifted) < 1e-6


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns=["median_income", "ocean_proximity"]), "missing column"),
        (lambda f: f.iloc[:0], "empty"),
        (lambda f: f.iloc[:5], "at least 30"),
        (lambda f: f.assign(total_rooms="many"), "total_rooms has non-numeric"),
        (lambda f: f.assign(households=np.nan), "households has no values"),
    ],
)
def test_bad_current_data_is_a_clear_error(split: Split, reference, change, message) -> None:
    with pytest.raises(DriftInputError, match=message):
        compare(reference, change(split.test.head(100)))
