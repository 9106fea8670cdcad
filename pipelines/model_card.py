"""``housing model-card NAME[:VERSION]``: what a version is, how well it does, where it errs.

The card is written into the version folder's ``card/`` (``card.md`` with linked PNGs, a
self-contained ``card.html``, ``card.json`` with every number), at training time and on
demand. ``card/`` is left out of the artifact's checksum (``training.repository``), so a
card can be (re)written without touching the published artifact. The numbers come from
scoring the published artifact, checksum-verified, as ``housing evaluate`` does.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import UserError
from pipelines.common import add_models_dir

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.evaluate import Scored

TRAINING_PERMUTATION_REPEATS = 1
DEFAULT_PERMUTATION_REPEATS = 5
TARGET_CAP = 500_001.0

INTENDED_USE = (
    "Estimating the median house value of a California census block group (district) from "
    "the 1990 census attributes, as in Geron's Hands-On Machine Learning, chapter 2: for "
    "learning, demonstrations and benchmarking the serving stack."
)
LIMITATIONS = [
    "Trained on 1990 census districts: prices and the geography of wealth have changed "
    "since; do not use it to price real property today.",
    "The target is capped at 500,001 USD: the model cannot predict above the cap, and "
    "districts at the cap are predicted too low (see the capped-target section).",
    "median_income is capped at 15 (tens of thousands of USD) and housing_median_age at 52, "
    "so the richest and oldest districts are not distinguished.",
    "Errors grow with income category (see the slices): rich districts are rarer and pricier.",
    "Districts are aggregates of about 1,400 people; the model says nothing about one house.",
]


def register(subparsers: argparse._SubParsersAction) -> None:

    parser = subparsers.add_parser(
        "model-card",
        help="write a model version's card (metrics, error slices, plots, limitations)",
        description=(
            "Score the version on the book's test split and write card.md, card.html, "
            "card.json and the PNGs into models/<name>/<version>/card/. Without a version: "
            "the version the servers give by default (the stable label, else the latest)."
        ),
    )
    parser.add_argument(
        "model", metavar="NAME[:VERSION]", help="e.g. housing_sklearn or housing_keras:2"
    )
    add_models_dir(parser)
    parser.add_argument(
        "--permutation-repeats",
        type=int,
        default=DEFAULT_PERMUTATION_REPEATS,
        help=f"repeats for the permutation importances (default: {DEFAULT_PERMUTATION_REPEATS})",
    )
    parser.set_defaults(func=run_model_card)


def run_model_card(args: argparse.Namespace) -> int:
    if args.permutation_repeats < 1:
        raise UserError("--permutation-repeats must be at least 1")
    name, version = parse_model_spec(args.model, args.models_dir)
    folder = write_card(args.models_dir, name, version, args.permutation_repeats)
    card = json.loads((folder / "card.json").read_text())
    print(
        f"{name} version {version}: test RMSE {card['metrics']['test_rmse']:,.0f} USD; "
        f"wrote {folder / 'card.md'} and {folder / 'card.html'}"
    )
    return 0


def parse_model_spec(spec: str, models_dir: Path) -> tuple[str, int]:
    """``NAME[:VERSION]`` -> (name, version); no version: the repository's default version."""
    from training.repository import ModelRepository

    name, _, version_text = spec.partition(":")
    repository = ModelRepository(models_dir)
    versions = repository.versions(name)
    if not versions:
        raise UserError(f"no versions of {name!r} in {repository.root}")
    if version_text:
        if not version_text.isdigit() or int(version_text) not in versions:
            raise UserError(f"{name} has no version {version_text!r}; versions: {versions}")
        return name, int(version_text)
    default = repository.default_version(name)
    if default is None:
        raise UserError(f"{name} has no served version in {repository.root}")
    return name, default


# ---- the numbers ---------------------------------------------------------------------------


