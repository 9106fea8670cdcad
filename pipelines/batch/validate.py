"""Row validation: which rows can be scored, and why each of the others cannot.

A rejected row is never dropped silently: its 1-based row number and the reason go to the
errors file, and its prediction is left empty in the output (row count and order kept).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.contract import (
    CATEGORICAL_FEATURE,
    COUNT_FEATURES,
    NULLABLE_FEATURES,
    NUMERIC_FEATURES,
    OCEAN_PROXIMITY_CATEGORIES,
)
from pipelines.batch.reader import PARSE_ERROR

NON_FINITE_TEXT = {
    "nan",
    "+nan",
    "-nan",
    "inf",
    "+inf",
    "-inf",
    "infinity",
    "+infinity",
    "-infinity",
}


@dataclass
class Checked:
    """A validated chunk: the feature arrays of the valid rows and the reasons of the others."""

    valid: np.ndarray  # bool mask over the chunk's rows
    numeric: dict[str, np.ndarray]  # float32 arrays, valid rows only (NaN = missing)
    category: np.ndarray  # object array of str, valid rows only
    reasons: dict[int, list[str]]  # chunk-relative row index -> reasons


def shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def column(chunk: pd.DataFrame, name: str) -> pd.Series:
    if name in chunk.columns:
        return chunk[name].reset_index(drop=True)
    return pd.Series([None] * len(chunk), dtype=object)


def is_missing(raw: pd.Series) -> np.ndarray:
    missing = raw.isna().to_numpy().copy()
    if raw.dtype == object:
        missing |= raw.map(lambda v: isinstance(v, str) and not v.strip()).to_numpy(bool)
    return missing


def to_float(raw: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values as float64, non-numeric mask, non-finite mask), missing values excluded."""
    missing = is_missing(raw)
    if raw.dtype.kind in "iuf":
        values = raw.to_numpy(np.float64)
        return values, np.zeros(len(raw), bool), ~missing & ~np.isfinite(values)
    booleans = raw.map(lambda v: isinstance(v, bool | np.bool_)).to_numpy(bool)
    values = pd.to_numeric(raw.where(~booleans), errors="coerce").to_numpy(np.float64)
    text = raw.map(lambda v: v.strip().lower() if isinstance(v, str) else "")
    nan_text = text.isin(NON_FINITE_TEXT).to_numpy(bool)
    non_numeric = ~missing & (booleans | (np.isnan(values) & ~nan_text))
    non_finite = ~missing & ~non_numeric & ~np.isfinite(values)
    return values, non_numeric, non_finite


def validate(chunk: pd.DataFrame) -> Checked:
    rows = len(chunk)
    reasons: dict[int, list[str]] = {}

    def reject(mask: np.ndarray, raw: pd.Series, name: str, what: str) -> None:
        for i in np.flatnonzero(mask):
            value = raw.iat[int(i)]
            detail = f" ({shown(value)})" if what != "missing required value" else ""
            if what == "unknown category":
                detail += f", expected one of {', '.join(OCEAN_PROXIMITY_CATEGORIES)}"
            reasons.setdefault(int(i), []).append(f"{name}: {what}{detail}")

    if PARSE_ERROR in chunk.columns:
        parse = column(chunk, PARSE_ERROR)
        for i in np.flatnonzero(parse.notna().to_numpy()):
            reasons.setdefault(int(i), []).append(str(parse.iat[int(i)]))

    numeric: dict[str, np.ndarray] = {}
    for name in NUMERIC_FEATURES:
        raw = column(chunk, name)
        values, non_numeric, non_finite = to_float(raw)
        missing = is_missing(raw)
        if name not in NULLABLE_FEATURES:
            reject(missing, raw, name, "missing required value")
        reject(non_numeric, raw, name, "not a number")
        reject(non_finite, raw, name, "not a finite number")
        if name in COUNT_FEATURES:
            with np.errstate(invalid="ignore"):
                reject(values < 0, raw, name, "negative count")
        numeric[name] = values

    raw = column(chunk, CATEGORICAL_FEATURE)
    missing = is_missing(raw)
    known = raw.isin(OCEAN_PROXIMITY_CATEGORIES).to_numpy(bool)
    reject(missing, raw, CATEGORICAL_FEATURE, "missing required value")
    reject(
        ~missing & ~known,
        raw,
        CATEGORICAL_FEATURE,
        "unknown category",
    )

    valid = np.ones(rows, bool)
    if reasons:
        valid[list(reasons)] = False
    return Checked(
        valid=valid,
        numeric={name: values[valid].astype(np.float32) for name, values in numeric.items()},
        category=raw.to_numpy(object)[valid],
        reasons=reasons,
    )
