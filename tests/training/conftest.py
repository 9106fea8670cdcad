"""One small default-type sklearn model, trained and published once for the training tests."""

from __future__ import annotations

from typing import Any

import pytest
from threadpoolctl import threadpool_limits

# 2 boosters x 40 rounds: small enough to train in seconds, the real model type.
QUICK = {"max_iter": 40, "n_models": 2}


@pytest.fixture(scope="session")
def quick_sklearn(tmp_path_factory: pytest.TempPathFactory, split: Any) -> dict[str, Any]:
    """``train_sklearn``'s results for a model trained on 2,000 rows and published (with its
    compiled trees) into a temporary repository, plus ``models_dir`` and ``runs_dir``.
    Shared: tests that change files work on a copy."""
    from pipelines.train_sklearn import train_sklearn

    models_dir = tmp_path_factory.mktemp("models")
    runs_dir = tmp_path_factory.mktemp("runs")
    with threadpool_limits(1):  # session fixtures start before the modules' one_openmp_thread
        results = train_sklearn(
            models_dir, sample=2_000, n_jobs=1, runs_dir=runs_dir, params=QUICK, split=split
        )
    return {**results, "models_dir": models_dir, "runs_dir": runs_dir}
