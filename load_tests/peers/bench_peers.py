"""The serving benchmark: the project as users run it, against the servers they would pick instead.

    make bench        # = .venv/bin/python load_tests/peers/bench_peers.py

The project runs as ``housing serve stack`` with its own defaults (what ``make run`` starts;
only free ports and a scratch logs folder are set) and is measured for BOTH models; the peers
(plain FastAPI, MLServer, MLflow) serve the SAME exported scikit-learn pipeline (the version
the stack serves by default: its ``stable`` label, or ``--model``), one at a time, driven by
the same load generator (wrk, closed loop). Scenarios: ``idle`` (1 connection, 1 row: the
latency a lone caller sees), ``1 row`` and ``20 rows`` at ``--connections`` (16). Peers run
from their own venvs under ``~/.cache/housing-peers`` (created on first use; never project
dependencies). Prints a table and writes ``results.json`` to ``--out`` (default
``runs/bench_peers/<UTC stamp>/``): throughput, rows/s, p50/p99, errors, server CPU ms per
request (every process of the server, workers included), each peer figure as a ratio to the
project's sklearn figure, and the project's gateway footprint (start-up, resident memory).

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
from training.repository import ModelRepository

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
    parser.add_argument("--idle-seconds", type=float, default=5, help="seconds of the idle run")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for peers")
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="model repository the stack serves (default: $HOUSING_MODELS_DIR or models/; "
        "the stack trains what is missing, as make run does)",
    )
    parser.add_argument(
        "--ready-timeout", type=float, default=900, help="seconds to start (training included)"
    )
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


def resolve_model(path: Path | None, models_dir: Path) -> Path:
    """The sklearn version every server serves: ``--model``, else the stack's default one."""
    if path is not None:
        if not (path / "model.joblib").is_file():
            raise SystemExit(f"bench_peers: error: --model {path} has no model.joblib")
        return path.resolve()
    repo = ModelRepository(models_dir)
    version = repo.default_version(SKLEARN_MODEL) if repo.config_path.is_file() else None
    if version is None:
        raise SystemExit(
            f"bench_peers: error: no {SKLEARN_MODEL} version in {models_dir}; "
            "run `make run` (or `housing train sklearn`) first, or pass --model"
        )
    return repo.version_dir(SKLEARN_MODEL, version).resolve()


