"""Helpers shared by the model server's tests (request builders live in load_tests)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from core.contract import FEATURES


def instances(frame: pd.DataFrame) -> list[dict]:
    rows = []
    for record in frame[list(FEATURES)].to_dict(orient="records"):
        rows.append(
            {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in record.items()}
        )
    return rows


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of one metric whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total
