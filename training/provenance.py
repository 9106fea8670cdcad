"""What a manifest records about where a model came from: data and library versions."""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

from training.data import DATA_SHA256, Split

TRACKED_LIBRARIES = (
    "scikit-learn",
    "numpy",
    "pandas",
    "scipy",
    "joblib",
    "tensorflow",
    "keras",
)


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def data_info(split: Split, source: str = "data/housing.tgz") -> dict[str, Any]:
    return {
        "source": source,
        "sha256": DATA_SHA256,
        "train_rows": int(len(split.train)),
        "test_rows": int(len(split.test)),
        "split": "stratified on income_cat, test_size=0.2, random_state=42",
    }
