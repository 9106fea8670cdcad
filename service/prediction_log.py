"""Durable, append-only log of served predictions (SQLite in WAL mode).

Writes go through one background thread that commits whatever is queued in a single
transaction (group commit), so the request path only waits for its own commit when it
asks to. WAL mode keeps the file consistent if the process is killed mid-write: a
committed record survives a SIGKILL; an uncommitted one is rolled back, never half-written.
Records that cannot be written are counted (``failed_records``), never dropped silently,
and ``warning()`` says so while writes keep failing. The same thread applies retention
(``Retention``: by age and by row count) on a timer, deleting a bounded number per run so
a write never waits long behind it. Several processes may write one file (one log each).
"""

from __future__ import annotations

import json
import math
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.contract import FEATURES

if TYPE_CHECKING:  # pandas only where a window is read: the gateway never imports it
    import pandas as pd

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    ts REAL NOT NULL,
    model TEXT NOT NULL,
    version INTEGER,
    features TEXT NOT NULL,
    prediction REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS predictions_ts ON predictions (ts);
"""
LOG_COLUMNS = ["request_id", "ts", "model", "version", *FEATURES, "prediction"]
DAY = 86_400.0


@dataclass(frozen=True)
class Retention:
    """What the log keeps: records younger than ``max_age_seconds``, and at most
    ``max_rows`` of them (the newest). Applied every ``every_seconds``, deleting at most
    ``max_deletes`` records per run; a run that hits that bound is followed by another
    after ``catch_up_seconds``, so a backlog shrinks without holding writes up."""

    max_age_seconds: float = 30 * DAY
    max_rows: int = 5_000_000
    every_seconds: float = 60.0
    max_deletes: int = 5_000
    catch_up_seconds: float = 1.0


@dataclass(frozen=True)
class PredictionRecord:
    request_id: str
    model: str
    version: int | None
    features: dict[str, Any]
    prediction: float
    ts: float = field(default_factory=time.time)

    def row(self) -> tuple:
        clean = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in self.features.items()
        }
        return (
            self.request_id,
            self.ts,
            self.model,
            self.version,
            json.dumps(clean),
            float(self.prediction),
        )


def connect(path: Path | str, busy_timeout: float = 30.0) -> sqlite3.Connection:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=busy_timeout, check_same_thread=False)
    # Switching a new file to WAL answers SQLITE_BUSY at once, without the busy timeout, while
    # another gateway worker does the same: retry it within that timeout.
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    return conn


class PredictionLog:
    """Queue records from any thread; a writer thread commits them in batches.

    ``busy_timeout``: how long a commit waits for another writer (another worker) before
    it counts as failed; requests wait for their commit, so this bounds a locked file's cost.
    """

    def __init__(
        self,
        path: Path | str,
        max_queue: int = 100_000,
        max_batch: int = 5_000,
        retention: Retention | None = None,
        busy_timeout: float = 5.0,
    ):
        self.path = Path(path)
        self.max_batch = max_batch
        self.retention = retention or Retention()
        self.failed_records = 0
        self.written_records = 0
        self.deleted_records = 0
        self._failing = False  # the latest write attempt failed
        self._queue: queue.Queue[tuple[list[PredictionRecord], Future] | None] = queue.Queue(
            maxsize=max_queue
        )
        self._conn = connect(self.path, busy_timeout)
        self._next_retention = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def append(self, records: Sequence[PredictionRecord]) -> Future:
        """Queue records; the future resolves to the number committed (or an exception)."""
        done: Future = Future()
        try:
            self._queue.put_nowait((list(records), done))
        except queue.Full:
            self._lost(len(records))
            done.set_exception(RuntimeError("prediction log queue is full"))
        return done

    def warning(self) -> str | None:
        """A one-line warning while writes fail (no paths or error text: it is public)."""
        if not self._failing:
            return None
        return (
            "prediction log writes are failing: predictions are served but not logged "
            f"({self.failed_records} records lost since start)"
        )

    def _lost(self, count: int) -> None:
        self.failed_records += count
        self._failing = True

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, self._next_retention - time.monotonic()))
            except queue.Empty:
                self._apply_retention()
                continue
            if item is None:
                return
            batch = [item]
            while sum(len(r) for r, _ in batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._commit(batch)
                    return
                batch.append(nxt)
            self._commit(batch)
            if time.monotonic() >= self._next_retention:
                self._apply_retention()

    def _commit(self, batch: list[tuple[list[PredictionRecord], Future]]) -> None:
        count = sum(len(records) for records, _ in batch)
        try:  # any error (full disk, read-only file, locked or damaged database) is a loss
            rows = [record.row() for records, _ in batch for record in records]
            with self._conn:
                self._conn.executemany(
                    "INSERT INTO predictions (request_id, ts, model, version, features, "
                    "prediction) VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
        except Exception as exc:
            self._lost(count)
            for _, done in batch:
                done.set_exception(exc)
            return
        self.written_records += count
        self._failing = False
        for records, done in batch:
            done.set_result(len(records))

    def _apply_retention(self) -> None:
        """Delete records past the age or row limit, at most ``max_deletes`` this run."""
        policy = self.retention
        budget = policy.max_deletes
        deleted = 0
        try:
            with self._conn:
                cutoff = time.time() - policy.max_age_seconds
                deleted += self._conn.execute(
                    "DELETE FROM predictions WHERE id IN (SELECT id FROM predictions "
                    "WHERE ts < ? ORDER BY ts LIMIT ?)",
                    (cutoff, budget),
                ).rowcount
                (newest,) = self._conn.execute("SELECT max(id) FROM predictions").fetchone()
                if newest is not None and deleted < budget:
                    # ids only grow, so the newest max_rows records have id > newest - max_rows
                    deleted += self._conn.execute(
                        "DELETE FROM predictions WHERE id IN (SELECT id FROM predictions "
                        "WHERE id <= ? ORDER BY id LIMIT ?)",
                        (newest - policy.max_rows, budget - deleted),
                    ).rowcount
        except Exception:  # retention is retried next run; write failures are reported
            deleted = 0
        self.deleted_records += deleted
        wait = policy.catch_up_seconds if deleted >= budget else policy.every_seconds
        self._next_retention = time.monotonic() + wait

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is queued, then stop the writer."""
        self._queue.put(None)
        self._thread.join(timeout)
        self._conn.close()


