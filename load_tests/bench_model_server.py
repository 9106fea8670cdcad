"""Benchmark of the project's model server against calling the same model in-process.

Prints, for one joblib model: Predict latency p50/p99 at batch 1, throughput at
concurrency 16 with and without server-side batching, and rows/s at batch 1,024, each with
its ratio to in-process calls. The servers run as real processes on loopback; the client
shares the machine's cores with them, so figures are lower bounds on a 2-core box.

    .venv/bin/python load_tests/bench_model_server.py [--model-dir models/housing_sklearn/3]

Without ``--model-dir`` it builds the test suite's small model (book preprocessing +
LinearRegression). Bounded: under 2 minutes with the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc  # noqa: E402
from tensorflow_serving.apis import prediction_service_pb2_grpc  # noqa: E402

from core.process import ManagedProcess  # noqa: E402
from load_tests import models, stack  # noqa: E402
from load_tests.grpc_payloads import predict_request, wire_frame  # noqa: E402
from training.data import load_split  # noqa: E402
from training.repository import ModelRepository, load_sklearn_model  # noqa: E402

NAME = "bench"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def in_process(model, one_row, big, seconds: float) -> dict[str, float]:
    """The model alone: ``predict`` on prebuilt DataFrames (float32-rounded like the wire)."""
    one_row, big = wire_frame(one_row), wire_frame(big)
    latencies = []
    cpu_started = time.process_time()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        model.predict(one_row)
        latencies.append(time.perf_counter() - started)
    cpu_per_call = (time.process_time() - cpu_started) / len(latencies)
    started = time.perf_counter()
    calls = 0
    while time.perf_counter() - started < seconds:
        model.predict(big)
        calls += 1
    return {
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "rps": len(latencies) / sum(latencies),
        "cpu_ms": cpu_per_call * 1e3,
        "rows_per_s": calls * len(big) / (time.perf_counter() - started),
    }


async def sequential(target: str, request, seconds: float) -> list[float]:
    latencies = []
    async with grpc.aio.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        await stub.Predict(request, timeout=30)
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await stub.Predict(request, timeout=30)
            latencies.append(time.perf_counter() - started)
    return latencies


async def concurrent(target: str, request, concurrency: int, seconds: float) -> tuple[float, int]:
    """Requests/s with ``concurrency`` callers, one channel each (like separate clients)."""
    done = 0
    failures = 0
    channels = [grpc.aio.insecure_channel(target) for _ in range(concurrency)]
    stubs = [prediction_service_pb2_grpc.PredictionServiceStub(c) for c in channels]
    await asyncio.gather(*(s.Predict(request, timeout=30) for s in stubs))
    deadline = time.perf_counter() + seconds

    async def caller(stub) -> None:
        nonlocal done, failures
        while time.perf_counter() < deadline:
            try:
                await stub.Predict(request, timeout=30)
                done += 1
            except grpc.aio.AioRpcError:
                failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller(s) for s in stubs))
    elapsed = time.perf_counter() - started
    for channel in channels:
        await channel.close()
    return done / elapsed, failures


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process: a cost measure the machine's load does not skew."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(server: ManagedProcess, one, big, seconds: float) -> dict[str, float]:
    stack.serving(server)
    target = server.address("grpc")
    one_request = predict_request(one, NAME)
    big_request = predict_request(big, NAME)
    latencies = asyncio.run(sequential(target, one_request, seconds))
    cpu_before = cpu_seconds(server.pid)
    rps, failures = asyncio.run(concurrent(target, one_request, 16, seconds))
    cpu_per_request = (cpu_seconds(server.pid) - cpu_before) / max(rps * seconds, 1)
    big_latencies = asyncio.run(sequential(target, big_request, seconds))
    return {
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "rps16": rps,
        "failures": failures,
        "cpu_ms": cpu_per_request * 1e3,
        "rows_per_s": len(big) / statistics.mean(big_latencies),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="a joblib version folder (with manifest)")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each measurement")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--batch-timeout-micros", type=int, default=0)
    parser.add_argument(
        "--num-batch-threads", type=int, default=1, help="1, as the stack's batching.config"
    )
    args = parser.parse_args()

    split = load_split()
    work = Path(tempfile.mkdtemp(prefix="bench_model_server_"))
    try:
        repo = ModelRepository(work / "models")
        if args.model_dir:
            shutil.copytree(args.model_dir, repo.model_dir(NAME) / "1")
            repo.register(NAME, "sklearn")
        else:
            models.publish_sklearn(repo, models.small_sklearn(split.train, trees=0), name=NAME)
        model = load_sklearn_model(repo.version_dir(NAME, 1))
        one = split.test.head(1)
        big = split.test.sample(n=1024, random_state=0)

        base = in_process(model, one, big, args.seconds)
        (work / "batching.config").write_text(
            f"max_batch_size {{ value: {args.max_batch_size} }}\n"
            f"batch_timeout_micros {{ value: {args.batch_timeout_micros} }}\n"
            "max_enqueued_batches { value: 1000 }\n"
            f"num_batch_threads {{ value: {args.num_batch_threads} }}\n"
        )
        # Both start at once (startup is mostly importing TensorFlow); one is measured at a time.
        servers = {
            label: stack.model_server(
                repo.config_path,
                work / f"{index}.log",
                rest_port=0,
                batching_file=batching,
                poll_seconds=0,
            ).start()
            for index, (label, batching) in enumerate(
                (("no batching", None), ("batching", work / "batching.config"))
            )
        }
        results = {}
        try:
            for label, server in servers.items():
                results[label] = measure(server, one, big, args.seconds)
        finally:
            for server in servers.values():
                server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    plain, batched = results["no batching"], results["batching"]
    print(f"model: {args.model_dir or 'preprocessing + LinearRegression (2,000-row fit)'}")
    print(
        f"in-process: p50 {base['p50'] * 1e3:.2f} ms, p99 {base['p99'] * 1e3:.2f} ms, "
        f"{base['rps']:.0f} calls/s at batch 1, {base['rows_per_s']:.0f} rows/s at batch 1,024"
    )
    rows = [
        ("Predict p50 latency, batch 1 (ms)", plain["p50"] * 1e3, base["p50"] * 1e3),
        ("Predict p99 latency, batch 1 (ms)", plain["p99"] * 1e3, base["p99"] * 1e3),
        ("req/s, 16 concurrent, no batching", plain["rps16"], base["rps"]),
        ("req/s, 16 concurrent, batching", batched["rps16"], base["rps"]),
        ("rows/s at batch 1,024 (no batching)", plain["rows_per_s"], base["rows_per_s"]),
        ("CPU ms per request, 16 conc., no batching", plain["cpu_ms"], base["cpu_ms"]),
        ("CPU ms per request, 16 conc., batching", batched["cpu_ms"], base["cpu_ms"]),
    ]
    print(f"{'measure':<40}{'server':>12}{'in-process':>12}{'ratio':>8}")
    for label, served, local in rows:
        print(f"{label:<40}{served:>12.1f}{local:>12.1f}{served / local:>8.2f}")
    print(f"failed requests: {plain['failures'] + batched['failures']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
