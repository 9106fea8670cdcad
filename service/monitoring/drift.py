"""Data drift between a reference sample and current traffic (Evidently 0.7), as ▶ drift.json.

Why these tests and thresholds (not Evidently's defaults):

- Evidently picks Wasserstein / Jensen-Shannon *distances* with a fixed 0.1 cut-off once the
  reference has more than 1,000 rows. A distance estimated from 200 rows is noisy, so
  unshifted small samples get flagged, while its flag does not sharpen with more rows.
- Its ``chisquare`` treats the reference proportions as exact (goodness of fit), which
  overstates the evidence when the current sample is as large as the reference: unshifted
  4,000-row windows get flagged. We register ``chi2_homogeneity`` instead: the two-sample
  chi-square test of homogeneity on the 2 x k count table, categories with fewer than 5
  rows in both samples pooled (``ISLAND`` has 5 rows in the whole dataset).
- Numeric columns use the two-sample Kolmogorov-Smirnov test on values cast to float32 on
  both sides (the served signature is DT_FLOAT, so a float64 reference and a float32 round
  trip of the same values would otherwise stop tying).
- A column drifts when its p-value is below 0.0001; the dataset drifts when at least one
  of the 9 columns does (drift share >= 0.1). Measured with ``python -m
  service.monitoring.calibrate`` (300 random windows per cell, 2,000-row training
  reference): unshifted windows of 200 to 4,000 rows are flagged 0% of the time (1.0% at
  200 rows with a 0.001 cut-off, hence 0.0001); median_income x 1.5 and a mix of 60%
  INLAND are flagged 100% of the time from 200 rows on, milder shifts (income x 1.2, a
  quarter of the rows moved to INLAND) 80% at 200 rows and 100% from 500 rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.contract import CATEGORICAL_FEATURE, FEATURES, NUMERIC_FEATURES
from training.data import DataError

CHI2_HOMOGENEITY = "chi2_homogeneity"
NUMERIC_METHOD = "ks"
COLUMN_P_VALUE = 0.0001
DATASET_DRIFT_SHARE = 0.1
MIN_ROWS = 30
MIN_CATEGORY_ROWS = 5


class DriftInputError(DataError):
    """Input that cannot be compared (missing columns, empty or tiny window): a user error."""


@dataclass(frozen=True)
class DriftConfig:
    """Per-column tests and the two thresholds of the drift decision."""

    num_method: str = NUMERIC_METHOD
    cat_method: str = CHI2_HOMOGENEITY
    column_threshold: float = COLUMN_P_VALUE
    drift_share: float = DATASET_DRIFT_SHARE
    min_rows: int = MIN_ROWS

    def thresholds(self) -> dict[str, Any]:
        return {
            "column_p_value": self.column_threshold,
            "dataset_drift_share": self.drift_share,
            "min_rows": self.min_rows,
            "numeric_method": self.num_method,
            "categorical_method": self.cat_method,
        }


@dataclass
class DriftResult:
    """The drift.json payload and the Evidently snapshot behind it (for the HTML)."""

    summary: dict[str, Any]
    snapshot: Any = field(repr=False)

    @property
    def dataset_drift(self) -> bool:
        return bool(self.summary["dataset_drift"])

    def html(self) -> str:
        return str(self.snapshot.get_html_str(as_iframe=False))

    def save(self, output_dir: Path | str) -> tuple[Path, Path]:
        """Write drift.json and drift.html (Evidently needs a str path: a Path writes nothing)."""
        import json

        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        json_path, html_path = output_dir / "drift.json", output_dir / "drift.html"
        json_path.write_text(json.dumps(self.summary, indent=2, sort_keys=True) + "\n")
        self.snapshot.save_html(str(html_path))
        return json_path, html_path


def chi2_homogeneity_p_value(reference: pd.Series, current: pd.Series) -> float:
    """p-value that both samples come from one categorical distribution (two-sample test)."""
    from scipy.stats import chi2_contingency

    keys = sorted(set(reference.dropna().astype(str)) | set(current.dropna().astype(str)))
    ref = reference.dropna().astype(str).value_counts().reindex(keys, fill_value=0).to_numpy()
    cur = current.dropna().astype(str).value_counts().reindex(keys, fill_value=0).to_numpy()
    common = (ref + cur) >= MIN_CATEGORY_ROWS
    table = np.vstack([ref[common], cur[common]])
    rare = np.array([[ref[~common].sum()], [cur[~common].sum()]])
    if rare.sum() >= MIN_CATEGORY_ROWS:
        table = np.hstack([table, rare])
    if table.shape[1] < 2 or table.sum(axis=1).min() == 0:
        return 1.0
    return float(chi2_contingency(table, correction=False)[1])


def _register_chi2_homogeneity() -> None:
    """Make ``chi2_homogeneity`` a named Evidently stat test (idempotent)."""
    from evidently.legacy.calculations.stattests.registry import (
        StatTest,
        _registered_stat_tests,
        register_stattest,
    )
    from evidently.legacy.core import ColumnType

    if CHI2_HOMOGENEITY in _registered_stat_tests:
        return

    def impl(
        reference: Any, current: Any, feature_type: Any, threshold: float
    ) -> tuple[float, bool]:
        p_value = chi2_homogeneity_p_value(reference, current)
        return p_value, p_value < threshold

    register_stattest(
        StatTest(
            name=CHI2_HOMOGENEITY,
            display_name="chi-square homogeneity p_value",
            allowed_feature_types=[ColumnType.Categorical],
            default_threshold=COLUMN_P_VALUE,
        ),
        default_impl=impl,
    )


def prepare(frame: pd.DataFrame, role: str, min_rows: int = MIN_ROWS) -> pd.DataFrame:
    """The 9 features, typed for the tests; a clear error naming what is wrong."""
    missing = [name for name in FEATURES if name not in frame.columns]
    if missing:
        raise DriftInputError(f"{role} data is missing column(s): {', '.join(missing)}")
    if len(frame) == 0:
        raise DriftInputError(f"{role} data is empty (0 rows)")
    if len(frame) < min_rows:
        raise DriftInputError(
            f"{role} data has {len(frame)} rows; at least {min_rows} are needed for a drift test"
        )
    out = pd.DataFrame(index=range(len(frame)))
    for name in NUMERIC_FEATURES:
        values = pd.to_numeric(frame[name].reset_index(drop=True), errors="coerce")
        bad = values.isna() & frame[name].reset_index(drop=True).notna()
        if bad.any():
            raise DriftInputError(f"{role} data: column {name} has non-numeric values")
        values = values.replace([np.inf, -np.inf], np.nan)
        if values.notna().sum() == 0:
            raise DriftInputError(f"{role} data: column {name} has no values")
        out[name] = values.astype("float32")
    category = frame[CATEGORICAL_FEATURE].reset_index(drop=True)
    if category.notna().sum() == 0:
        raise DriftInputError(f"{role} data: column {CATEGORICAL_FEATURE} has no values")
    out[CATEGORICAL_FEATURE] = category.where(category.isna(), category.astype(str))
    return out


def describe(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Small per-column summary (mean/std/missing or category shares) for humans."""
    out: dict[str, dict[str, Any]] = {}
    for name in NUMERIC_FEATURES:
        col = frame[name].astype(float)
        out[name] = {
            "mean": _finite(col.mean()),
            "std": _finite(col.std()),
            "missing": int(col.isna().sum()),
        }
    shares = frame[CATEGORICAL_FEATURE].value_counts(normalize=True)
    out[CATEGORICAL_FEATURE] = {
        "shares": {str(k): round(float(v), 4) for k, v in shares.items()},
        "missing": int(frame[CATEGORICAL_FEATURE].isna().sum()),
    }
    return out


