"""``housing data explore``: the book's chapter 2 views of the training split, as one HTML page.

Histograms of every attribute, the geographic scatter (colour: price, size: population),
the correlation matrix and the scatter matrix of the attributes most correlated with the
price, the income-category proportions of the stratified vs a purely random split (the
book's table), and the capped values the book warns about. The numbers behind every figure
go to ``explore.json`` too. The figures are drawn without a California outline: no small,
licensed shape file ships with the project.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.contract import CATEGORICAL_FEATURE, NUMERIC_FEATURES, TARGET
from pipelines import figures
from pipelines.common import run_dir

RUN_NAME = "explore"
HISTOGRAM_BINS = 50
NUMERIC_COLUMNS: tuple[str, ...] = (*NUMERIC_FEATURES, TARGET)
SCATTER_MATRIX_ATTRIBUTES = 3
# A column whose maximum is shared by at least this many districts was capped (the book's
# median_house_value at 500,001, housing_median_age at 52, median_income at 15.0001).
CAPPED_MIN_ROWS = 10
# The book's combined attributes, shown in the correlation table.
COMBINED_ATTRIBUTES: dict[str, tuple[str, str]] = {
    "rooms_per_house": ("total_rooms", "households"),
    "bedrooms_ratio": ("total_bedrooms", "total_rooms"),
    "people_per_house": ("population", "households"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    from training.data import BUNDLED_ARCHIVE

    parser = subparsers.add_parser(
        "explore",
        help="the book's chapter 2 figures of the training split as one HTML report",
        description=(
            "Write explore.html (self-contained: figures embedded), explore.json (the numbers "
            "behind them) and figures/*.png for the book's stratified training split."
        ),
    )
    parser.add_argument(
        "--source", default=str(BUNDLED_ARCHIVE), help="dataset archive (default: the bundled one)"
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="where the report goes (default: runs/explore/<timestamp>/)",
    )
    parser.set_defaults(func=run_explore)


def run_explore(args: argparse.Namespace) -> int:
    from training.data import load_housing

    output_dir = args.output_dir or run_dir(RUN_NAME)
    html_path = write_report(load_housing(args.source), output_dir)
    print(f"wrote {html_path} (and explore.json, figures/*.png)")
    return 0


# ---- the numbers ---------------------------------------------------------------------------


def histograms(frame: pd.DataFrame, bins: int = HISTOGRAM_BINS) -> dict[str, dict[str, Any]]:
    """Counts and bin edges of every numeric column (missing values left out and counted)."""
    out = {}
    for name in NUMERIC_COLUMNS:
        values = frame[name].to_numpy(dtype=float)
        present = values[~np.isnan(values)]
        counts, edges = np.histogram(present, bins=bins)
        out[name] = {
            "counts": counts.tolist(),
            "edges": edges.tolist(),
            "missing": int(len(values) - len(present)),
        }
    return out


def category_counts(frame: pd.DataFrame) -> dict[str, int]:
    counts = frame[CATEGORICAL_FEATURE].value_counts()
    return {str(k): int(v) for k, v in counts.items()}


def with_combined_attributes(frame: pd.DataFrame) -> pd.DataFrame:
    combined = {name: frame[a] / frame[b] for name, (a, b) in COMBINED_ATTRIBUTES.items()}
    return frame[list(NUMERIC_COLUMNS)].assign(**combined)


def correlations(frame: pd.DataFrame) -> dict[str, float]:
    """Pearson correlation of each numeric and combined attribute with the price, highest first."""
    corr = with_combined_attributes(frame).corr()[TARGET].drop(TARGET)
    return {str(k): float(v) for k, v in corr.sort_values(ascending=False).items()}


def most_correlated(corr: dict[str, float], count: int = SCATTER_MATRIX_ATTRIBUTES) -> list[str]:
    """The ``count`` raw attributes with the largest absolute correlation with the price."""
    raw = {k: v for k, v in corr.items() if k in NUMERIC_FEATURES}
    return sorted(raw, key=lambda name: -abs(raw[name]))[:count]


def income_proportions(housing: pd.DataFrame, seed: int = 42) -> list[dict[str, Any]]:
    """The book's table: income-category shares of the whole data and of the test set of a
    stratified and of a purely random 20% split, with the relative errors in percent."""
    from sklearn.model_selection import train_test_split

    from training.data import income_category, stratified_split

    def shares(frame: pd.DataFrame) -> pd.Series:
        cats = income_category(frame["median_income"])
        return cats.value_counts(normalize=True).sort_index()

    overall = shares(housing)
    stratified = shares(stratified_split(housing, seed=seed).test)
    _, random_test = train_test_split(housing, test_size=0.2, random_state=seed)
    rand = shares(random_test)
    rows = []
    for cat in overall.index:
        rows.append(
            {
                "income_cat": int(cat),
                "overall_pct": 100 * float(overall[cat]),
                "stratified_pct": 100 * float(stratified[cat]),
                "random_pct": 100 * float(rand[cat]),
                "stratified_error_pct": 100 * float(stratified[cat] / overall[cat] - 1),
                "random_error_pct": 100 * float(rand[cat] / overall[cat] - 1),
            }
        )
    return rows


def capped_values(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Per numeric column: its maximum, how many districts sit exactly on it, capped or not."""
    out = []
    for name in NUMERIC_COLUMNS:
        column = frame[name].dropna()
        top = float(column.max())
        at_max = int((column == top).sum())
        out.append(
            {
                "column": name,
                "max": top,
                "rows_at_max": at_max,
                "share_at_max": at_max / len(column),
                "capped": at_max >= CAPPED_MIN_ROWS,
            }
        )
    return out


