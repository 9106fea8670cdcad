"""One batch-scoring run: read chunks, validate, keep N requests in flight, persist, assemble.

Which model answers: the ``--version`` or ``--label`` asked for, else the ``stable`` label
(the server's default policy only when the model has no labels). The version of the first
answer is pinned: every later chunk asks for exactly that version, so a promotion during the
run cannot mix versions, and a resumed run keeps the version its checkpoint recorded. The
version is printed, written in a ``model_version`` column and recorded in the checkpoint and
the summary. Calls go through the one TF Serving client (``core.tfserving``).
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd

from core import console
from core.contract import CATEGORICAL_FEATURE, DEFAULT_LABEL
from core.errors import UserError
from core.tfserving import Prediction, RetryBudget, RetryPolicy, TFServingClient, TFServingError
from pipelines.batch import reader
from pipelines.batch.parts import Parts
from pipelines.batch.validate import Checked, validate

PREDICTION = "predicted_median_house_value"
VERSION_COLUMN = "model_version"
BACKOFF, MAX_BACKOFF = 0.2, 10.0


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
    budget: float = 300.0
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


class Served:
    """Who answers this run: the model spec asked for until the first answer, then its version.

    Until that version is known, one chunk at a time is sent (the others wait on ``lock``),
    so every chunk after the first asks for the pinned version."""

    def __init__(self, job: Job, parts: Parts, client: TFServingClient) -> None:
        self.job = job
        self.parts = parts
        self.client = client
        self.label = job.label if job.label or job.version is not None else DEFAULT_LABEL
        self.version = parts.served.get("version", job.version)
        self.settled = "version" in parts.served  # a resumed run keeps its version
        self.lock = asyncio.Lock()
        if self.settled and not console.quiet():
            print(
                f"batch-score: resuming with {job.model} version {self.version} "
                "(from the checkpoint)",
                file=sys.stderr,
            )

    async def predict(self, checked: Checked) -> Prediction:
        columns: dict[str, Any] = {**checked.numeric, CATEGORICAL_FEATURE: checked.category}
        if self.settled:
            return await self._ask(columns)
        async with self.lock:
            if self.settled:
                return await self._ask(columns)
            try:
                answer = await self._ask(columns)
            except TFServingError as exc:
                default = self.job.label is None and self.label == DEFAULT_LABEL
                if exc.code is not grpc.StatusCode.INVALID_ARGUMENT or not default:
                    raise
                # No stable label (TF Serving: INVALID_ARGUMENT for an unknown label): the
                # model has no labels, so the server's default policy decides.
                self.label = None
                answer = await self._ask(columns)
            self._settle(answer)
            return answer

    async def _ask(self, columns: dict[str, Any]) -> Prediction:
        if self.version is not None:
            return await self.client.predict(self.job.model, columns, version=self.version)
        return await self.client.predict(self.job.model, columns, label=self.label)

    def _settle(self, answer: Prediction) -> None:
        self.settled = True
        asked = f"label {self.label!r}" if self.label else "the server's default version"
        if self.job.version is not None:
            asked = "as asked"
        if answer.version is None:
            message = f"the server does not say which version answered ({asked})"
        else:
            self.version = answer.version
            self.parts.served = {"model": self.job.model, "version": answer.version}
            self.parts.save()
            message = (
                f"scoring with {self.job.model} version {answer.version} ({asked}); "
                "every chunk asks for that version"
            )
        if not console.quiet():
            print(f"batch-score: {message}", file=sys.stderr)


def chunk_frames(
    job: Job,
    chunk: pd.DataFrame,
    first_row: int,
    checked: Any,
    predictions: np.ndarray,
    version: int | None,
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
    scored[VERSION_COLUMN] = pd.array([version] * len(chunk), dtype="Int64")
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
    policy = RetryPolicy(
        attempt_seconds=job.deadline,
        budget_seconds=job.budget,
        max_retries=job.retries,
        backoff=BACKOFF,
        max_backoff=MAX_BACKOFF,
    )
    # A chunk may use all its retries; beyond that retries stay a fifth of recent calls.
    retry_budget = RetryBudget(ratio=0.2, minimum=max(10, job.retries), window=60.0)
    client = TFServingClient(job.target, policy, retry_budget=retry_budget)
    await client.start()
    served = Served(job, parts, client)
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
            predictions, version = np.empty(0), served.version
            if valid:
                try:
                    answer = await served.predict(checked)
                except TFServingError as exc:
                    retried = f" (after {exc.attempts - 1} retries)" if exc.attempts > 1 else ""
                    raise UserError(f"{exc}{retried}") from None
                predictions, version = np.asarray(answer.values, np.float64), answer.version
            scored, errors = chunk_frames(job, chunk, first_row, checked, predictions, version)
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
        await client.close()
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
        "version": served.version,
        "label": served.label if job.version is None else None,
        "requested_version": job.version,
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
        "retries": client.retries,
        "retries_refused": client.retries_refused,
    }