def scenarios(
    batch_rows: int, connections: int, idle_seconds: float, seconds: float
) -> dict[str, tuple[int, int, float, list[list[dict[str, Any]]]]]:
    """name → (rows per request, connections, seconds, row groups): the same for everyone.
    Rows with a null are left out: not every peer's wire format can carry one (the gateway
    itself accepts them; locust sends them)."""
    rows = [r for r in json.loads(PAYLOADS.read_text()) if None not in r.values()]
    single = [[r] for r in rows]
    batches = [
        (rows * 2)[start : start + batch_rows] for start in range(0, len(rows), batch_rows // 2)
    ]
    return {
        "idle": (1, 1, idle_seconds, single),
        "1 row": (1, connections, seconds, single),
        f"{batch_rows} rows": (batch_rows, connections, seconds, batches),
    }


def measure(
    peer: servers.Peer, ctx: servers.Context, args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """Every scenario for every model the peer serves: ``{"<model> <scenario>": figures}``,
    plus ``footprint`` for the project."""
    print(f"[bench] starting {peer.name}: {peer.what}", flush=True)
    started = peer.start(ctx)
    groups = scenarios(args.batch_rows, args.connections, args.idle_seconds, args.seconds)
    results: dict[str, dict[str, Any]] = {}
    try:
        servers.wait_predicting(started, peer.encode, groups["idle"][3][0], args.ready_timeout)
        roots = [proc.pid for proc in started.processes]
        for model, url in started.urls.items():
            for scenario, (rows, connections, seconds, row_groups) in groups.items():
                name = f"{model} {scenario}"
                bodies = [peer.encode(g) for g in row_groups]
                if args.warmup > 0:
                    loadgen.drive(url, bodies, rows, connections, args.warmup)
                spies = (
                    profiling.start(started.processes, seconds, args.out / "profile" / model)
                    if args.profile and peer.name == "project" and scenario == "1 row"
                    else []
                )
                by_role: dict[str, set[int]] = {}
                for root in roots:
                    for role, pgids in cputime.groups_by_role(root).items():
                        by_role.setdefault(role, set()).update(pgids)
                cpu_before = {r: cputime.group_cpu_seconds(g) for r, g in by_role.items()}
                wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
                result = loadgen.drive(url, bodies, rows, connections, seconds)
                cpu_by_role = {
                    r: cputime.group_cpu_seconds(g) - cpu_before[r] for r, g in by_role.items()
                }
                wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
                wrk_cpu = (wrk_after.ru_utime + wrk_after.ru_stime) - (
                    wrk_before.ru_utime + wrk_before.ru_stime
                )
                for spy in spies:
                    spy.wait(timeout=60)
                served = max(result.requests - result.errors, 1)
                results[name] = {
                    **result.as_dict(),
                    "connections": connections,
                    "server_cpu_ms_per_request": 1000 * sum(cpu_by_role.values()) / served,
                    "server_cpu_ms_per_request_by_process": {
                        r: 1000 * c / served for r, c in cpu_by_role.items()
                    },
                    "loadgen_cpu_ms_per_request": 1000 * wrk_cpu / served,
                    "loadavg_1m": os.getloadavg()[0],
                }
                print(
                    f"[bench] {peer.name:14s} {name:24s} {result.rps:8.1f} req/s "
                    f"{result.rows_per_s:9.1f} rows/s  p50 {result.p50_ms:7.1f} ms  "
                    f"p99 {result.p99_ms:7.1f} ms  errors {result.errors}  "
                    f"cpu {results[name]['server_cpu_ms_per_request']:.2f} ms/req",
                    flush=True,
                )
        if started.startup or peer.name == "project":
            results["footprint"] = {
                "startup_seconds": started.startup,
                "resident_mb": {
                    role: sizes
                    for root in roots
                    for role, sizes in cputime.resident_by_role(root).items()
                },
            }
    finally:
        started.stop()
    return results


def with_ratios(results: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Add ``vs_project`` = peer figure / the project's figure for the same model and scenario."""
    base = results.get("project", {})
    for figures in results.values():
        for scenario, row in figures.items():
            ref = base.get(scenario)
            if not ref or "rps" not in row or "rps" not in ref:
                continue
            row["vs_project"] = {
                m: (row[m] / ref[m] if ref[m] else None) for m in METRICS if m != "errors"
            }


def table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    head = (
        f"{'server':14s} {'model, payload':26s} {'req/s':>8s} {'rows/s':>9s} {'p50 ms':>8s} "
        f"{'p99 ms':>8s} {'errors':>7s} {'cpu ms/req':>10s}   {'req/s ×':>7s} {'p99 ×':>6s} "
        f"{'cpu ×':>6s}"
    )
    lines = [head, "-" * len(head)]
    for name, figures in results.items():
        for scenario, row in figures.items():
            if "error" in row:
                lines.append(f"{name:14s} {scenario:26s} FAILED: {row['error'][:80]}")
                continue
            if "rps" not in row:
                continue
            ratio = row.get("vs_project", {})
            lines.append(
                f"{name:14s} {scenario:26s} {row['rps']:8.1f} {row['rows_per_s']:9.1f} "
                f"{row['p50_ms']:8.1f} {row['p99_ms']:8.1f} {row['errors']:7d} "
                f"{row['server_cpu_ms_per_request']:10.2f}   {ratio.get('rps') or 0:7.2f} "
                f"{ratio.get('p99_ms') or 0:6.2f} "
                f"{ratio.get('server_cpu_ms_per_request') or 0:6.2f}"
            )
    footprint = results.get("project", {}).get("footprint")
    if footprint:
        lines += ["", f"project start-up (s): {footprint['startup_seconds']}"]
        lines.append(f"project resident MB by process: {footprint['resident_mb']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    models_dir = (args.models_dir or ModelRepository().root).resolve()
    version_dir = resolve_model(args.model, models_dir)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out = args.out or REPO_ROOT / "runs" / "bench_peers" / stamp
    out.mkdir(parents=True, exist_ok=True)
    loadgen.wrk_binary()
    print(
        f"[bench] stack over {models_dir}; peers serve {version_dir}; "
        f"{args.connections} connections; results in {out}",
        flush=True,
    )
    results: dict[str, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as scratch:
        ctx = servers.Context(
            version_dir, models_dir, Path(scratch), args.workers, args.ready_timeout
        )
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
        "models_dir": str(models_dir),
        "peer_model": str(version_dir),
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
    for collapsed in sorted((out / "profile").rglob("*.txt")):
        print(f"\n[profile] {collapsed.parent.name}: frames by share of samples")
        for frame, share in profiling.top_frames(collapsed):
            print(f"  {share:6.1%}  {frame[:110]}")
    failed = [name for name, figures in results.items() if "all" in figures]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
