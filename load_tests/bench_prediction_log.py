"""How long the prediction log's writer is busy with one retention run (writes wait that
long at most), on a log filled with old records.

    python -m load_tests.bench_prediction_log [--rows 500000] [--deletes 5000]

Prints the fill time, the file size, and the time of one bounded run by age and by rows.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from core.contract import EXAMPLE_INSTANCE
from service.prediction_log import DAY, PredictionLog, PredictionRecord, Retention

BATCH = 10_000


def fill(path: Path, rows: int) -> float:
    keep_all = Retention(max_age_seconds=1e12, max_rows=10**12, every_seconds=1e9)
    log = PredictionLog(path, retention=keep_all)
    old = time.time() - 40 * DAY
    started = time.perf_counter()
    for start in range(0, rows, BATCH):
        records = [
            PredictionRecord(f"r{i}", "housing_sklearn", 1, dict(EXAMPLE_INSTANCE), 1.0, old + i)
            for i in range(start, min(rows, start + BATCH))
        ]
        log.append(records).result()
    log.close()
    return time.perf_counter() - started


def one_run(path: Path, policy: Retention) -> float:
    """Seconds from the log's start to the end of its first (bounded) retention run."""
    started = time.perf_counter()
    log = PredictionLog(path, retention=policy)
    while log.deleted_records < policy.max_deletes:
        time.sleep(0.001)
    elapsed = time.perf_counter() - started
    log.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--deletes", type=int, default=Retention().max_deletes)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "predictions.sqlite3"
        seconds = fill(path, args.rows)
        size = path.stat().st_size / 1e6
        print(f"filled {args.rows:,} records in {seconds:.1f} s ({size:.0f} MB)")
        never = 1e9  # one run only
        by_age = Retention(max_deletes=args.deletes, every_seconds=never, catch_up_seconds=never)
        by_rows = Retention(
            max_age_seconds=1e12,
            max_rows=args.rows // 10,
            max_deletes=args.deletes,
            every_seconds=never,
            catch_up_seconds=never,
        )
        for name, policy in (("age", by_age), ("rows", by_rows)):
            elapsed = one_run(path, policy)
            print(f"retention by {name}: {args.deletes:,} deletions, open + run {elapsed:.3f} s")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
