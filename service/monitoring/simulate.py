"""Demo traffic: realistic rows, optionally shifted, sent through the gateway's REST API.

Rows come from the book's test split (never seen in training), so unshifted traffic should
not drift. The shifts mimic what a real market change looks like:

- ``income``: ``median_income`` x 1.5 (richer districts; the cap at 15 is kept);
- ``ocean``:  the ``ocean_proximity`` mix moved to INLAND (rows resampled so that about
  60% are INLAND instead of 32%; the other features come with their rows, as they would);
- ``both``:   the two together; ``none``: unshifted traffic, for comparison.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pandas as pd

from core.contract import CATEGORICAL_FEATURE, FEATURES

SHIFTS = ("income", "ocean", "both", "none")
INCOME_FACTOR = 1.5
INCOME_CAP = 15.0001
INLAND_SHARE = 0.6


def shifted_rows(frame: pd.DataFrame, rows: int, shift: str, seed: int = 0) -> pd.DataFrame:
    """``rows`` feature rows drawn from ``frame`` with the named shift applied."""
    if shift not in SHIFTS:
        raise ValueError(f"shift must be one of {', '.join(SHIFTS)}, got {shift!r}")
    rng = np.random.default_rng(seed)
    weights = np.ones(len(frame))
    if shift in {"ocean", "both"}:
        inland = (frame[CATEGORICAL_FEATURE] == "INLAND").to_numpy()
        weights[inland] = INLAND_SHARE / inland.mean()
        weights[~inland] = (1 - INLAND_SHARE) / (~inland).mean()
    # With replacement: without it, a large draw runs out of INLAND rows and the mix sags.
    picked = rng.choice(len(frame), size=rows, replace=True, p=weights / weights.sum())
    out = frame.iloc[picked][list(FEATURES)].reset_index(drop=True)
    if shift in {"income", "both"}:
        out["median_income"] = (out["median_income"] * INCOME_FACTOR).clip(upper=INCOME_CAP)
    return out


def instances(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready instances: NaN (missing total_bedrooms) becomes null."""
    records = frame.to_dict(orient="records")
    return [
        {str(k): (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        for r in records
    ]


def send(
    client: httpx.Client,
    frame: pd.DataFrame,
    model: str | None,
    batch: int,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """POST ``frame`` in batches of ``batch`` instances; count answers by status code."""
    path = f"/v1/models/{model}:predict" if model else "/v1/predict"
    codes: dict[str, int] = {}
    for start in range(0, len(frame), batch):
        chunk = frame.iloc[start : start + batch]
        response = client.post(path, json={"instances": instances(chunk)})
        codes[str(response.status_code)] = codes.get(str(response.status_code), 0) + 1
        if progress is not None:
            progress(len(chunk))
    return codes


def trigger_report(
    client: httpx.Client, model: str | None = None, since: float | None = None
) -> dict[str, Any] | None:
    """Ask the gateway's drift monitor for a report now over the traffic since ``since``
    (Unix seconds: the rows this run sent, not older traffic) for ``model``."""
    params: dict[str, Any] = {}
    if model:
        params["model"] = model
    if since is not None:
        params["since"] = since
    response = client.post("/v1/monitoring/drift:run", params=params, timeout=120)
    if response.status_code != 200:
        return {"status": response.status_code, "detail": response.json().get("detail")}
    return response.json()
