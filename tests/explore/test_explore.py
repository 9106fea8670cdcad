"""``housing data explore``: the figures and tables come from the data, checked independently."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from core.cli import main
from core.contract import NUMERIC_FEATURES, TARGET
from pipelines import explore, figures

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def housing(split) -> pd.DataFrame:
    return pd.concat([split.train, split.test]).sort_index()


@pytest.fixture(scope="module")
def numbers(housing) -> dict:
    return explore.explore_numbers(housing)


def test_histograms_count_the_training_split(numbers, split):
    for name in (*NUMERIC_FEATURES, TARGET):
        values = split.train[name].dropna().to_numpy()
        counts, edges = np.histogram(values, bins=explore.HISTOGRAM_BINS)
        assert numbers["histograms"][name]["counts"] == counts.tolist(), name
        assert numbers["histograms"][name]["edges"] == pytest.approx(edges.tolist())
        assert sum(numbers["histograms"][name]["counts"]) == len(values)
    assert (
        numbers["histograms"]["total_bedrooms"]["missing"]
        == split.train["total_bedrooms"].isna().sum()
    )
    assert numbers["rows"]["train"] == len(split.train) == 16_512


def test_histogram_figure_draws_those_counts(numbers):
    figure = explore.histogram_figure(numbers)
    axes = figure.axes
    for ax, name in zip(axes, explore.NUMERIC_COLUMNS, strict=False):
        assert ax.get_title() == name
        heights, edges, _ = ax.patches[0].get_data()
        assert heights.tolist() == numbers["histograms"][name]["counts"]
        assert edges.tolist() == pytest.approx(numbers["histograms"][name]["edges"])
    bars = axes[len(explore.NUMERIC_COLUMNS)].patches
    assert [bar.get_height() for bar in bars] == list(numbers["ocean_proximity_counts"].values())


def test_income_proportions_table_matches_an_independent_computation(numbers, housing):
    def shares(frame: pd.DataFrame) -> np.ndarray:
        cats = np.digitize(frame["median_income"], [1.5, 3.0, 4.5, 6.0], right=True)
        return np.bincount(cats, minlength=5) / len(frame)

    strata = np.digitize(housing["median_income"], [1.5, 3.0, 4.5, 6.0], right=True)
    _, strat_test = train_test_split(housing, test_size=0.2, stratify=strata, random_state=42)
    _, rand_test = train_test_split(housing, test_size=0.2, random_state=42)
    overall, strat, rand = shares(housing), shares(strat_test), shares(rand_test)
    table = numbers["income_category_proportions"]
    assert [row["income_cat"] for row in table] == [1, 2, 3, 4, 5]
    for i, row in enumerate(table):
        assert row["overall_pct"] == pytest.approx(100 * overall[i])
        assert row["stratified_pct"] == pytest.approx(100 * strat[i])
        assert row["random_pct"] == pytest.approx(100 * rand[i])
        assert row["random_error_pct"] == pytest.approx(100 * (rand[i] / overall[i] - 1))
    # The book's point: stratification keeps every category within 0.5% of the overall share.
    assert max(abs(r["stratified_error_pct"]) for r in table) < 0.5
    assert max(abs(r["random_error_pct"]) for r in table) > 3


def test_capped_values_are_the_maxima_many_districts_share(numbers, split):
    capped = {row["column"]: row for row in numbers["capped_values"]}
    for name in ("housing_median_age", "median_house_value", "median_income"):
        top = split.train[name].max()
        assert capped[name]["max"] == top
        assert capped[name]["rows_at_max"] == (split.train[name] == top).sum()
        assert capped[name]["capped"], name
    assert capped[TARGET]["max"] == 500_001
    assert not capped["longitude"]["capped"] and not capped["population"]["capped"]


def test_correlations_and_scatter_matrix_attributes(numbers, split):
    corr = numbers["correlations_with_price"]
    price = split.train[TARGET]
    assert corr["median_income"] == pytest.approx(split.train["median_income"].corr(price))
    ratio = split.train["total_bedrooms"] / split.train["total_rooms"]
    assert corr["bedrooms_ratio"] == pytest.approx(ratio.corr(split.train[TARGET]))
    by_abs = sorted(NUMERIC_FEATURES, key=lambda n: -abs(split.train[n].corr(split.train[TARGET])))
    assert numbers["scatter_matrix_attributes"] == by_abs[:3]


def test_figures_are_deterministic(numbers):
    first = figures.png_bytes(explore.histogram_figure(numbers))
    second = figures.png_bytes(explore.histogram_figure(numbers))
    assert first.startswith(PNG_SIGNATURE)
    assert first == second


def test_cli_writes_one_self_contained_report(tmp_path):
    assert main(["data", "explore", "--output-dir", str(tmp_path)]) == 0
    html = (tmp_path / "explore.html").read_text()
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(images) == 5
    assert all(base64.b64decode(data).startswith(PNG_SIGNATURE) for data in images)
    assert "src='http" not in html and "<script" not in html
    numbers = json.loads((tmp_path / "explore.json").read_text())
    assert numbers["rows"] == {"all": 20_640, "train": 16_512}
    pngs = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert pngs == sorted(
        f"{stem}.png"
        for stem in (
            "histograms",
            "geography",
            "correlation_matrix",
            "scatter_matrix",
            "capped_income_vs_value",
        )
    )
    # The proportions table in the page shows the JSON's numbers.
    first = numbers["income_category_proportions"][0]
    assert f"<td>{first['stratified_pct']:.2f}</td>" in html