def capped_target_effect(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Errors for districts at the target's cap vs below it."""
    at_cap = y_true >= TARGET_CAP

    def block(mask: np.ndarray) -> dict[str, Any]:
        errors = y_pred[mask] - y_true[mask]
        if not mask.any():
            return {"rows": 0, "rmse": None, "bias": None}
        return {
            "rows": int(mask.sum()),
            "rmse": float(np.sqrt(np.mean(errors**2))),
            "bias": float(np.mean(errors)),
        }

    return {
        "cap": TARGET_CAP,
        "at_cap": block(at_cap),
        "below_cap": block(~at_cap),
        "predictions_above_cap": int((y_pred > TARGET_CAP).sum()),
    }


def serving_figures(scored: Scored) -> dict[str, Any]:
    """Training time, artifact size and in-process predict latency (the manifest's, else
    measured now with a short budget)."""
    from training.sklearn_export import median_seconds

    manifest = scored.manifest
    serving = manifest.get("serving")
    if serving is None:
        one = scored.features.iloc[:1]
        thousand = scored.features.sample(n=1_000, replace=True, random_state=42)
        batch = median_seconds(lambda: scored.predict(thousand), 5, budget_seconds=0.5)
        serving = {
            "predict_1_row_seconds": median_seconds(lambda: scored.predict(one), 5, 0.5),
            "predict_1000_rows_seconds": batch,
            "rows_per_second_at_1000": 1_000 / batch,
        }
    artifact = manifest.get("artifact", {})
    return {
        "train_seconds": manifest.get("metrics", {}).get("train_seconds"),
        "artifact_size_bytes": artifact.get("size_bytes"),
        "artifact_load_seconds": artifact.get("load_seconds"),
        "predict_latency": serving,
    }


def card_numbers(scored: Scored) -> dict[str, Any]:
    from core.contract import CATEGORICAL_FEATURE
    from training.evaluation import error_by_category

    manifest, results = scored.manifest, scored.results
    return {
        "model": results["model"],
        "version": results["version"],
        "platform": manifest.get("platform"),
        "framework": manifest.get("framework"),
        "created_at": manifest.get("created_at"),
        "provenance": {
            "data": manifest.get("data"),
            "libraries": manifest.get("libraries"),
            "hyperparameters": manifest.get("hyperparameters"),
            "artifact_sha256": manifest.get("artifact", {}).get("sha256"),
        },
        "metrics": results["metrics"],
        "manifest_metrics": manifest.get("metrics"),
        "by_income_category": results["by_income_category"],
        "by_ocean_proximity": error_by_category(
            scored.features[CATEGORICAL_FEATURE],
            scored.target,
            scored.predictions,
            CATEGORICAL_FEATURE,
        ),
        "capped_target": capped_target_effect(scored.target, scored.predictions),
        "permutation_importances": results.get("permutation_importances"),
        "model_importances": results.get("feature_importances"),
        "serving": serving_figures(scored),
        "intended_use": INTENDED_USE,
        "limitations": LIMITATIONS,
    }


# ---- the figures ---------------------------------------------------------------------------


def predicted_vs_actual_figure(y_true: np.ndarray, y_pred: np.ndarray):
    from pipelines import figures

    figure = figures.new_figure(6.5, 6)
    ax = figure.subplots()
    ax.scatter(y_true, y_pred, s=3, alpha=0.2, color="#4c72b0")
    top = max(float(y_true.max()), float(y_pred.max()))
    ax.plot([0, top], [0, top], color="black", linewidth=1, label="perfect")
    ax.axvline(TARGET_CAP, color="red", linewidth=1, linestyle="--", label="target cap")
    ax.set_xlabel("actual median_house_value (USD)")
    ax.set_ylabel("predicted (USD)")
    ax.legend(loc="upper left")
    ax.set_title("Predicted vs actual (test split)")
    return figure


def residual_figure(y_true: np.ndarray, y_pred: np.ndarray):
    from pipelines import figures

    residuals = y_pred - y_true
    figure = figures.new_figure(11, 4.5)
    left, right = figure.subplots(1, 2)
    left.scatter(y_pred, residuals, s=3, alpha=0.2, color="#4c72b0")
    left.axhline(0, color="black", linewidth=1)
    left.set_xlabel("predicted (USD)")
    left.set_ylabel("prediction - actual (USD)")
    left.set_title("Residuals vs prediction")
    right.hist(residuals, bins=60, color="#4c72b0")
    right.set_xlabel("prediction - actual (USD)")
    right.set_title("Residual distribution")
    return figure


def slices_figure(numbers: dict[str, Any]):
    from core.contract import CATEGORICAL_FEATURE
    from pipelines import figures

    figure = figures.new_figure(11, 4)
    left, right = figure.subplots(1, 2)
    income = numbers["by_income_category"]
    left.bar([str(r["income_cat"]) for r in income], [r["rmse"] for r in income])
    left.set_xlabel("income category")
    left.set_ylabel("test RMSE (USD)")
    left.set_title("RMSE by income category")
    ocean = numbers["by_ocean_proximity"]
    right.bar([r[CATEGORICAL_FEATURE] for r in ocean], [r["rmse"] for r in ocean], color="#dd8452")
    right.set_title("RMSE by ocean_proximity")
    right.tick_params(axis="x", labelrotation=30)
    return figure


def importance_figure(importances: dict[str, float]):
    from pipelines import figures

    figure = figures.new_figure(7, 4)
    ax = figure.subplots()
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names], color="#55a868")
    ax.set_xlabel("increase in test RMSE when shuffled (USD)")
    ax.set_title("Permutation importances")
    return figure


