"""Cross-validation: the book's 10-fold baselines, its grid and randomized searches, and the
comparison that selected the default model. All of it is slow (minutes), so it runs from the
CLI (``housing train sklearn --search ...``), never from the test suite.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from scipy.stats import randint
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, RandomizedSearchCV
from sklearn.pipeline import Pipeline

from core import console
from training import sklearn_models
from training.evaluation import rmse

SCORING = "neg_root_mean_squared_error"

# The book's GridSearchCV grid (chapter 2), on the forest pipeline's parameter names.
BOOK_PARAM_GRID: list[dict[str, list[int]]] = [
    {"preprocessing__geo__n_clusters": [5, 8, 10], "regressor__max_features": [4, 6, 8]},
    {"preprocessing__geo__n_clusters": [10, 15], "regressor__max_features": [6, 8, 10]},
]

# The book's RandomizedSearchCV distributions (n_iter=10, cv=3, random_state=42).
BOOK_PARAM_DISTRIBUTIONS = {
    "preprocessing__geo__n_clusters": randint(low=3, high=50),
    "regressor__max_features": randint(low=2, high=20),
}

# The book's 10-fold CV RMSE means (3rd edition, chapter 2), for comparison.
BOOK_BASELINES = {
    "linear_regression": 69_858.0,
    "decision_tree": 66_868.0,
    "random_forest": 47_019.0,
}


def fold_rmse(model: Pipeline, X, y, train_idx, valid_idx) -> float:  # noqa: N803
    fitted = clone(model).fit(X.iloc[train_idx], y.iloc[train_idx])
    return rmse(y.iloc[valid_idx], fitted.predict(X.iloc[valid_idx]))


def cv_rmse(
    model: Pipeline,
    X: pd.DataFrame,  # noqa: N803 (sklearn's naming)
    y: pd.Series,
    cv: Any,
    desc: str = "cv",
    n_jobs: int = -1,
) -> dict[str, Any]:
    """RMSE per fold. Folds run in parallel processes, one thread each: on a shared,
    busy machine that beats threads inside one fit (OpenMP spin-waits under contention).
    """
    folds = list(cv.split(X, y))
    started = time.perf_counter()
    jobs = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
        delayed(_indexed)(i, model, X, y, train_idx, valid_idx)
        for i, (train_idx, valid_idx) in enumerate(folds)
    )
    by_fold = dict(console.bar(jobs, total=len(folds), desc=desc, unit="fold"))
    scores = [by_fold[i] for i in range(len(folds))]
    return {
        "folds": len(scores),
        "rmse_mean": float(np.mean(scores)),
        "rmse_std": float(np.std(scores)),
        "rmse_per_fold": [float(s) for s in scores],
        "seconds": round(time.perf_counter() - started, 1),
    }


def _indexed(i: int, *args: Any) -> tuple[int, float]:
    return i, fold_rmse(*args)


def book_baselines() -> dict[str, Callable[[], Pipeline]]:
    return {
        "linear_regression": sklearn_models.linear_regression,
        "decision_tree": sklearn_models.decision_tree,
        "random_forest": sklearn_models.random_forest,
    }


def run_baselines(
    X: pd.DataFrame,  # noqa: N803
    y: pd.Series,
    n_jobs: int = -1,
) -> dict[str, Any]:
    """The book's table: 10-fold CV (unshuffled, as ``cross_val_score(cv=10)``)."""
    results = {}
    for name, build in book_baselines().items():
        result = cv_rmse(build(), X, y, KFold(10), desc=name, n_jobs=n_jobs)
        result["book_rmse_mean"] = BOOK_BASELINES[name]
        result["relative_to_book"] = result["rmse_mean"] / BOOK_BASELINES[name] - 1
        results[name] = result
    return results


def forest_pipeline(n_jobs: int | None = None) -> Pipeline:
    """The book's search pipeline: preprocessing + a default forest."""
    return sklearn_models.random_forest(n_jobs=n_jobs)


def grid_search(n_jobs: int = -1, verbose: int = 2) -> GridSearchCV:
    return GridSearchCV(
        forest_pipeline(),
        BOOK_PARAM_GRID,
        cv=3,
        scoring=SCORING,
        n_jobs=n_jobs,
        verbose=verbose,
    )


def randomized_search(n_jobs: int = -1, verbose: int = 2) -> RandomizedSearchCV:
    return RandomizedSearchCV(
        forest_pipeline(),
        param_distributions=BOOK_PARAM_DISTRIBUTIONS,
        n_iter=10,
        cv=3,
        scoring=SCORING,
        random_state=42,
        n_jobs=n_jobs,
        verbose=verbose,
    )


def search_summary(search: GridSearchCV | RandomizedSearchCV) -> dict[str, Any]:
    """Best parameters and every candidate's mean CV RMSE, best first."""
    results = pd.DataFrame(search.cv_results_)
    results = results.sort_values("rank_test_score")
    candidates = [
        {"params": params, "cv_rmse_mean": float(-score), "cv_rmse_std": float(std)}
        for params, score, std in zip(
            results["params"], results["mean_test_score"], results["std_test_score"], strict=True
        )
    ]
    return {
        "best_params": {k: _plain(v) for k, v in search.best_params_.items()},
        "best_cv_rmse": float(-search.best_score_),
        "candidates": [
            {**c, "params": {k: _plain(v) for k, v in c["params"].items()}} for c in candidates
        ],
    }


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# The 5-fold CV (KFold, shuffled, random_state=42) that chose the default model: each entry
# builds one candidate. ``housing train sklearn --search compare`` reruns it.
def comparison_candidates() -> dict[str, Callable[[], Pipeline]]:
    return {
        "forest": sklearn_models.book_forest,
        "boosting_book_features": lambda: sklearn_models.gradient_boosting(
            neighbours=(), coordinates=False, n_models=1, max_features=1.0
        ),
        "boosting_single": lambda: sklearn_models.gradient_boosting(n_models=1),
        "boosting": lambda: sklearn_models.build(sklearn_models.DEFAULT_MODEL_TYPE),
    }


def run_comparison(
    X: pd.DataFrame,  # noqa: N803
    y: pd.Series,
    n_jobs: int = -1,
) -> dict[str, Any]:
    cv = KFold(5, shuffle=True, random_state=42)
    return {
        name: cv_rmse(build(), X, y, cv, desc=name, n_jobs=n_jobs)
        for name, build in comparison_candidates().items()
    }
