"""Benchmark the project's serving path against the servers users would pick instead.

    .venv/bin/python load_tests/peers/bench_peers.py [--peers project,mlserver,mlflow]

Every server serves the SAME exported scikit-learn pipeline (the latest ``housing_sklearn``
version, or ``--model``), one at a time, driven by the same load generator (wrk, closed
loop) at the same concurrency, with the same rows: first one row per request, then
``--batch-rows`` (20). Peers run from their own venvs under ``~/.cache/housing-peers``
(created on first use; never project dependencies). Prints a table and writes
``results.json`` to ``--out`` (default ``runs/bench_peers/<UTC stamp>/``): throughput,
rows/s, p50/p99 latency, errors, and each as a ratio to the project's figure.

The load generator and the servers share this machine's cores: the figures are what one
box does end to end, not a server's capacity on dedicated hardware.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from core.contract import SKLEARN_MODEL
from core.paths import REPO_ROOT
from load_tests.peers import cputime, loadgen, profiling, servers
from training.repository import DEFAULT_MODELS_DIR, version_numbers

PAYLOADS = REPO_ROOT / "load_tests" / "payloads" / "instances.json"
METRICS = ("rps", "rows_per_s", "p50_ms", "p99_ms", "server_cpu_ms_per_request", "errors")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--peers",
        default="project,plain-fastapi,mlserver,mlflow",
        help=f"comma-separated, from {', '.join(servers.PEERS)} (the project runs first)",
    )
    parser.add_argument("--model", type=Path, help="a housing_sklearn version folder")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections")
    parser.add_argument("--seconds", type=float, default=15, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3, help="unmeasured seconds first")
    parser.add_argument("--batch-rows", type=int, default=20, help="rows in the batch scenario")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for peers")
    parser.add_argument(
        "--batching-file",
        type=Path,
        help="BatchingParameters text proto for the project's model server "
        "(default: load_tests/peers/servers.py BATCHING)",
    )
    parser.add_argument("--ready-timeout", type=float, default=180, help="seconds to start")
    parser.add_argument("--out", type=Path, help="folder for results.json and server logs")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the project's processes with py-spy during its 1-row run (slows it)",
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.peers.split(",") if n.strip()]
    unknown = [n for n in names if n not in servers.PEERS]
    if unknown:
        parser.error(f"--peers: unknown {', '.join(unknown)}; known: {', '.join(servers.PEERS)}")
    args.names = sorted(names, key=lambda n: n != "project")
    return args


def resolve_model(path: Path | None) -> Path:
    if path is not None:
        if not (path / "model.joblib").is_file():
            raise SystemExit(f"bench_peers: error: --model {path} has no model.joblib")
        return path.resolve()
    model_dir = Path(os.environ.get("HOUSING_MODELS_DIR", DEFAULT_MODELS_DIR)) / SKLEARN_MODEL
    versions = version_numbers(model_dir)
    if not versions:
        raise SystemExit(
            f"bench_peers: error: no {SKLEARN_MODEL} version in {model_dir.parent}; "
            "run `housing train sklearn` first or pass --model"
        )
    return (model_dir / str(versions[-1])).resolve()


def scenarios(batch_rows: int) -> dict[str, tuple[int, list[list[dict[str, Any]]]]]:
    """The same row groups for everyone. Rows with a null are left out: not every peer's
    wire format can carry one (the gateway itself accepts them; locust sends them)."""
    rows = [r for r in json.loads(PAYLOADS.read_text()) if None not in r.values()]
    single = [[r] for r in rows]
    batches = [
        (rows * 2)[start : start + batch_rows] for start in range(0, len(rows), batch_rows // 2)
    ]
    return {"1 row": (1, single), f"{batch_rows} rows": (batch_rows, batches)}


def measure(
    peer: servers.Peer, ctx: servers.Context, args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    print(f"[bench] starting {peer.name}: {peer.what}", flush=True)
    started = peer.start(ctx)
    groups = scenarios(args.batch_rows)
    results: dict[str, dict[str, Any]] = {}
    try:
        servers.wait_predicting(started, peer.encode, groups["1 row"][1][0], args.ready_timeout)
        for scenario, (rows, row_groups) in groups.items():
            bodies = [peer.encode(g) for g in row_groups]
            if args.warmup > 0:
                loadgen.drive(started.url, bodies, rows, args.connections, args.warmup)
            spies = (
                profiling.start(started.processes, args.seconds, args.out / "profile")
                if args.profile and peer.name == "project" and rows == 1
                else []
            )
            groups_cpu = {proc.name: {proc.pid} for proc in started.processes}
            cpu_before = {n: cputime.group_cpu_seconds(g) for n, g in groups_cpu.items()}
            wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            result = loadgen.drive(started.url, bodies, rows, args.connections, args.seconds)
            cpu_by_process = {
                n: cputime.group_cpu_seconds(g) - cpu_before[n] for n, g in groups_cpu.items()
            }
            server_cpu = sum(cpu_by_process.values())
            wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
            wrk_cpu = (wrk_after.ru_utime + wrk_after.ru_stime) - (
                wrk_before.ru_utime + wrk_before.ru_stime
            )
            for spy in spies:
                spy.wait(timeout=60)
            served = max(result.requests - result.errors, 1)
            results[scenario] = {
                **result.as_dict(),
                "server_cpu_ms_per_request": 1000 * server_cpu / served,
                "server_cpu_ms_per_request_by_process": {
                    n: 1000 * c / served for n, c in cpu_by_process.items()
                },
                "loadgen_cpu_ms_per_request": 1000 * wrk_cpu / served,
                "loadavg_1m": os.getloadavg()[0],
            }
            print(
                f"[bench] {peer.name:14s} {scenario:8s} {result.rps:8.1f} req/s "
                f"{result.rows_per_s:9.1f} rows/s  p50 {result.p50_ms:7.1f} ms  "
                f"p99 {result.p99_ms:7.1f} ms  errors {result.errors}  "
                f"cpu {results[scenario]['server_cpu_ms_per_request']:.2f} ms/req",
                flush=True,
            )
    finally:
        started.stop()
    return results


def with_ratios(results: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Add ``vs_project`` = peer figure / project figure, per scenario and metric."""
    base = results.get("project", {})
    for figures in results.values():
        for scenario, row in figures.items():
            ref = base.get(scenario)
            if not ref or "error" in row or "error" in ref:
                continue
            row["vs_project"] = {
                m: (row[m] / ref[m] if ref[m] else None) for m in METRICS if m != "errors"
            }


