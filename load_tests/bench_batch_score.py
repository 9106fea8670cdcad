"""Benchmark: ``housing batch-score`` over gRPC vs in-process prediction, same model, same rows.

Starts the project's model server on free loopback ports over a models folder (by default a
temporary one holding the book's preprocessing + LinearRegression fitted on 2,000 rows; or
``--models-dir`` with an existing ``housing_sklearn``), scores N rows (default 200,000,
sampled from the dataset) with the real CLI, and prints rows/s for both paths and their ratio
(target: at least 0.5). Every step has a timeout, so the run time is bounded.

    .venv/bin/python load_tests/bench_batch_score.py [--rows 200000] [--batch-size 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.contract import FEATURES, SKLEARN_MODEL  # noqa: E402
from core.paths import REPO_ROOT  # noqa: E402
from core.process import housing_argv  # noqa: E402
from load_tests import stack  # noqa: E402

TARGET_RATIO = 0.5


def small_model_repo(folder: Path) -> Path:
    """A models folder with the book's preprocessing + LinearRegression (2,000-row sample)."""
    from load_tests.models import publish_sklearn, small_sklearn
    from training.data import load_split
    from training.repository import ModelRepository

    publish_sklearn(ModelRepository(folder), small_sklearn(load_split().train, trees=0))
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200_000, help="rows to score (200,000)")
    parser.add_argument("--batch-size", type=int, default=20_000, help="rows per request")
    parser.add_argument("--concurrency", type=int, default=2, help="requests in flight")
    parser.add_argument(
        "--models-dir",
        type=Path,
        help="use this models folder's "
        "housing_sklearn (latest) instead of the small benchmark model",
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds per step (300)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs of each path; the best counts, since this machine is shared (default 3)",
    )
    args = parser.parse_args()

    import pandas as pd

    from training.data import load_housing
    from training.repository import ModelRepository, load_sklearn_model

    with tempfile.TemporaryDirectory(prefix="bench-batch-") as scratch:
        work = Path(scratch)
        models = args.models_dir or small_model_repo(work / "models")
        repo = ModelRepository(models)
        version = repo.default_version(SKLEARN_MODEL)  # stable, as batch-score picks it
        if version is None:
            raise SystemExit(f"no {SKLEARN_MODEL} in {models}")
        model = load_sklearn_model(repo.version_dir(SKLEARN_MODEL, version))

        rows = load_housing()[list(FEATURES)].sample(args.rows, replace=True, random_state=0)
        rows = rows.reset_index(drop=True)
        source = work / "rows.parquet"
        rows.to_parquet(source, index=False)

        in_process = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            model.predict(rows)
            in_process.append(time.perf_counter() - started)

        env = {"TF_CPP_MIN_LOG_LEVEL": "3"}
        server = stack.model_server(
            models / "models.config", work / "model-server.log", rest_port=0, env=env
        )
        with server:
            stack.serving(server, args.timeout)
            output = work / "scored.parquet"
            runs, walls = [], []
            for _ in range(args.repeats):
                output.unlink(missing_ok=True)
                started = time.perf_counter()
                done = subprocess.run(
                    housing_argv(
                        "batch-score",
                        "--no-progress",
                        "--input",
                        str(source),
                        "--output",
                        str(output),
                        "--model",
                        SKLEARN_MODEL,
                        "--version",
                        str(version),
                        "--target",
                        server.address("grpc"),
                        "--batch-size",
                        str(args.batch_size),
                        "--concurrency",
                        str(args.concurrency),
                    ),
                    cwd=REPO_ROOT,
                    capture_output=True,
                    text=True,
                    timeout=args.timeout,
                    env={**os.environ, **env},
                )
                walls.append(time.perf_counter() - started)
                if done.returncode != 0:
                    raise SystemExit(f"batch-score failed: {done.stderr.strip()[-300:]}")
                runs.append(json.loads(done.stdout)["seconds"])
                scored = pd.read_parquet(output)
                assert len(scored) == args.rows and scored["row"].is_monotonic_increasing
    in_process_rps = args.rows / min(in_process)
    batch_rps = args.rows / min(runs)
    figures = {
        "rows": args.rows,
        "model": f"{SKLEARN_MODEL} v{version} ({models})",
        "batch_size": args.batch_size,
        "concurrency": args.concurrency,
        "repeats": args.repeats,
        "in_process_seconds": [round(x, 3) for x in in_process],
        "in_process_rows_per_second": round(in_process_rps),
        "batch_score_seconds": runs,
        "batch_score_rows_per_second": round(batch_rps),
        "batch_score_wall_seconds_incl_startup": [round(x, 1) for x in walls],
        "load_average_1m": round(os.getloadavg()[0], 1),
        "ratio_best_of_runs": round(batch_rps / in_process_rps, 3),
        "target_ratio": TARGET_RATIO,
        "cpus": os.cpu_count(),
    }
    print(json.dumps(figures, indent=2))
    return 0 if figures["ratio_best_of_runs"] >= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