def explore_numbers(housing: pd.DataFrame) -> dict[str, Any]:
    """Everything the report shows, computed on the book's stratified training split."""
    from training.data import stratified_split

    train = stratified_split(housing).train
    corr = correlations(train)
    return {
        "rows": {"all": int(len(housing)), "train": int(len(train))},
        "histograms": histograms(train),
        "ocean_proximity_counts": category_counts(train),
        "correlations_with_price": corr,
        "scatter_matrix_attributes": most_correlated(corr),
        "income_category_proportions": income_proportions(housing),
        "capped_values": capped_values(train),
    }


# ---- the figures ---------------------------------------------------------------------------


def histogram_figure(numbers: dict[str, Any]):
    hist, cats = numbers["histograms"], numbers["ocean_proximity_counts"]
    figure = figures.new_figure(16, 6.5)
    axes = figure.subplots(2, 5).ravel()
    for ax, name in zip(axes, NUMERIC_COLUMNS, strict=False):
        ax.stairs(hist[name]["counts"], hist[name]["edges"], fill=True, color="#4c72b0")
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    last = axes[len(NUMERIC_COLUMNS)]
    last.bar(list(cats), list(cats.values()), color="#dd8452")
    last.set_title(CATEGORICAL_FEATURE, fontsize=9)
    last.tick_params(axis="x", labelrotation=45, labelsize=7)
    return figure


def geographic_figure(train: pd.DataFrame):
    figure = figures.new_figure(8, 6.5)
    ax = figure.subplots()
    points = ax.scatter(
        train["longitude"],
        train["latitude"],
        s=train["population"] / 100,
        c=train[TARGET],
        cmap="jet",
        alpha=0.4,
    )
    figure.colorbar(points, ax=ax, label=TARGET)
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title("Districts: colour = median house value, size = population")
    return figure