def table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    head = (
        f"{'server':14s} {'payload':8s} {'req/s':>8s} {'rows/s':>9s} {'p50 ms':>8s} "
        f"{'p99 ms':>8s} {'errors':>7s} {'cpu ms/req':>10s}   {'req/s ×':>7s} {'p99 ×':>6s} "
        f"{'cpu ×':>6s}"
    )
    lines = [head, "-" * len(head)]
    for name, figures in results.items():
        for scenario, row in figures.items():
            if "error" in row:
                lines.append(f"{name:14s} {scenario:8s} FAILED: {row['error'][:80]}")
                continue
            ratio = row.get("vs_project", {})
            lines.append(
                f"{name:14s} {scenario:8s} {row['rps']:8.1f} {row['rows_per_s']:9.1f} "
                f"{row['p50_ms']:8.1f} {row['p99_ms']:8.1f} {row['errors']:7d} "
                f"{row['server_cpu_ms_per_request']:10.2f}   {ratio.get('rps', 0):7.2f} "
                f"{ratio.get('p99_ms', 0):6.2f} {ratio.get('server_cpu_ms_per_request', 0):6.2f}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    version_dir = resolve_model(args.model)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out = args.out or REPO_ROOT / "runs" / "bench_peers" / stamp
    out.mkdir(parents=True, exist_ok=True)
    loadgen.wrk_binary()
    print(f"[bench] model {version_dir}; {args.connections} connections; results in {out}")
    results: dict[str, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as scratch:
        batching = args.batching_file.read_text() if args.batching_file else servers.BATCHING
        ctx = servers.Context(version_dir, Path(scratch), args.workers, batching)
        for name in args.names:
            try:
                results[name] = measure(servers.PEERS[name], ctx, args)
            except Exception as exc:  # one broken peer must not hide the others' figures
                print(f"[bench] {name} failed: {exc}", file=sys.stderr, flush=True)
                results[name] = {"all": {"error": str(exc)[-2000:]}}
        for log in Path(scratch).rglob("*.log"):
            (out / f"{log.parent.name}-{log.name}").write_bytes(log.read_bytes())
    with_ratios(results)
    report = {
        "model": str(version_dir),
        "connections": args.connections,
        "seconds": args.seconds,
        "load_generator": "wrk (1 thread, closed loop), same machine as the servers",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "loadavg_after": os.getloadavg(),
        "results": results,
    }
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(table(results))
    print(f"\n[bench] ×: ratio to the project's figure; JSON in {out / 'results.json'}")
    for collapsed in sorted((out / "profile").glob("*.txt")):
        print(f"\n[profile] {collapsed.stem}: frames by share of samples")
        for frame, share in profiling.top_frames(collapsed):
            print(f"  {share:6.1%}  {frame[:110]}")
    failed = [name for name, figures in results.items() if "all" in figures]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
