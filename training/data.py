"""Fetch, verify, extract and validate the housing dataset; the book's stratified split."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.contract import (
    CATEGORICAL_FEATURE,
    COLUMNS,
    NUMERIC_FEATURES,
    OCEAN_PROXIMITY_CATEGORIES,
    TARGET,
)
from core.errors import UserError
from core.paths import REPO_ROOT

DATA_SHA256 = "354f441b3af4eb54e07818501dafc9b0865162d85a24769d754238acedc82ae1"
CANONICAL_URL = "https://github.com/ageron/data/raw/main/housing.tgz"
BUNDLED_ARCHIVE = REPO_ROOT / "data" / "housing.tgz"
DEFAULT_DATA_DIR = REPO_ROOT / "data"
CSV_MEMBER = "housing/housing.csv"
EXPECTED_ROWS = 20_640
INCOME_BINS = [0.0, 1.5, 3.0, 4.5, 6.0, np.inf]
MAX_ARCHIVE_BYTES = 50 * 1024 * 1024


class DataError(UserError, ValueError):
    """The dataset could not be fetched, verified or validated; the message says why."""


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    test: pd.DataFrame
    source: str | None = None
    """Where ``train`` came from when it is not the book's archive (e.g. retraining data);
    recorded in each manifest by training.provenance."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_source(source: str | Path) -> bytes:
    """Read the archive bytes from a local path or an http(s) URL."""
    text = str(source)
    if text.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(text, timeout=60) as response:  # noqa: S310
                return response.read(MAX_ARCHIVE_BYTES + 1)
        except OSError as exc:
            raise DataError(f"cannot download {text}: {exc}") from exc
    path = Path(text)
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    if path.stat().st_size > MAX_ARCHIVE_BYTES:
        raise DataError(f"{path} is larger than {MAX_ARCHIVE_BYTES} bytes")
    return path.read_bytes()


def verify_checksum(data: bytes, expected: str = DATA_SHA256) -> None:
    actual = sha256_bytes(data)
    if actual != expected:
        raise DataError(f"checksum mismatch: expected SHA-256 {expected}, got {actual}")


def extract_csv(data: bytes) -> bytes:
    """Return housing.csv from the archive, refusing unsafe members (no path traversal)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            for member in archive.getmembers():
                name = member.name
                if name.startswith("/") or ".." in Path(name).parts:
                    raise DataError(f"unsafe path in archive: {name!r}")
                if member.issym() or member.islnk() or member.isdev():
                    raise DataError(f"unsafe member type in archive: {name!r}")
            try:
                member = archive.getmember(CSV_MEMBER)
            except KeyError as exc:
                raise DataError(f"archive has no {CSV_MEMBER}") from exc
            handle = archive.extractfile(member)
            if handle is None:
                raise DataError(f"{CSV_MEMBER} in the archive is not a regular file")
            return handle.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"corrupt or unreadable archive: {exc}") from exc


def validate_frame(frame: pd.DataFrame, require_target: bool = True) -> pd.DataFrame:
    """Check columns, dtypes and categories; return the frame with canonical column order."""
    required = list(COLUMNS) if require_target else [c for c in COLUMNS if c != TARGET]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(f"missing columns: {', '.join(missing)}")
    numeric = list(NUMERIC_FEATURES) + ([TARGET] if require_target else [])
    for column in numeric:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            coerced = pd.to_numeric(frame[column], errors="coerce")
            bad = frame[column][coerced.isna() & frame[column].notna()]
            if len(bad):
                raise DataError(
                    f"column {column!r} must be numeric; row {bad.index[0]} has {bad.iloc[0]!r}"
                )
            frame = frame.assign(**{column: coerced})
    unknown = sorted(set(frame[CATEGORICAL_FEATURE].dropna()) - set(OCEAN_PROXIMITY_CATEGORIES))
    if unknown:
        raise DataError(
            f"unknown {CATEGORICAL_FEATURE} categories: {unknown}; "
            f"expected one of {list(OCEAN_PROXIMITY_CATEGORIES)}"
        )
    if frame[CATEGORICAL_FEATURE].isna().any():
        raise DataError(f"column {CATEGORICAL_FEATURE!r} has missing values")
    return frame[required + [c for c in frame.columns if c not in required]]


def parse_csv(raw: bytes) -> pd.DataFrame:
    try:
        frame = pd.read_csv(io.BytesIO(raw))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot parse housing.csv: {exc}") from exc
    return validate_frame(frame)


def fetch(
    source: str | Path = BUNDLED_ARCHIVE,
    data_dir: Path = DEFAULT_DATA_DIR,
    expected_sha256: str = DATA_SHA256,
) -> Path:
    """Verify, extract and validate the archive; write data_dir/housing/housing.csv."""
    raw = read_source(source)
    verify_checksum(raw, expected_sha256)
    csv_bytes = extract_csv(raw)
    parse_csv(csv_bytes)
    target = data_dir / "housing" / "housing.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".csv.tmp")
    tmp.write_bytes(csv_bytes)
    shutil.move(tmp, target)
    return target


def load_housing(source: str | Path = BUNDLED_ARCHIVE) -> pd.DataFrame:
    """The full verified dataset (20,640 rows), straight from the archive."""
    raw = read_source(source)
    verify_checksum(raw)
    return parse_csv(extract_csv(raw))


def load_csv(path: str | Path, require_target: bool = True) -> pd.DataFrame:
    """A user-supplied CSV with the housing columns, validated."""
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError as exc:
        raise DataError(f"no such file: {path}") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot parse {path}: {exc}") from exc
    return validate_frame(frame, require_target=require_target)


def income_category(median_income: pd.Series) -> pd.Series:
    return pd.cut(median_income, bins=INCOME_BINS, labels=[1, 2, 3, 4, 5])


def stratified_split(housing: pd.DataFrame, test_size: float = 0.2, seed: int = 42) -> Split:
    """The book's split: stratified on income category, 16,512 / 4,128 rows."""
    strata = income_category(housing["median_income"])
    from sklearn.model_selection import train_test_split  # heavy: only to split

    train, test = train_test_split(housing, test_size=test_size, stratify=strata, random_state=seed)
    return Split(train=train, test=test)


def features_and_target(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    return frame.drop(columns=[TARGET]), frame[TARGET].copy()


def load_split(source: str | Path = BUNDLED_ARCHIVE) -> Split:
    return stratified_split(load_housing(source))
