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
