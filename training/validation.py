"""Validate a fresh batch of labelled data before it is allowed to train a model.

Checks go beyond the schema (``training.data.validate_frame``): value ranges seen in the
book's data, missing-value rates and category coverage. Each problem is a readable line;
the pipeline stops before training when any check fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.contract import (
    CATEGORICAL_FEATURE,
    COUNT_FEATURES,
    NULLABLE_FEATURES,
    NUMERIC_FEATURES,
    TARGET,
)
from training.data import DataError, validate_frame

# Plausible ranges for California block groups (the census data and a generous margin).
RANGES: dict[str, tuple[float, float]] = {
    "longitude": (-125.0, -114.0),
    "latitude": (32.0, 42.5),
    "housing_median_age": (0.0, 100.0),
    "median_income": (0.0, 30.0),
    TARGET: (1.0, 1_000_000.0),
}
MAX_MISSING_RATE = 0.05
MIN_ROWS = 500


@dataclass
class ValidationReport:
    rows: int
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows": self.rows,
            "errors": self.errors,
            "warnings": self.warnings,
            "stats": self.stats,
        }


def validate_training_data(frame: pd.DataFrame, min_rows: int = MIN_ROWS) -> ValidationReport:
    """Schema, ranges, missing-value rates and categories of a labelled dataset."""
    report = ValidationReport(rows=int(len(frame)))
    try:
        frame = validate_frame(frame, require_target=True)
    except DataError as exc:
        report.errors.append(f"schema: {exc}")
        return report
    if len(frame) < min_rows:
        report.errors.append(f"rows: {len(frame)} rows, at least {min_rows} needed to retrain")
    for column in (*NUMERIC_FEATURES, TARGET):
        values = frame[column]
        missing = float(values.isna().mean())
        report.stats[column] = {
            "missing_rate": missing,
            "min": _finite_or_none(values.min()),
            "max": _finite_or_none(values.max()),
        }
        if column not in NULLABLE_FEATURES and missing > 0:
            report.errors.append(f"{column}: {missing:.1%} missing, none allowed")
        elif missing > MAX_MISSING_RATE:
            report.errors.append(f"{column}: {missing:.1%} missing, at most {MAX_MISSING_RATE:.0%}")
        present = values.dropna()
        if not np.isfinite(present.to_numpy(dtype=float)).all():
            report.errors.append(f"{column}: non-finite values")
            continue
        if column in COUNT_FEATURES and (present < 0).any():
            report.errors.append(f"{column}: {int((present < 0).sum())} negative counts")
        low, high = RANGES.get(column, (None, None))
        if low is not None and high is not None:
            outside = int(((present < low) | (present > high)).sum())
            if outside:
                report.errors.append(
                    f"{column}: {outside} values outside the plausible range [{low}, {high}]"
                )
    shares = frame[CATEGORICAL_FEATURE].value_counts(normalize=True)
    report.stats[CATEGORICAL_FEATURE] = {str(k): float(v) for k, v in shares.items()}
    absent = [c for c in ("<1H OCEAN", "INLAND") if c not in shares.index]
    if absent:
        report.warnings.append(f"{CATEGORICAL_FEATURE}: main categories absent: {absent}")
    return report


def _finite_or_none(value: Any) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None
