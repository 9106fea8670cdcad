"""Gateway worker weight: start-up-to-ready time and resident memory of each worker process.

Starts the real model server once over a small real model (not measured), then, ``--runs``
times, ``housing serve gateway --workers N`` as a user runs it, and measures:

- start-up to ready: from launching the command to ``/readyz`` answering 200 (every model
  AVAILABLE through the gateway's own gRPC client), as wall time and as the CPU time its
  processes used by then (the figure a loaded, shared machine does not inflate);
- resident memory (RSS) of every process of the gateway after ``--requests`` predictions;
- whether any of them mapped TensorFlow's library (it should not: the gateway speaks the
  TF Serving protocol through ``core.tfserving``).

Targets (issue "a light gateway"): <= 2 s to ready, <= 200 MB per worker. Timings depend
on the machine's load: print ``uptime`` next to the figures you record.

    .venv/bin/python load_tests/bench_gateway_worker.py [--runs 3] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.contract import EXAMPLE_INSTANCE  # noqa: E402
from core.process import http_ok  # noqa: E402
from load_tests import models as bench_models  # noqa: E402
from load_tests import stack  # noqa: E402
from load_tests.peers.cputime import (  # noqa: E402
    process_tree,
    resident_mb,
    tree_cpu_seconds,
)


def gateway_processes(pid: int) -> list[dict]:
    """RSS (MB) of the gateway's processes and whether TF is mapped in them. With one
    worker the main process serves; with more, uvicorn's main process only supervises
    spawned workers (fresh interpreters that import the app alone)."""
    out = []
    for member in sorted(process_tree(pid)):
        try:
            command = Path(f"/proc/{member}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            maps = Path(f"/proc/{member}/maps").read_text()
        except OSError:  # it ended while we looked
            continue
        if "resource_tracker" in command:
            continue  # multiprocessing's helper, not a gateway process
        role = "worker" if member != pid or "multiprocessing.spawn" in command else "main"
        out.append(
            {
                "pid": member,
                "role": role,
                "rss_mb": round(resident_mb(member), 1),
                "tensorflow_mapped": "tensorflow" in maps,
            }
        )
    return out


def one_run(targets: dict[str, str], folder: Path, workers: int, requests: int) -> dict:
    import httpx

    gateway = stack.gateway(
        targets,
        folder / "gateway.log",
        extra=["--workers", str(workers), "--prediction-log-path",
               str(folder / "predictions.sqlite3"), "--log-level", "warning"],
    )  # fmt: skip
    started = time.perf_counter()
    try:
        gateway.start().wait_ready(http_ok(f"{gateway.url()}/readyz"), 120)
        ready = time.perf_counter() - started
        cpu = tree_cpu_seconds(gateway.pid)
        body = {"instances": [EXAMPLE_INSTANCE]}
        with httpx.Client(base_url=gateway.url(), timeout=10) as client:
            errors = sum(
                client.post("/v1/predict", json=body).status_code != 200 for _ in range(requests)
            )
        processes = gateway_processes(gateway.pid)
    finally:
        gateway.stop()
    return {
        "ready_seconds": round(ready, 2),
        "startup_cpu_seconds": round(cpu, 2),
        "errors": errors,
        "processes": processes,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="gateway starts to measure")
    parser.add_argument("--workers", type=int, default=1, help="gateway worker processes")
    parser.add_argument("--requests", type=int, default=200, help="predictions before RSS")
    args = parser.parse_args()

    from core.contract import SKLEARN_MODEL
    from training.data import load_split
    from training.repository import ModelRepository

    split = load_split()
    with tempfile.TemporaryDirectory(prefix="bench_gateway_worker_") as tmp:
        folder = Path(tmp)
        repo = ModelRepository(folder / "models")
        bench_models.publish_sklearn(repo, bench_models.small_sklearn(split.train))
        with stack.model_server(repo.config_path, folder / "model_server.log") as server:
            stack.serving(server)
            targets = {SKLEARN_MODEL: server.address("grpc")}
            runs = [one_run(targets, folder, args.workers, args.requests) for _ in range(args.runs)]

    ready = [r["ready_seconds"] for r in runs]
    processes = [p for r in runs for p in r["processes"]]
    serving = [p for p in processes if p["role"] == "worker"] or processes
    supervisor = [p["rss_mb"] for p in processes if p["role"] == "main" and args.workers > 1]
    results = {
        "workers": args.workers,
        "ready_seconds": ready,
        "ready_median_seconds": round(statistics.median(ready), 2),
        "startup_cpu_median_seconds": round(
            statistics.median(r["startup_cpu_seconds"] for r in runs), 2
        ),
        "worker_rss_max_mb": max(p["rss_mb"] for p in serving),
        "supervisor_rss_max_mb": max(supervisor) if supervisor else None,
        "tensorflow_mapped": any(p["tensorflow_mapped"] for r in runs for p in r["processes"]),
        "errors": sum(r["errors"] for r in runs),
        "runs": runs,
    }
    print(
        f"gateway ({args.workers} worker(s)): ready in {results['ready_median_seconds']} s "
        f"(median of {ready}; CPU {results['startup_cpu_median_seconds']} s for all its "
        f"processes), worker RSS <= {results['worker_rss_max_mb']} MB "
        f"(supervisor {results['supervisor_rss_max_mb']} MB), "
        f"TensorFlow mapped: {results['tensorflow_mapped']}, errors: {results['errors']}"
    )
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