def render_figures(scored: Scored, numbers: dict[str, Any]) -> dict[str, bytes]:
    from pipelines import figures

    pngs = {
        "predicted_vs_actual": figures.png_bytes(
            predicted_vs_actual_figure(scored.target, scored.predictions)
        ),
        "residuals": figures.png_bytes(residual_figure(scored.target, scored.predictions)),
        "error_slices": figures.png_bytes(slices_figure(numbers)),
    }
    if numbers["permutation_importances"]:
        pngs["permutation_importances"] = figures.png_bytes(
            importance_figure(numbers["permutation_importances"])
        )
    return pngs


# ---- the documents -------------------------------------------------------------------------


def _usd(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _scalars(params: dict[str, Any] | None) -> str:
    """The top-level scalar hyperparameters, compactly (every one is in card.json)."""
    plain = (str, int, float, bool)
    items = [f"{k}={v}" for k, v in (params or {}).items() if isinstance(v, plain)]
    return ", ".join(items) or "see card.json"


def _seconds(value: float | None) -> str:
    return "not recorded" if value is None else f"{value:.4g} s"


def sections(numbers: dict[str, Any]) -> list[tuple[str, str, list[list[str]], str | None]]:
    """(heading, text, table rows with a header row first, figure stem) for both formats."""
    m = numbers["metrics"]
    data = numbers["provenance"]["data"] or {}
    serving = numbers["serving"]
    latency = serving["predict_latency"]
    capped = numbers["capped_target"]
    size = serving["artifact_size_bytes"]
    out: list[tuple[str, str, list[list[str]], str | None]] = [
        (
            "Provenance",
            f"{numbers['framework']}; platform {numbers['platform']}; created "
            f"{numbers['created_at']}.",
            [
                ["item", "value"],
                ["data source", str(data.get("source"))],
                ["data SHA-256", str(data.get("sha256"))],
                ["split", str(data.get("split"))],
                ["train / test rows", f"{data.get('train_rows')} / {data.get('test_rows')}"],
                ["artifact SHA-256", str(numbers["provenance"]["artifact_sha256"])],
                ["hyperparameters", _scalars(numbers["provenance"]["hyperparameters"])],
                [
                    "libraries",
                    ", ".join(
                        f"{k} {v}" for k, v in (numbers["provenance"]["libraries"] or {}).items()
                    ),
                ],
            ],
            None,
        ),
        (
            "Metrics on the test split",
            "RMSE with the book's t-interval and a percentile bootstrap (95%).",
            [
                ["metric", "value (USD)"],
                ["test rows", str(m["test_rows"])],
                ["RMSE", _usd(m["test_rmse"])],
                ["RMSE 95% CI (t)", " - ".join(_usd(v) for v in m["test_rmse_ci95_t"])],
                [
                    "RMSE 95% CI (bootstrap)",
                    " - ".join(_usd(v) for v in m["test_rmse_ci95_bootstrap"]),
                ],
                ["MAE", _usd(m["test_mae"])],
            ],
            "predicted_vs_actual",
        ),
        (
            "Errors by income category",
            "Bias is the mean of prediction - actual (negative: predicted too low).",
            [["income_cat", "rows", "RMSE", "MAE", "bias"]]
            + [
                [
                    str(r["income_cat"]),
                    str(r["rows"]),
                    _usd(r["rmse"]),
                    _usd(r["mae"]),
                    _usd(r["bias"]),
                ]
                for r in numbers["by_income_category"]
            ],
            "error_slices",
        ),
        (
            "Errors by ocean proximity",
            "",
            [["ocean_proximity", "rows", "RMSE", "MAE", "bias"]]
            + [
                [
                    r["ocean_proximity"],
                    str(r["rows"]),
                    _usd(r["rmse"]),
                    _usd(r["mae"]),
                    _usd(r["bias"]),
                ]
                for r in numbers["by_ocean_proximity"]
            ],
            None,
        ),
        (
            "Residuals",
            "Residuals against the prediction, and their distribution.",
            [],
            "residuals",
        ),
        (
            "Capped-target effect",
            f"{capped['at_cap']['rows']} test districts sit at the {capped['cap']:,.0f} USD cap; "
            f"their true value is unknown (at least the cap). {capped['predictions_above_cap']} "
            "predictions exceed the cap.",
            [
                ["districts", "rows", "RMSE", "bias"],
                [
                    "at the cap",
                    str(capped["at_cap"]["rows"]),
                    _usd(capped["at_cap"]["rmse"]),
                    _usd(capped["at_cap"]["bias"]),
                ],
                [
                    "below the cap",
                    str(capped["below_cap"]["rows"]),
                    _usd(capped["below_cap"]["rmse"]),
                    _usd(capped["below_cap"]["bias"]),
                ],
            ],
            None,
        ),
    ]
    if numbers["permutation_importances"]:
        out.append(
            (
                "Permutation importances",
                "Mean increase in test RMSE when one raw feature is shuffled.",
                [["feature", "RMSE increase (USD)"]]
                + [[k, _usd(v)] for k, v in numbers["permutation_importances"].items()],
                "permutation_importances",
            )
        )
    out += [
        (
            "Training and serving",
            "Predict latency is in-process (one Python call), not over the network.",
            [
                ["item", "value"],
                ["training time", _seconds(serving["train_seconds"])],
                ["artifact size", "n/a" if size is None else f"{size / 1e6:.2f} MB"],
                ["artifact load time", _seconds(serving["artifact_load_seconds"])],
                ["predict 1 row", _seconds(latency.get("predict_1_row_seconds"))],
                ["predict 1,000 rows", _seconds(latency.get("predict_1000_rows_seconds"))],
            ],
            None,
        ),
        ("Intended use", numbers["intended_use"], [], None),
        ("Limitations", "\n".join(f"- {item}" for item in numbers["limitations"]), [], None),
    ]
    return out


def markdown(numbers: dict[str, Any], stems: set[str]) -> str:
    lines = [f"# Model card: {numbers['model']} version {numbers['version']}", ""]
    for heading, text, table, stem in sections(numbers):
        lines += [f"## {heading}", ""]
        if text:
            lines += [text, ""]
        if table:
            lines.append("| " + " | ".join(table[0]) + " |")
            lines.append("|" + "---|" * len(table[0]))
            for row in table[1:]:
                lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
            lines.append("")
        if stem in stems:
            lines += [f"![{heading}]({stem}.png)", ""]
    return "\n".join(lines)


def html_page(numbers: dict[str, Any], pngs: dict[str, bytes]) -> str:
    from pipelines import figures

    parts = []
    for heading, text, table, stem in sections(numbers):
        body = []
        if text.startswith("- "):
            body.append(
                "<ul>"
                + "".join(f"<li>{figures.escape(item[2:])}</li>" for item in text.splitlines())
                + "</ul>"
            )
        elif text:
            body.append(figures.paragraph(text))
        if table:
            body.append(figures.table_html(table[0], table[1:]))
        if stem in pngs:
            body.append(figures.image(pngs[stem], heading))
        parts.append(figures.section(heading, *body))
    return figures.page(f"Model card: {numbers['model']} version {numbers['version']}", parts)


def write_card(
    models_dir: Path,
    name: str,
    version: int,
    permutation_repeats: int = DEFAULT_PERMUTATION_REPEATS,
    test: pd.DataFrame | None = None,
) -> Path:
    """Score the version on ``test`` (default: the book's test split) and write its card;
    returns the card folder."""
    from pipelines.evaluate import score_version
    from training.repository import CARD_DIR, ModelRepository

    scored = score_version(models_dir, name, version, permutation_repeats, test)
    numbers = card_numbers(scored)
    pngs = render_figures(scored, numbers)
    folder = ModelRepository(models_dir).version_dir(name, version) / CARD_DIR
    folder.mkdir(exist_ok=True)
    for stem, png in pngs.items():
        (folder / f"{stem}.png").write_bytes(png)
    (folder / "card.json").write_text(json.dumps(numbers, indent=2, default=str) + "\n")
    (folder / "card.md").write_text(markdown(numbers, set(pngs)))
    (folder / "card.html").write_text(html_page(numbers, pngs))
    return folder


def write_card_after_training(
    models_dir: Path, name: str, version: int, test: pd.DataFrame | None = None
) -> Path | None:
    """The training-time card (one permutation repeat: cheap). A card that fails does not
    undo the published version: the reason goes to stderr with the command to retry."""
    try:
        return write_card(models_dir, name, version, TRAINING_PERMUTATION_REPEATS, test)
    except Exception as exc:  # the version is published either way
        print(
            f"warning: no model card for {name}:{version} ({exc}); "
            f"retry with: housing model-card {name}:{version}",
            file=sys.stderr,
        )
        return None