def read_window(
    path: Path | str,
    since: float | None = None,
    until: float | None = None,
    model: str | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Logged predictions as a frame: request_id, ts, model, version, 9 features, prediction.

    With ``limit``, the most recent ``limit`` records in the window (returned oldest first).
    """
    clauses: list[str] = []
    params: list[float | str] = []
    if since is not None:
        clauses.append("ts >= ?")
        params.append(since)
    if until is not None:
        clauses.append("ts < ?")
        params.append(until)
    if model is not None:
        clauses.append("model = ?")
        params.append(model)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = f"SELECT request_id, ts, model, version, features, prediction FROM predictions {where} "
    sql += "ORDER BY id DESC" + (f" LIMIT {int(limit)}" if limit else "")
    if not Path(path).is_file():
        return records_to_frame([])
    # A reader never creates or changes anything: no schema script, so it cannot undo
    # what it finds (a missing table is an empty window, and a write failure stays one).
    conn = sqlite3.connect(str(path), timeout=30)
    try:
        if not conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'predictions'"
        ).fetchone():
            return records_to_frame([])
        rows = conn.execute(sql, params).fetchall()
    finally:
        conn.close()
    rows.reverse()
    return records_to_frame(rows)


def records_to_frame(rows: Iterable[tuple]) -> pd.DataFrame:
    data = []
    for request_id, ts, model, version, features, prediction in rows:
        values = json.loads(features)
        data.append(
            {
                "request_id": request_id,
                "ts": ts,
                "model": model,
                "version": version,
                **{name: values.get(name) for name in FEATURES},
                "prediction": prediction,
            }
        )
    import pandas as pd

    frame = pd.DataFrame(data, columns=LOG_COLUMNS)
    return frame.astype({name: float for name in FEATURES if name != "ocean_proximity"})
