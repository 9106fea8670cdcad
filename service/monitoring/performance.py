"""Live model performance once ground truth arrives: join labels to the prediction log.

Labels come late (a sale closes months after the estimate), as a CSV of ``request_id`` and
``median_house_value``, plus ``instance`` (0-based position in the request) for requests
that carried several instances (they share one request_id in the log). Joined to the
logged predictions, they give the RMSE and MAE per model version (by Evidently's
regression metrics and, as a cross-check, directly) and per time window (directly:
windows are many and small).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from core.contract import TARGET
from training.data import DataError

LABEL_COLUMNS = ("request_id", TARGET)


def read_labels(path: Path | str) -> pd.DataFrame:
    """Labels CSV (or Parquet) -> request_id, median_house_value; clear errors."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"labels file not found: {path}")
    try:
        frame = pd.read_parquet(path) if path.suffix in {".parquet", ".pq"} else pd.read_csv(path)
    except Exception as exc:
        raise DataError(f"cannot read labels {path}: {exc}") from exc
    missing = [c for c in LABEL_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"labels {path} is missing column(s): {', '.join(missing)}")
    keep = [*LABEL_COLUMNS, *(["instance"] if "instance" in frame.columns else [])]
    frame = frame[keep].copy()
    frame["request_id"] = frame["request_id"].astype(str)
    if "instance" in frame.columns:
        frame["instance"] = pd.to_numeric(frame["instance"], errors="coerce")
        if frame["instance"].isna().any():
            raise DataError(f"labels {path}: column instance has missing or non-numeric values")
        frame["instance"] = frame["instance"].astype(int)
    frame[TARGET] = pd.to_numeric(frame[TARGET], errors="coerce")
    if frame[TARGET].isna().any():
        raise DataError(f"labels {path}: column {TARGET} has missing or non-numeric values")
    return frame.drop_duplicates([c for c in keep if c != TARGET], keep="last")


def join(log: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Logged predictions that have a label (inner join).

    A request with several instances logs them, in order, under one request_id: with an
    ``instance`` column the labels join on (request_id, instance); without it only
    single-instance requests join, so a label is never applied to the wrong row.
    """
    log = log.assign(instance=log.groupby("request_id").cumcount())
    if "instance" in labels.columns:
        return log.merge(labels, on=["request_id", "instance"], how="inner")
    once = log[~log["request_id"].duplicated(keep=False)]
    return once.merge(labels, on="request_id", how="inner")


def _errors(frame: pd.DataFrame) -> dict[str, Any]:
    error = frame["prediction"].to_numpy(float) - frame[TARGET].to_numpy(float)
    return {
        "rows": int(len(frame)),
        "rmse": float(math.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
        "bias": float(np.mean(error)),
    }


def evidently_errors(frame: pd.DataFrame) -> dict[str, float]:
    """RMSE and MAE from Evidently's regression metrics (same numbers, audited library)."""
    from evidently import DataDefinition, Dataset, Regression, Report
    from evidently.metrics import MAE, RMSE

    data = frame[[TARGET, "prediction"]].astype(float).reset_index(drop=True)
    definition = DataDefinition(
        numerical_columns=[TARGET, "prediction"],
        regression=[Regression(target=TARGET, prediction="prediction")],
    )
    snapshot = Report([RMSE(), MAE()]).run(Dataset.from_pandas(data, data_definition=definition))
    values = {}
    for metric in snapshot.dict()["metrics"]:
        kind = metric["config"]["type"].rsplit(":", 1)[-1].lower()
        value = metric["value"]
        values[kind] = float(value["mean"] if isinstance(value, dict) else value)
    return values


def _by_version(joined: pd.DataFrame) -> list[pd.DataFrame]:
    version = joined["version"].fillna(-1).astype(int)
    return [group for _, group in joined.assign(version=version).groupby(["model", "version"])]


def version_errors(joined: pd.DataFrame) -> list[dict[str, Any]]:
    """RMSE, MAE and bias per (model, version) of joined predictions (version None: unknown)."""
    rows = []
    for group in _by_version(joined):
        version = int(group["version"].iloc[0])
        rows.append(
            {
                "model": str(group["model"].iloc[0]),
                "version": None if version < 0 else version,
                **_errors(group),
            }
        )
    return rows


def performance(log: pd.DataFrame, labels: pd.DataFrame, window_seconds: float) -> dict[str, Any]:
    """RMSE/MAE by model version (Evidently + direct) and by fixed time window."""
    if window_seconds <= 0:
        raise DataError("window must be positive")
    joined = join(log, labels)
    report: dict[str, Any] = {
        "logged_rows": int(len(log)),
        "labels": int(len(labels)),
        "joined_rows": int(len(joined)),
        "unmatched_labels": int(len(labels) - len(joined)),
        "window_seconds": window_seconds,
        "by_version": [],
        "by_window": [],
    }
    if joined.empty:
        return report
    joined = joined.assign(version=joined["version"].fillna(-1).astype(int))
    for row, group in zip(version_errors(joined), _by_version(joined), strict=True):
        report["by_version"].append(row | {"evidently": evidently_errors(group)})
    start = (joined["ts"] // window_seconds) * window_seconds
    by_window = joined.assign(window=start).groupby(["model", "version", "window"], sort=True)
    for key, group in by_window:
        model, version, begin = cast(tuple[str, int, float], key)
        window_row: dict[str, Any] = {
            "model": model,
            "version": None if version < 0 else int(version),
            "window_start": float(begin),
            "window_end": float(begin + window_seconds),
        }
        report["by_window"].append(window_row | _errors(group))
    return report
