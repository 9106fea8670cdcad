"""Load any published model version as an in-process ``predict(DataFrame) -> USD`` function.

Used where a pipeline needs the same model the servers serve (evaluation, retraining,
benchmarks' in-process baseline) without going through the network.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from training.repository import (
    PLATFORM_SKLEARN,
    PLATFORM_TENSORFLOW,
    RepositoryError,
    load_sklearn_model,
    read_manifest,
)
from training.schema import CATEGORICAL_FEATURE, FEATURES, OUTPUT_NAME, SIGNATURE_NAME

Predictor = Callable[[pd.DataFrame], np.ndarray]


def savedmodel_inputs(frame: pd.DataFrame) -> dict:
    """The ▶ signature's tensors for a frame of raw features (NaN for missing values)."""
    import tensorflow as tf

    tensors = {}
    for name in FEATURES:
        if name == CATEGORICAL_FEATURE:
            tensors[name] = tf.constant(frame[name].astype(str).to_numpy(), dtype=tf.string)
        else:
            values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float32)
            tensors[name] = tf.constant(values, dtype=tf.float32)
    return tensors


def load_predictor(version_dir: Path) -> Predictor:
    """A predict function for the version folder, whatever its platform."""
    platform = read_manifest(version_dir).get("platform")
    if platform == PLATFORM_SKLEARN:
        pipeline = load_sklearn_model(version_dir)

        def predict_sklearn(frame: pd.DataFrame) -> np.ndarray:
            return np.asarray(pipeline.predict(frame[list(FEATURES)]), dtype=float)

        return predict_sklearn
    if platform == PLATFORM_TENSORFLOW:
        import tensorflow as tf

        signature = tf.saved_model.load(str(version_dir)).signatures[SIGNATURE_NAME]

        def predict_savedmodel(frame: pd.DataFrame, batch: int = 4096) -> np.ndarray:
            parts = [
                signature(**savedmodel_inputs(frame.iloc[i : i + batch]))[OUTPUT_NAME].numpy()
                for i in range(0, len(frame), batch)
            ]
            return np.concatenate(parts).astype(float) if parts else np.empty(0)

        return predict_savedmodel
    raise RepositoryError(f"{version_dir}: unknown platform {platform!r} in manifest")
