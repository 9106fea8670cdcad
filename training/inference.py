"""Load any published model version as an in-process ``predict(DataFrame) -> USD`` function.

Used where a pipeline needs the same model the servers serve (evaluation, retraining,
benchmarks' in-process baseline) without going through the network.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from core.contract import FEATURES
from training.repository import (
    PLATFORM_SKLEARN,
    PLATFORM_TENSORFLOW,
    RepositoryError,
    load_sklearn_model,
    read_manifest,
    verify_saved_model,
)

PredictFn = Callable[[pd.DataFrame], np.ndarray]


def load_predictor(version_dir: Path) -> PredictFn:
    """A predict function for the version folder, whatever its platform."""
    platform = read_manifest(version_dir).get("platform")
    if platform == PLATFORM_SKLEARN:
        pipeline = load_sklearn_model(version_dir)

        def predict_sklearn(frame: pd.DataFrame) -> np.ndarray:
            return np.asarray(pipeline.predict(frame[list(FEATURES)]), dtype=float)

        return predict_sklearn
    if platform == PLATFORM_TENSORFLOW:
        from training.keras_export import signature_predictor

        return signature_predictor(verify_saved_model(version_dir))
    raise RepositoryError(f"{version_dir}: unknown platform {platform!r} in manifest")
