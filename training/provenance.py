"""What a manifest records about where a model came from: data and library versions.

The data block describes the rows the model was actually fitted on — its SHA-256 and row
count — not only the file they came from: a retrained version fitted on new data, or a
version fitted on a sample, says so. The digest is over the rows as CSV (columns in order,
no index, ``\\n`` line ends), so anyone can recompute it from a DataFrame.
"""

from __future__ import annotations

import hashlib
import platform
from importlib import metadata
from typing import Any

import pandas as pd

from training.data import DATA_SHA256, Split

BOOK_ARCHIVE = "data/housing.tgz"
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


def frame_sha256(frame: pd.DataFrame) -> str:
    """SHA-256 of the rows as CSV (columns in order, no index, ``\\n`` line ends)."""
    return hashlib.sha256(frame.to_csv(index=False, lineterminator="\n").encode()).hexdigest()


def data_info(split: Split) -> dict[str, Any]:
    """The manifest's ``data`` block: ``split.train`` must be the rows actually fitted (the
    trainers narrow it to their sample), ``split.source`` where they came from."""
    info: dict[str, Any] = {
        "source": split.source or BOOK_ARCHIVE,
        "train_sha256": frame_sha256(split.train),
        "train_rows": int(len(split.train)),
        "test_sha256": frame_sha256(split.test),
        "test_rows": int(len(split.test)),
    }
    if split.source is None:
        info["source_sha256"] = DATA_SHA256
        info["split"] = "stratified on income_cat, test_size=0.2, random_state=42"
    return info
