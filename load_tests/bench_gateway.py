"""Gateway benchmark: one-row requests at concurrency 32, gateway vs the model server direct.

Starts the real processes (``housing serve model-server`` and ``housing serve gateway``) on
free loopback ports over a small real model, then measures for ``--seconds`` each:

1. the model server directly over gRPC (``PredictionService.Predict``, grpc.aio);
2. the gateway over HTTP (``POST /v1/predict``, httpx, keep-alive connections).

Prints p50/p99 latency and throughput for both, and the gateway's added latency as a
ratio to the direct call. Bounded to about two minutes; not part of the test suite.
The load generator runs on the same 2 cores as the servers, so absolute numbers are a
floor; compare the ratio, and rerun on the target machine for capacity figures.

    .venv/bin/python load_tests/bench_gateway.py [--seconds 10] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.process import http_ok  # noqa: E402
from load_tests import models as bench_models  # noqa: E402
from load_tests import stack  # noqa: E402
from load_tests.peers.cputime import tree_cpu_seconds  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def summary(latencies: list[float], errors: int, seconds: float) -> dict[str, float]:
    return {
        "requests": len(latencies),
        "errors": errors,
        "throughput_rps": round(len(latencies) / seconds, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 3),
        "p99_ms": round(percentile(latencies, 99) * 1000, 3),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 3),
    }


def per_request(cpu_seconds: float, result: dict) -> float:
    """CPU ms per request (warm-up requests included in the count estimate)."""
    total = result["requests"] + result["warmup_requests"]
    return round(cpu_seconds * 1000 / max(total, 1), 3)


async def drive(call, concurrency: int, seconds: float, warmup: float) -> dict[str, float]:
    """``concurrency`` closed loops calling ``call()``; latencies after the warm-up only."""
    latencies: list[float] = []
    errors = warm = 0
    start = time.perf_counter()
    measure_from = start + warmup
    stop = measure_from + seconds

    async def loop() -> None:
        nonlocal errors, warm
        while (now := time.perf_counter()) < stop:
            try:
                await call()
            except Exception:
                errors += 1
                continue
            if now >= measure_from:
                latencies.append(time.perf_counter() - now)
            else:
                warm += 1

    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return {**summary(latencies, errors, seconds), "warmup_requests": warm}


async def bench_grpc(target: str, instance: dict, concurrency: int, seconds: float, warmup: float):
    import grpc

    from core.tfserving import predict_request
    from core.tfserving_protos.tensorflow_serving.apis import prediction_service_pb2_grpc

    columns = {name: [value] for name, value in instance.items()}
    request = predict_request("housing_sklearn", columns)
    async with grpc.aio.insecure_channel(target) as channel:
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict

        async def call() -> None:
            await predict(request, timeout=10)

        return await drive(call, concurrency, seconds, warmup)


async def bench_http(url: str, instance: dict, concurrency: int, seconds: float, warmup: float):
    import httpx

    body = json.dumps({"instances": [instance]}).encode()
    headers = {"content-type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as client:

        async def call() -> None:
            response = await client.post("/v1/predict", content=body, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(response.status_code)

        return await drive(call, concurrency, seconds, warmup)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=2, help="unmeasured seconds per phase")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--workers", type=int, default=2, help="gateway worker processes")
    args = parser.parse_args()
    if args.seconds * 2 + args.warmup * 2 > 90:
        parser.error("keep the run within two minutes: --seconds and --warmup too large")

    from core.contract import FEATURES
    from training.data import load_split
    from training.repository import ModelRepository

    split = load_split()
    row = split.test.iloc[0]
    instance = {
        name: (None if name == "total_bedrooms" and row[name] != row[name] else row[name])
        for name in FEATURES
    }
    instance = {
        k: (v if isinstance(v, str) or v is None else float(v)) for k, v in instance.items()
    }

    with tempfile.TemporaryDirectory(prefix="bench_gateway_") as tmp:
        folder = Path(tmp)
        repo = ModelRepository(folder / "models")
        bench_models.publish_sklearn(repo, bench_models.small_sklearn(split.train))
        server = stack.model_server(repo.config_path, folder / "model_server.log")
        gateway = None
        try:
            server.start().wait_ready(
                http_ok(f"{server.url('rest')}/v1/models/housing_sklearn"), 120
            )
            target = server.address("grpc")
            gateway = stack.gateway(
                {"housing_sklearn": target},
                folder / "gateway.log",
                extra=["--workers", str(args.workers), "--prediction-log-path",
                       str(folder / "predictions.sqlite3"), "--log-level", "warning"],
            )  # fmt: skip
            url = gateway.url()
            gateway.start().wait_ready(http_ok(f"{url}/readyz"), 120)
            cpu_before = tree_cpu_seconds(server.pid)
            direct = asyncio.run(
                bench_grpc(target, instance, args.concurrency, args.seconds, args.warmup)
            )
            direct["server_cpu_ms_per_request"] = per_request(
                tree_cpu_seconds(server.pid) - cpu_before, direct
            )
            cpu_before = tree_cpu_seconds(gateway.pid)
            via = asyncio.run(
                bench_http(url, instance, args.concurrency, args.seconds, args.warmup)
            )
            via["gateway_cpu_ms_per_request"] = per_request(
                tree_cpu_seconds(gateway.pid) - cpu_before, via
            )
        finally:
            if gateway is not None:
                gateway.stop()
            server.stop()

    results = {
        "concurrency": args.concurrency,
        "gateway_workers": args.workers,
        "direct_grpc": direct,
        "gateway_http": via,
        "latency_ratio_p50": round(via["p50_ms"] / direct["p50_ms"], 2),
        "latency_ratio_p99": round(via["p99_ms"] / direct["p99_ms"], 2),
        "added_p50_ms": round(via["p50_ms"] - direct["p50_ms"], 3),
    }
    print(f"{'':14}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for name, r in (("direct gRPC", direct), ("gateway HTTP", via)):
        print(
            f"{name:14}{r['throughput_rps']:>10}{r['p50_ms']:>10}{r['p99_ms']:>10}{r['errors']:>8}"
        )
    print(
        f"gateway / direct latency: p50 x{results['latency_ratio_p50']}, "
        f"p99 x{results['latency_ratio_p99']} (adds {results['added_p50_ms']} ms at p50)"
    )
    print(
        f"CPU per request: model server {direct['server_cpu_ms_per_request']} ms (direct), "
        f"gateway {via['gateway_cpu_ms_per_request']} ms (all workers)"
    )
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
