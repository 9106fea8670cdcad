"""``housing evaluate``: score a published model version on the book's test split.

Reports the RMSE with its t and bootstrap 95% CIs, the error by income category (the
stratification variable: is the model worse for rich districts?), and feature importances:
the regressor's own when it has them, and permutation importances of the 9 raw features
for any model, scikit-learn or a SavedModel.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import UserError
from pipelines.common import add_models_dir, add_runs_dir, run_dir, write_results

if TYPE_CHECKING:
    import pandas as pd

RUN_NAME = "evaluate"


def register(subparsers: argparse._SubParsersAction) -> None:
    from core.contract import SKLEARN_MODEL

    parser = subparsers.add_parser(
        "evaluate",
        help="score a model version on the book's test split (RMSE with CIs, by income)",
        description=(
            "Load a published model version (its SHA-256 checked first), score the book's "
            "test split and write a results JSON."
        ),
    )
    parser.add_argument(
        "--model", default=SKLEARN_MODEL, help=f"model name (default: {SKLEARN_MODEL})"
    )
    parser.add_argument(
        "--version",
        type=int,
        default=None,
        help="version number (default: the 'stable' label, else the highest served version)",
    )
    add_models_dir(parser)
    parser.add_argument(
        "--permutation-repeats",
        type=int,
        default=5,
        help="repeats for the permutation importances (0 skips them; default: 5)",
    )
    add_runs_dir(parser, "evaluate")
    parser.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    if args.permutation_repeats < 0:
        raise UserError("--permutation-repeats must be 0 or more")
    results = evaluate(
        args.models_dir, args.model, args.version, args.permutation_repeats, args.runs_dir
    )
    metrics = results["metrics"]
    low, high = metrics["test_rmse_ci95_t"]
    boot_low, boot_high = metrics["test_rmse_ci95_bootstrap"]
    print(
        f"{results['model']} version {results['version']} ({results['version_chosen_by']}) "
        f"on {metrics['test_rows']} test rows"
    )
    print(
        f"test RMSE {metrics['test_rmse']:,.0f} USD  95% CI t [{low:,.0f}, {high:,.0f}]  "
        f"bootstrap [{boot_low:,.0f}, {boot_high:,.0f}]  MAE {metrics['test_mae']:,.0f}"
    )
    for row in results["by_income_category"]:
        print(
            f"  income category {row['income_cat']}: {row['rows']:>5} rows, "
            f"RMSE {row['rmse']:,.0f}, MAE {row['mae']:,.0f}"
        )
    print(f"results: {results['results_path']}")
    return 0


def evaluate(
    models_dir: Path,
    model_name: str | None = None,
    version: int | None = None,
    permutation_repeats: int = 5,
    runs_dir: Path | None = None,
) -> dict[str, Any]:
    """Score one version on the book's test split and write the results JSON."""
    results = score_version(models_dir, model_name, version, permutation_repeats).results
    folder = run_dir(RUN_NAME, runs_dir) if runs_dir else run_dir(RUN_NAME)
    results["results_path"] = str(write_results(folder / "results.json", results))
    return results


@dataclass
class Scored:
    """One version scored on a test set: the results dict and the rows behind it."""

    results: dict[str, Any]
    manifest: dict[str, Any]
    features: pd.DataFrame
    target: np.ndarray
    predictions: np.ndarray
    predict: Callable[[pd.DataFrame], np.ndarray]


def score_version(
    models_dir: Path,
    model_name: str | None = None,
    version: int | None = None,
    permutation_repeats: int = 5,
    test: pd.DataFrame | None = None,
) -> Scored:
    """Load a version (checksum first) and score it on ``test`` (default: the book's test
    split): metrics with CIs, errors by income category, importances."""
    from core.contract import FEATURES, SKLEARN_MODEL
    from training.data import features_and_target, load_split
    from training.evaluation import (
        error_by_income_category,
        model_importances,
        permutation_importances,
        regression_report,
    )
    from training.inference import load_predictor
    from training.repository import PLATFORM_SKLEARN, ModelRepository, load_sklearn_model

    model_name = model_name or SKLEARN_MODEL
    repository = ModelRepository(models_dir)
    versions = repository.versions(model_name)
    if not versions:
        raise UserError(f"no versions of {model_name!r} in {repository.root}")
    chosen_by = "--version"
    if version is None:
        version, chosen_by = repository.default_choice(model_name)
        if version is None:
            raise UserError(f"{model_name}: {chosen_by}; name one with --version")
    if version not in versions:
        raise UserError(f"{model_name} has no version {version}; versions: {versions}")
    version_dir = repository.version_dir(model_name, version)
    manifest = repository.manifest(model_name, version)
    model = None
    if manifest.get("platform") == PLATFORM_SKLEARN:
        model = load_sklearn_model(version_dir)
        predict = model.predict
    else:
        predict = load_predictor(version_dir)
    X_test, y_test = features_and_target(load_split().test if test is None else test)  # noqa: N806
    X_test = X_test[list(FEATURES)]  # noqa: N806
    predictions = np.asarray(predict(X_test), dtype=float).ravel()
    results: dict[str, Any] = {
        "model": model_name,
        "version": version,
        "version_chosen_by": chosen_by,
        "metrics": regression_report(y_test, predictions),
        "manifest_test_rmse": manifest.get("metrics", {}).get("test_rmse"),
        "by_income_category": error_by_income_category(
            X_test["median_income"], y_test, predictions
        ),
        "feature_importances": model_importances(model) if model is not None else None,
    }
    if permutation_repeats:
        results["permutation_importances"] = permutation_importances(
            predict, X_test, y_test, permutation_repeats
        )
    return Scored(results, manifest, X_test, y_test.to_numpy(dtype=float), predictions, predict)
