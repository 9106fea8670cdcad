"""Resumable output: one part file per chunk, an atomically replaced checkpoint, then assembly.

A chunk's part (and its errors part) is written under a temporary name and renamed; only
then is its index added to ``checkpoint.json`` (also write-then-rename). A crash at any point
leaves either a completed chunk recorded, or a chunk that a resumed run scores again and
overwrites: no row is written twice and none is skipped. The checkpoint also records which
model version answered (``served``), so a resumed run asks for the same one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from core.errors import UserError

CHECKPOINT = "checkpoint.json"
ERROR_COLUMNS = ["row", "id", "reason"]


def replace_atomically(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class Parts:
    """The work folder of one output file: ``<output>.parts/``."""

    def __init__(self, output: Path, fingerprint: dict[str, Any], resume: bool):
        self.folder = output.with_name(output.name + ".parts")
        self.fingerprint = fingerprint
        self.completed: set[int] = set()
        self.served: dict[str, Any] = {}  # {"model": name, "version": n} once known
        checkpoint = self.folder / CHECKPOINT
        if checkpoint.exists():
            if not resume:
                raise UserError(
                    f"an interrupted run left {self.folder}: pass --resume to continue it "
                    "(or delete that folder to start again)"
                )
            saved = json.loads(checkpoint.read_text())
            if saved.get("fingerprint") != fingerprint:
                changed = sorted(
                    k for k in fingerprint if saved.get("fingerprint", {}).get(k) != fingerprint[k]
                )
                raise UserError(
                    f"cannot resume {self.folder}: {', '.join(changed)} changed since that run"
                )
            self.completed = set(saved["completed"])
            self.served = dict(saved.get("served") or {})
        else:
            if self.folder.exists():
                shutil.rmtree(self.folder)
            self.folder.mkdir(parents=True)
            self.save()

    def part(self, index: int) -> Path:
        return self.folder / f"part-{index:08d}.parquet"

    def errors_part(self, index: int) -> Path:
        return self.folder / f"errors-{index:08d}.parquet"

    def save(self) -> None:
        body = {
            "fingerprint": self.fingerprint,
            "completed": sorted(self.completed),
            "served": self.served,
        }
        replace_atomically(self.folder / CHECKPOINT, lambda p: p.write_text(json.dumps(body)))

    def write(self, index: int, scored: pd.DataFrame, errors: pd.DataFrame) -> None:
        """Persist one chunk (blocking: call from a worker thread)."""
        replace_atomically(self.part(index), lambda p: scored.to_parquet(p, index=False))
        replace_atomically(self.errors_part(index), lambda p: errors.to_parquet(p, index=False))

    def mark(self, index: int) -> None:
        self.completed.add(index)
        self.save()

    def assemble(self, chunks: int, output: Path, errors_file: Path) -> None:
        """Concatenate the parts in chunk order into the output and errors files."""
        missing = [i for i in range(chunks) if i not in self.completed]
        if missing:
            raise UserError(f"chunks {missing[:5]} were never completed")
        write_table([self.part(i) for i in range(chunks)], output)
        write_table([self.errors_part(i) for i in range(chunks)], errors_file)
        shutil.rmtree(self.folder)


def write_table(parts: list[Path], output: Path) -> None:
    """Stream parquet parts into one CSV or Parquet file (atomically), part by part."""
    import pyarrow.parquet as pq

    output.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        if output.suffix.lower() == ".csv":
            with tmp.open("w", newline="") as handle:
                for i, part in enumerate(parts):
                    pd.read_parquet(part).to_csv(handle, index=False, header=i == 0)
            return
        schema = unify([pq.read_schema(p) for p in parts])
        with pq.ParquetWriter(tmp, schema) as writer:
            for part in parts:
                writer.write_table(pq.read_table(part).cast(schema))

    replace_atomically(output, write)


def unify(schemas: list[Any]) -> Any:
    """One schema for all parts (a column that is all-null in one part is typed by the others)."""
    import pyarrow as pa

    fields = []
    for name in schemas[0].names:
        types = [s.field(name).type for s in schemas if not pa.types.is_null(s.field(name).type)]
        fields.append(pa.field(name, types[0] if types else pa.null()))
    return pa.schema(fields)
