"""Stream CSV, Parquet or JSONL input in chunks, so memory stays bounded for any file size.

Values are read as they are written (CSV as text) so validation can tell a missing value
from a non-numeric one; row numbers are 1-based record numbers (the CSV header excluded).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from core.contract import FEATURES
from core.errors import UserError

PARSE_ERROR = "__parse_error__"
FORMATS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


def input_format(path: Path) -> str:
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise UserError(
            f"{path}: unsupported input extension {path.suffix!r} (.csv, .parquet or .jsonl)"
        ) from None


def columns(path: Path) -> list[str] | None:
    """The file's columns (None for JSONL, whose keys are per record)."""
    kind = input_format(path)
    if kind == "csv":
        return list(pd.read_csv(path, nrows=0).columns)
    if kind == "parquet":
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(path).schema_arrow.names)
    return None


def check_columns(path: Path, id_column: str | None) -> None:
    """Fail early, naming the column, when a feature or the id column is absent."""
    input_format(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        names = columns(path)
    except (ValueError, OSError) as exc:
        raise UserError(f"{path}: cannot read ({' '.join(str(exc).split())})") from None
    if names is None:
        return
    missing = [c for c in (*FEATURES, *([id_column] if id_column else [])) if c not in names]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")


def total_rows(path: Path) -> int | None:
    """Row count when it is cheap to know (Parquet metadata), for the progress bar."""
    if input_format(path) == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    return None


def iter_chunks(path: Path, size: int) -> Iterator[pd.DataFrame]:
    """Chunks of at most ``size`` records, the same chunks on every read of the same file."""
    kind = input_format(path)
    if kind == "csv":
        yield from pd.read_csv(
            path, chunksize=size, dtype=str, keep_default_na=False, na_values=[""]
        )
    elif kind == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=size):
            yield batch.to_pandas()
    else:
        yield from jsonl_chunks(path, size)


def jsonl_chunks(path: Path, size: int) -> Iterator[pd.DataFrame]:
    """One record per non-blank line; a line that is not a JSON object becomes a rejected row."""
    records: list[dict] = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                record = {PARSE_ERROR: f"line {line_number}: invalid JSON ({exc})"}
            records.append(record)
            if len(records) == size:
                yield pd.DataFrame.from_records(records)
                records = []
    if records:
        yield pd.DataFrame.from_records(records)
