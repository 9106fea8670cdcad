"""Instances in the gateway's format (``{feature: value}``, null for a missing value)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from core.contract import FEATURES, OUTPUT_NAME
from core.errors import UserError


def read_table(path: Path) -> pd.DataFrame:
    """A CSV, Parquet, JSON (a list or ``{"instances": [...]}``) or JSONL file as a frame."""
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path)
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif suffix in (".jsonl", ".ndjson"):
            frame = pd.read_json(path, lines=True, dtype=False)
        elif suffix == ".json":
            body = json.loads(path.read_text())
            rows = body.get("instances") if isinstance(body, dict) else body
            if not isinstance(rows, list):
                raise UserError(f'{path}: expected a list or {{"instances": [...]}}')
            frame = pd.DataFrame(rows)
        else:
            raise UserError(f"{path}: unsupported extension {suffix!r} (csv/parquet/json/jsonl)")
    except (ValueError, OSError) as exc:
        raise UserError(f"{path}: cannot read ({' '.join(str(exc).split())})") from None
    missing = [name for name in FEATURES if name not in frame.columns]
    if missing:
        raise UserError(f"{path}: missing feature column(s) {', '.join(missing)}")
    if frame.empty:
        raise UserError(f"{path}: no instances")
    return frame


def json_value(value: Any) -> Any:
    """Plain JSON scalars: numpy numbers to Python, NaN/None to null."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    number = float(value)
    return None if math.isnan(number) else number


def to_instances(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """One gateway instance per row, with exactly the 9 features."""
    columns = [frame[name].tolist() for name in FEATURES]
    return [
        {name: json_value(col[i]) for name, col in zip(FEATURES, columns, strict=True)}
        for i in range(len(frame))
    ]


def instance_key(instance: dict[str, Any]) -> str:
    """Canonical text of an instance: batch results come back unordered, matched on this."""
    return json.dumps({name: json_value(instance.get(name)) for name in FEATURES}, sort_keys=True)


def prediction_value(prediction: Any) -> float:
    """A prediction from the gateway (``{"median_house_value": x}``) or TF Serving (x or [x])."""
    if isinstance(prediction, dict):
        prediction = prediction[OUTPUT_NAME]
    if isinstance(prediction, list):
        (prediction,) = prediction
    return float(prediction)
