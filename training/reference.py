"""The drift monitor's reference: a fixed sample of the training split with predictions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from core.contract import FEATURES, TARGET

REFERENCE_NAME = "reference.parquet"
REFERENCE_ROWS = 2_000


def reference_sample(
    train: pd.DataFrame,
    predict: Callable[[pd.DataFrame], np.ndarray],
    rows: int = REFERENCE_ROWS,
    seed: int = 42,
) -> pd.DataFrame:
    """9 features, the true target and the model's prediction for a training sample."""
    sample = train.sample(n=min(rows, len(train)), random_state=seed)
    frame = sample[[*FEATURES, TARGET]].reset_index(drop=True)
    frame["prediction"] = np.asarray(predict(frame[list(FEATURES)]), dtype=float).ravel()
    return frame


def write_reference(version_dir: Path, frame: pd.DataFrame) -> dict[str, object]:
    """Write reference.parquet; return the manifest's ``reference`` block."""
    frame.to_parquet(version_dir / REFERENCE_NAME, index=False)
    return {"path": REFERENCE_NAME, "rows": int(len(frame))}


def read_reference(version_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(version_dir / REFERENCE_NAME)
