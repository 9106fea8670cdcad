"""Test-set metrics with confidence intervals (the book's t-interval, and the bootstrap)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats


def rmse(y_true, y_pred) -> float:
    errors = np.asarray(y_pred, dtype=float) - np.asarray(y_true, dtype=float)
    return float(np.sqrt(np.mean(errors**2)))


def rmse_t_interval(y_true, y_pred, confidence: float = 0.95) -> tuple[float, float]:
    """The book's interval: a t-interval on the mean squared error, square-rooted."""
    squared = (np.asarray(y_pred, dtype=float) - np.asarray(y_true, dtype=float)) ** 2
    low, high = stats.t.interval(
        confidence, len(squared) - 1, loc=squared.mean(), scale=stats.sem(squared)
    )
    return float(np.sqrt(max(low, 0.0))), float(np.sqrt(high))


def rmse_bootstrap_interval(
    y_true, y_pred, confidence: float = 0.95, n_resamples: int = 2_000, seed: int = 42
) -> tuple[float, float]:
    """Percentile bootstrap of the RMSE (resampling districts with replacement)."""
    squared = (np.asarray(y_pred, dtype=float) - np.asarray(y_true, dtype=float)) ** 2
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(squared), size=(n_resamples, len(squared)))
    samples = np.sqrt(squared[idx].mean(axis=1))
    alpha = (1 - confidence) / 2
    return float(np.quantile(samples, alpha)), float(np.quantile(samples, 1 - alpha))


def regression_report(y_true, y_pred, confidence: float = 0.95) -> dict[str, Any]:
    """The metrics block every manifest carries (``metrics`` key)."""
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    return {
        "test_rows": int(len(y_true)),
        "test_rmse": rmse(y_true, y_pred),
        "test_rmse_ci95_t": list(rmse_t_interval(y_true, y_pred, confidence)),
        "test_rmse_ci95_bootstrap": list(rmse_bootstrap_interval(y_true, y_pred, confidence)),
        "test_mae": float(np.mean(np.abs(y_pred - y_true))),
    }


def errors_by_group(groups, y_true, y_pred) -> list[dict[str, Any]]:
    """Rows, RMSE, MAE and bias (mean of prediction - truth) per group, groups sorted."""
    import pandas as pd

    frame = pd.DataFrame(
        {
            "group": np.asarray(groups),
            "error": np.asarray(y_pred, dtype=float) - np.asarray(y_true, dtype=float),
        }
    )
    rows = []
    for group, part in frame.groupby("group", observed=True, sort=True):
        errors = part["error"].to_numpy()
        rows.append(
            {
                "group": group,
                "rows": int(len(errors)),
                "rmse": float(np.sqrt(np.mean(errors**2))),
                "mae": float(np.mean(np.abs(errors))),
                "bias": float(np.mean(errors)),
            }
        )
    return rows


def error_by_income_category(income, y_true, y_pred) -> list[dict[str, Any]]:
    """RMSE and MAE per income category (the book's strata 1-5)."""
    import pandas as pd

    from training.data import income_category

    categories = income_category(pd.Series(np.asarray(income, dtype=float))).astype(int)
    return [
        {"income_cat": int(row.pop("group")), **row}
        for row in errors_by_group(categories, y_true, y_pred)
    ]


def error_by_category(categories, y_true, y_pred, key: str) -> list[dict[str, Any]]:
    """RMSE and MAE per value of a categorical feature (e.g. ocean_proximity)."""
    return [
        {key: str(row.pop("group")), **row}
        for row in errors_by_group(np.asarray(categories).astype(str), y_true, y_pred)
    ]


def model_importances(model: Any) -> dict[str, float] | None:
    """The regressor's own importances (forests, trees), named after the preprocessing."""
    regressor = model[-1]
    values = getattr(regressor, "feature_importances_", None)
    if values is None:
        return None
    names = model[:-1].get_feature_names_out()
    ranked = sorted(zip(names, values, strict=True), key=lambda pair: -pair[1])
    return {str(name): float(value) for name, value in ranked}


def permutation_importances(predict, X, y, repeats: int, seed: int = 42) -> dict[str, float]:  # noqa: N803
    """Mean increase in test RMSE when one raw feature is shuffled (any framework)."""
    rng = np.random.default_rng(seed)
    baseline = rmse(y, predict(X))
    increases = {}
    for column in X.columns:
        scores = []
        for _ in range(repeats):
            shuffled = X.copy()
            shuffled[column] = rng.permutation(X[column].to_numpy())
            scores.append(rmse(y, predict(shuffled)) - baseline)
        increases[str(column)] = float(np.mean(scores))
    return dict(sorted(increases.items(), key=lambda pair: -pair[1]))
