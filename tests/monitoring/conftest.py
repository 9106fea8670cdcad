"""Monitoring fixtures: a real reference.parquet in a models folder, a filled prediction log."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from core.contract import FEATURES, SKLEARN_MODEL
from service.monitoring.simulate import shifted_rows
from service.prediction_log import PredictionLog, PredictionRecord
from training.data import Split
from training.reference import reference_sample, write_reference
from training.repository import PLATFORM_SKLEARN, ModelRepository


def predict(frame: pd.DataFrame):
    """A stand-in model: the reference only needs a prediction column."""
    return frame["median_income"].to_numpy() * 40_000.0


@pytest.fixture(scope="session")
def reference(split: Split) -> pd.DataFrame:
    return reference_sample(split.train, predict)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory, reference: pd.DataFrame) -> Path:
    root = tmp_path_factory.mktemp("models")
    version_dir = root / SKLEARN_MODEL / "1"
    version_dir.mkdir(parents=True)
    block = write_reference(version_dir, reference)
    manifest = {"model": SKLEARN_MODEL, "version": 1, "reference": block}
    (version_dir / "manifest.json").write_text(json.dumps(manifest))
    ModelRepository(root).register(SKLEARN_MODEL, PLATFORM_SKLEARN)  # served by default: 1
    return root


def fill_log(
    path: Path,
    frame: pd.DataFrame,
    version: int = 1,
    ts: float | None = None,
    model: str = SKLEARN_MODEL,
) -> None:
    """Write rows through the real PredictionLog (group-commit writer), as the gateway does."""
    log = PredictionLog(path)
    now = time.time() if ts is None else ts
    records = [
        PredictionRecord(
            request_id=uuid.uuid4().hex,
            model=model,
            version=version,
            features={k: row[k] for k in FEATURES},
            prediction=float(row["median_income"]) * 40_000.0,
            ts=now,
        )
        for row in frame.to_dict(orient="records")
    ]
    log.append(records).result(timeout=30)
    log.close()


@pytest.fixture(scope="session")
def income_shifted(split: Split) -> pd.DataFrame:
    return shifted_rows(split.test, 500, "income", seed=3)


@pytest.fixture(scope="session")
def ocean_shifted(split: Split) -> pd.DataFrame:
    return shifted_rows(split.test, 500, "ocean", seed=4)