def correlation_figure(train: pd.DataFrame):
    frame = with_combined_attributes(train).corr()
    names, matrix = [str(c) for c in frame.columns], frame.to_numpy()
    figure = figures.new_figure(9, 8)
    ax = figure.subplots()
    image = ax.imshow(matrix, cmap="coolwarm", vmin=-1, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{float(matrix[i, j]):.2f}", ha="center", va="center", fontsize=6)
    figure.colorbar(image, ax=ax)
    ax.set_title("Pearson correlation matrix")
    return figure


def scatter_matrix_figure(train: pd.DataFrame, attributes: list[str]):
    names = [TARGET, *attributes]
    figure = figures.new_figure(10, 10)
    axes = figure.subplots(len(names), len(names), squeeze=False)
    for i, row_name in enumerate(names):
        for j, col_name in enumerate(names):
            ax = axes[i][j]
            if i == j:
                ax.hist(train[row_name].dropna(), bins=HISTOGRAM_BINS, color="#4c72b0")
            else:
                ax.scatter(train[col_name], train[row_name], s=1, alpha=0.1, color="#4c72b0")
            ax.tick_params(labelsize=6)
            if i == len(names) - 1:
                ax.set_xlabel(col_name, fontsize=8)
            if j == 0:
                ax.set_ylabel(row_name, fontsize=8)
    return figure


def capped_figure(train: pd.DataFrame):
    """The book's income-vs-price scatter: the horizontal lines are caps and rounding."""
    figure = figures.new_figure(8, 5.5)
    ax = figure.subplots()
    ax.scatter(train["median_income"], train[TARGET], s=2, alpha=0.1, color="#4c72b0")
    top = train[TARGET].max()
    ax.axhline(top, color="red", linewidth=1, label=f"cap: {top:,.0f}")
    ax.set_xlabel("median_income")
    ax.set_ylabel(TARGET)
    ax.legend(loc="lower right")
    ax.set_title("Median income vs median house value")
    return figure


# ---- the report ----------------------------------------------------------------------------


def render_figures(housing: pd.DataFrame, numbers: dict[str, Any]) -> dict[str, bytes]:
    """PNG bytes by file stem, in the report's order."""
    from training.data import stratified_split

    train = stratified_split(housing).train
    return {
        "histograms": figures.png_bytes(histogram_figure(numbers)),
        "geography": figures.png_bytes(geographic_figure(train)),
        "correlation_matrix": figures.png_bytes(correlation_figure(train)),
        "scatter_matrix": figures.png_bytes(
            scatter_matrix_figure(train, numbers["scatter_matrix_attributes"])
        ),
        "capped_income_vs_value": figures.png_bytes(capped_figure(train)),
    }


def report_html(numbers: dict[str, Any], pngs: dict[str, bytes]) -> str:
    rows = numbers["rows"]
    corr = numbers["correlations_with_price"]
    proportions = numbers["income_category_proportions"]
    capped = numbers["capped_values"]
    missing = numbers["histograms"]["total_bedrooms"]["missing"]
    return figures.page(
        "California housing: exploring the training split",
        [
            figures.paragraph(
                f"The book's stratified training split: {rows['train']:,} of {rows['all']:,} "
                f"districts (1990 census). {missing} districts lack total_bedrooms."
            ),
            figures.section(
                "Histograms of every attribute",
                figures.paragraph(
                    f"{HISTOGRAM_BINS} bins each; the spikes at the right edge of "
                    "housing_median_age and median_house_value are caps.",
                    "note",
                ),
                figures.image(pngs["histograms"], "histograms"),
            ),
            figures.section(
                "Geography",
                figures.paragraph(
                    "Prices are highest along the coast and around the Bay Area and Los "
                    "Angeles; no state outline is drawn (no licensed shape ships offline).",
                    "note",
                ),
                figures.image(pngs["geography"], "geographic scatter"),
            ),
            figures.section(
                "Correlations with median_house_value",
                figures.table_html(
                    ["attribute", "Pearson r"], [(k, f"{v:+.3f}") for k, v in corr.items()]
                ),
                figures.image(pngs["correlation_matrix"], "correlation matrix"),
            ),
            figures.section(
                "Scatter matrix of the most correlated attributes",
                figures.paragraph(
                    "Attributes chosen by absolute correlation with the price: "
                    + ", ".join(numbers["scatter_matrix_attributes"]),
                    "note",
                ),
                figures.image(pngs["scatter_matrix"], "scatter matrix"),
            ),
            figures.section(
                "Income category proportions: stratified vs random split",
                figures.paragraph(
                    "Share of each income category (median_income cut at 1.5, 3, 4.5, 6) in "
                    "the whole dataset and in the 20% test set of the stratified split and of "
                    "a purely random split (both random_state=42); errors relative to overall.",
                    "note",
                ),
                figures.table_html(
                    [
                        "income_cat",
                        "overall %",
                        "stratified %",
                        "random %",
                        "strat. error %",
                        "rand. error %",
                    ],
                    [
                        (
                            r["income_cat"],
                            f"{r['overall_pct']:.2f}",
                            f"{r['stratified_pct']:.2f}",
                            f"{r['random_pct']:.2f}",
                            f"{r['stratified_error_pct']:+.2f}",
                            f"{r['random_error_pct']:+.2f}",
                        )
                        for r in proportions
                    ],
                ),
            ),
            figures.section(
                "Capped values",
                figures.paragraph(
                    "A maximum shared by many districts is a cap, not data: the model cannot "
                    "learn prices above the median_house_value cap, and predictions for such "
                    "districts are biased low.",
                    "note",
                ),
                figures.table_html(
                    ["column", "max", "districts at max", "share", "capped"],
                    [
                        (
                            c["column"],
                            f"{c['max']:,.4g}",
                            c["rows_at_max"],
                            f"{100 * c['share_at_max']:.2f}%",
                            "yes" if c["capped"] else "no",
                        )
                        for c in capped
                    ],
                ),
                figures.image(pngs["capped_income_vs_value"], "income vs value"),
            ),
        ],
    )


def write_report(housing: pd.DataFrame, output_dir: Path) -> Path:
    """Write explore.html, explore.json and figures/*.png; return the HTML path."""
    numbers = explore_numbers(housing)
    pngs = render_figures(housing, numbers)
    output_dir.mkdir(parents=True, exist_ok=True)
    figure_dir = output_dir / "figures"
    figure_dir.mkdir(exist_ok=True)
    for stem, png in pngs.items():
        (figure_dir / f"{stem}.png").write_bytes(png)
    (output_dir / "explore.json").write_text(json.dumps(numbers, indent=2) + "\n")
    html_path = output_dir / "explore.html"
    html_path.write_text(report_html(numbers, pngs))
    return html_path