def _finite(value: float) -> float | None:
    return round(float(value), 6) if value is not None and math.isfinite(value) else None


def compare(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    config: DriftConfig | None = None,
    reference_info: dict[str, Any] | None = None,
    current_info: dict[str, Any] | None = None,
) -> DriftResult:
    """Run Evidently's DataDriftPreset on the 9 features and convert its result."""
    config = config or DriftConfig()
    ref = prepare(reference, "reference", config.min_rows)
    cur = prepare(current, "current", config.min_rows)

    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    _register_chi2_homogeneity()
    definition = DataDefinition(
        numerical_columns=list(NUMERIC_FEATURES), categorical_columns=[CATEGORICAL_FEATURE]
    )
    report = Report(
        [
            DataDriftPreset(
                columns=list(FEATURES),
                num_method=config.num_method,
                cat_method=config.cat_method,
                threshold=config.column_threshold,
                drift_share=config.drift_share,
            )
        ],
        include_tests=True,
    )
    # Evidently's order: current first, reference second.
    snapshot = report.run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    summary = summarize(snapshot.dict(), config)
    ref_desc, cur_desc = describe(ref), describe(cur)
    for name, column in summary["columns"].items():
        column["reference"], column["current"] = ref_desc[name], cur_desc[name]
    summary["reference"] = {**(reference_info or {}), "rows": len(ref)}
    summary["current"] = {**(current_info or {}), "rows": len(cur)}
    return DriftResult(summary=summary, snapshot=snapshot)


def summarize(report: dict[str, Any], config: DriftConfig) -> dict[str, Any]:
    """Evidently's snapshot dict -> the ▶ drift.json shape (plus thresholds and counts)."""
    import evidently

    flags: dict[str, bool] = {}
    for test in report.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        if params.get("type", "").endswith(":ValueDrift"):
            flags[params["column"]] = test["status"] != "SUCCESS"
    columns: dict[str, dict[str, Any]] = {}
    share = None
    for metric in report["metrics"]:
        cfg = metric["config"]
        kind = cfg.get("type", "")
        if kind.endswith(":ValueDrift"):
            name = cfg["column"]
            if name not in flags:
                raise RuntimeError(f"Evidently returned no drift test for column {name}")
            columns[name] = {
                "drift_detected": flags[name],
                "score": float(metric["value"]),
                "method": cfg.get("method") or "",
                "threshold": cfg.get("threshold"),
                "type": "categorical" if name == CATEGORICAL_FEATURE else "numerical",
            }
        elif kind.endswith(":DriftedColumnsCount"):
            share = float(metric["value"]["share"])
    missing = [name for name in FEATURES if name not in columns]
    if missing or share is None:
        raise RuntimeError(f"Evidently's report lacks drift results for {missing or 'the share'}")
    drifted = sum(c["drift_detected"] for c in columns.values())
    return {
        # Evidently's own dataset test: drifted when share is not below drift_share.
        "dataset_drift": share >= config.drift_share,
        "drift_share": share,
        "drifted_columns": drifted,
        "number_of_columns": len(columns),
        "columns": {name: columns[name] for name in FEATURES},
        "thresholds": config.thresholds(),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "evidently_version": evidently.__version__,
    }
