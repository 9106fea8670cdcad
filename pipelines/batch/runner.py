"""One batch-scoring run: read chunks, validate, keep N requests in flight, persist, assemble."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import console
from core.errors import UserError
from pipelines.batch import reader
from pipelines.batch.client import Scorer
from pipelines.batch.parts import Parts
from pipelines.batch.validate import validate

PREDICTION = "predicted_median_house_value"


@dataclass
class Job:
    input: Path
    output: Path
    errors: Path
    model: str
    target: str
    version: int | None = None
    label: str | None = None
    batch_size: int = 1000
    concurrency: int = 4
    id_column: str | None = None
    resume: bool = False
    deadline: float = 30.0
    retries: int = 10
    progress: bool = True

    def fingerprint(self) -> dict[str, Any]:
        """What must not change between a run and its resumption."""
        stat = self.input.stat()
        return {
            "input": str(self.input.resolve()),
            "input_bytes": stat.st_size,
            "input_mtime_ns": stat.st_mtime_ns,
            "batch_size": self.batch_size,
            "model": self.model,
            "version": self.version,
            "label": self.label,
            "id_column": self.id_column,
            "output": str(self.output.resolve()),
        }


def chunk_frames(
    job: Job, chunk: pd.DataFrame, first_row: int, checked: Any, predictions: np.ndarray
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The chunk's output rows (all of them, in order) and its error rows."""
    rows = np.arange(first_row, first_row + len(chunk), dtype=np.int64)
    values = np.full(len(chunk), np.nan)
    values[checked.valid] = predictions
    scored: dict[str, Any] = {"row": rows}
    ids = chunk[job.id_column].reset_index(drop=True) if job.id_column else None
    if job.id_column and ids is not None:
        scored[job.id_column] = ids
    scored[PREDICTION] = values
    bad = sorted(checked.reasons)
    errors = pd.DataFrame(
        {
            "row": rows[bad] if bad else np.array([], np.int64),
            "id": [None if ids is None else str(ids.iat[i]) for i in bad],
            "reason": ["; ".join(checked.reasons[i]) for i in bad],
        }
    )
    errors["id"] = errors["id"].astype(object)
    return pd.DataFrame(scored), errors


async def score(job: Job) -> dict[str, Any]:
    reader.check_columns(job.input, job.id_column)
    parts = Parts(job.output, job.fingerprint(), job.resume)
    resumed = len(parts.completed)
    scorer = Scorer(job.target, job.model, job.version, job.label, job.deadline, job.retries)
    bar = console.bar(
        total=reader.total_rows(job.input),
        enabled=job.progress,
        unit="row",
        desc="batch-score",
        smoothing=0.1,
    )
    totals = {"rows": 0, "scored": 0, "rejected": 0, "skipped_rows": 0}
    pending: set[asyncio.Task] = set()
    slots = asyncio.Semaphore(job.concurrency)
    started = time.perf_counter()

    async def process(index: int, chunk: pd.DataFrame, first_row: int) -> None:
        try:
            checked = validate(chunk)
            valid = int(checked.valid.sum())
            predictions = (
                await scorer.predict(checked.numeric, checked.category) if valid else np.empty(0)
            )
            scored, errors = chunk_frames(job, chunk, first_row, checked, predictions)
            await asyncio.to_thread(parts.write, index, scored, errors)
            parts.mark(index)
            totals["scored"] += valid
            totals["rejected"] += len(chunk) - valid
            bar.update(len(chunk))
        finally:
            slots.release()

    chunks = reader.iter_chunks(job.input, job.batch_size)
    index = 0
    try:
        while True:
            chunk = await asyncio.to_thread(next, chunks, None)
            if chunk is None:
                break
            first_row = totals["rows"] + 1
            totals["rows"] += len(chunk)
            if index in parts.completed:
                totals["skipped_rows"] += len(chunk)
                bar.update(len(chunk))
            else:
                await slots.acquire()
                for task in [t for t in pending if t.done()]:
                    pending.discard(task)
                    task.result()  # re-raises a failed chunk's error
                pending.add(asyncio.create_task(process(index, chunk, first_row)))
            index += 1
        await asyncio.gather(*pending)
    except BaseException:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        raise
    finally:
        bar.close()
        await scorer.close()
    if totals["rows"] == 0:
        raise UserError(f"{job.input}: no rows")
    await asyncio.to_thread(parts.assemble, index, job.output, job.errors)
    seconds = time.perf_counter() - started
    rejected = await asyncio.to_thread(
        lambda: (
            len(pd.read_csv(job.errors))
            if job.errors.suffix == ".csv"
            else len(pd.read_parquet(job.errors))
        )
    )
    scored_now = totals["rows"] - totals["skipped_rows"]
    return {
        "input": str(job.input),
        "output": str(job.output),
        "errors_file": str(job.errors),
        "model": job.model,
        "version": job.version,
        "label": job.label,
        "target": job.target,
        "rows": totals["rows"],
        "rejected_rows": rejected,
        "scored_rows": totals["rows"] - rejected,
        "resumed_chunks": resumed,
        "rows_this_run": scored_now,
        "seconds": round(seconds, 3),
        "rows_per_second": round(scored_now / seconds, 1) if seconds > 0 else None,
        "batch_size": job.batch_size,
        "concurrency": job.concurrency,
        "retries": scorer.retried,
    }
