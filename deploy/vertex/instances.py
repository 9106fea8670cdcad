"""Instances in the gateway's format (``{feature: value}``), with missing values encoded for
the model's container.

JSON has no NaN, and TF Serving's JSON parser (inside Google's prebuilt TensorFlow
containers) rejects ``null`` for a float input; only the project's server accepts it. So
for ``housing_keras`` a missing value is sent as the value the SavedModel substitutes for
it anyway — its training median, read from the model version itself — and the prediction
is exactly the one for the missing value. ``housing_sklearn`` only runs on the project's
image, whose pipeline imputes ratios and logs on its own: it gets ``null``.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd

from core.contract import FEATURES, NULLABLE_FEATURES, OUTPUT_NAME
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


def to_instances(frame: pd.DataFrame, fill: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """One gateway instance per row, with exactly the 9 features; a missing value becomes
    ``fill[feature]`` when given, else null."""
    fill = fill or {}
    columns = [frame[name].tolist() for name in FEATURES]
    instances = []
    for i in range(len(frame)):
        instance = {name: json_value(col[i]) for name, col in zip(FEATURES, columns, strict=True)}
        for name, value in fill.items():
            if instance.get(name) is None:
                instance[name] = value
        instances.append(instance)
    return instances


def missing_value_encoding(version_dir: Path, platform: str) -> dict[str, float]:
    """What to send for a missing value to this model version's container (see above).

    For a SavedModel: the medians its ``HousingFeatures`` layer substitutes for NaN, from
    the ``.keras`` file exported next to it (the same numbers as in the graph)."""
    if platform != "tensorflow":
        return {}
    keras_file = version_dir / "assets.extra" / "model.keras"
    try:
        with zipfile.ZipFile(keras_file) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise UserError(f"{keras_file}: cannot read the model's imputation ({exc})") from None
    medians = find_key(config, "medians")
    if not isinstance(medians, dict) or not set(NULLABLE_FEATURES) <= set(medians):
        raise UserError(f"{keras_file}: no training medians for {', '.join(NULLABLE_FEATURES)}")
    return {name: float(medians[name]) for name in NULLABLE_FEATURES}


def find_key(tree: Any, key: str) -> Any:
    """The first value stored under ``key`` anywhere in a nested JSON document."""
    if isinstance(tree, dict):
        if key in tree:
            return tree[key]
        tree = list(tree.values())
    if isinstance(tree, list):
        for item in tree:
            found = find_key(item, key)
            if found is not None:
                return found
    return None


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
