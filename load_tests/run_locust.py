"""Headless, bounded locust run against a gateway; exits non-zero when a threshold is passed.

    .venv/bin/python load_tests/run_locust.py --host http://127.0.0.1:8000 [--run-time 30s]

Writes ``stats.csv`` (+ ``_stats_history``, ``_failures``, ``_exceptions``), ``report.html``
and ``summary.json`` (the figures, the thresholds and every breach) to ``--out``
(default ``runs/load/<UTC stamp>/``). Run settings and thresholds come from
``load_tests/thresholds.toml``; command-line flags override the run settings.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run as a script: make the repository importable

from core.paths import REPO_ROOT  # noqa: E402

DEFAULT_CONFIG = HERE / "thresholds.toml"
INVALID_PREFIX = "[invalid]"


def load_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SystemExit(f"run_locust: error: no thresholds file at {path}")
    with path.open("rb") as fh:
        config = tomllib.load(fh)
    for section in ("run", "thresholds"):
        if section not in config:
            raise SystemExit(f"run_locust: error: {path} has no [{section}] section")
    return config


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--host", required=True, help="gateway base URL, e.g. http://127.0.0.1:8000"
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="thresholds TOML")
    parser.add_argument("--out", type=Path, help="report folder (default runs/load/<stamp>)")
    parser.add_argument("--users", type=int, help="concurrent users (overrides [run].users)")
    parser.add_argument("--spawn-rate", type=float, help="users started per second")
    parser.add_argument("--run-time", help="bounded duration, e.g. 30s, 2m")
    parser.add_argument("--user-rps", type=float, help="per-user pace; 0 = as fast as possible")
    parser.add_argument("--targets", help="LOAD_TARGETS: name, name@version, name#label, ...")
    parser.add_argument(
        "user_classes", nargs="*", help="locust user classes to run (default: all of them)"
    )
    return parser.parse_args(argv)


def read_stats(csv_prefix: Path) -> list[dict[str, str]]:
    path = Path(f"{csv_prefix}_stats.csv")
    if not path.is_file():
        raise SystemExit(f"run_locust: error: locust wrote no {path.name}; see its output above")
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def summarise(rows: list[dict[str, str]]) -> dict[str, Any]:
    """Aggregate figures, plus the invalid-request rows (all must have succeeded = got 4xx)."""
    total = next((r for r in rows if r["Name"] == "Aggregated"), None)
    if total is None:
        raise SystemExit("run_locust: error: locust stats have no Aggregated row")
    invalid = [r for r in rows if r["Name"].startswith(INVALID_PREFIX)]
    requests = int(total["Request Count"])
    failures = int(total["Failure Count"])
    return {
        "requests": requests,
        "failures": failures,
        "error_ratio": failures / requests if requests else 1.0,
        "rps": float(total["Requests/s"]),
        "p50_ms": float(total["50%"]),
        "p95_ms": float(total["95%"]),
        "p99_ms": float(total["99%"]),
        "max_ms": float(total["Max Response Time"]),
        "invalid_requests": sum(int(r["Request Count"]) for r in invalid),
        "invalid_not_4xx": sum(int(r["Failure Count"]) for r in invalid),
        "by_name": {
            r["Name"]: {
                "requests": int(r["Request Count"]),
                "failures": int(r["Failure Count"]),
                "p95_ms": float(r["95%"]) if r["95%"] != "N/A" else None,
            }
            for r in rows
            if r["Name"] != "Aggregated"
        },
    }


def breaches(summary: dict[str, Any], limits: dict[str, Any]) -> list[str]:
    checks = [
        ("max_error_ratio", summary["error_ratio"], lambda v, t: v <= t),
        ("max_p95_ms", summary["p95_ms"], lambda v, t: v <= t),
        ("max_p99_ms", summary["p99_ms"], lambda v, t: v <= t),
        ("min_requests", summary["requests"], lambda v, t: v >= t),
        ("min_invalid_requests", summary["invalid_requests"], lambda v, t: v >= t),
    ]
    found = [
        f"{key}: measured {value:g}, limit {limits[key]:g}"
        for key, value, ok in checks
        if key in limits and not ok(value, limits[key])
    ]
    if summary["invalid_not_4xx"]:
        found.append(f"invalid requests not answered with a 4xx: {summary['invalid_not_4xx']}")
    return found


def run(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = load_config(args.config)
    settings = config["run"]
    users = args.users or int(settings.get("users", 16))
    spawn_rate = args.spawn_rate or float(settings.get("spawn_rate", users))
    run_time = args.run_time or str(settings.get("run_time", "60s"))
    user_rps = args.user_rps if args.user_rps is not None else settings.get("user_rps", 10)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or REPO_ROOT / "runs" / "load" / stamp
    out.mkdir(parents=True, exist_ok=True)
    prefix = out / "locust"
    env = {
        **os.environ,
        "LOAD_USER_RPS": str(user_rps),
        "LOAD_BATCH_ROWS": str(settings.get("batch_rows", 20)),
        "LOAD_TARGETS": args.targets or str(settings.get("targets", "housing_sklearn")),
    }
    command = [
        sys.executable, "-m", "locust",
        "-f", str(HERE / "locustfile.py"),
        "--headless", "--host", args.host,
        "--users", str(users), "--spawn-rate", str(spawn_rate),
        "--run-time", run_time, "--stop-timeout", "5",
        "--csv", str(prefix), "--csv-full-history", "--html", str(out / "report.html"),
        "--only-summary", "--exit-code-on-error", "0", "--loglevel", "WARNING",
        *args.user_classes,
    ]  # fmt: skip
    print(f"[load] {users} users for {run_time} against {args.host} -> {out}", flush=True)
    completed = subprocess.run(command, env=env, check=False)
    if completed.returncode != 0:
        print(f"[load] locust exited {completed.returncode}", file=sys.stderr)
        return completed.returncode
    summary = summarise(read_stats(prefix))
    found = breaches(summary, config["thresholds"])
    result = {"host": args.host, "users": users, "run_time": run_time, **summary}
    result |= {"thresholds": config["thresholds"], "breaches": found, "passed": not found}
    (out / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"[load] {summary['requests']} requests, {summary['rps']:.1f} req/s, "
        f"errors {summary['error_ratio']:.2%}, p50 {summary['p50_ms']:.0f} ms, "
        f"p95 {summary['p95_ms']:.0f} ms, p99 {summary['p99_ms']:.0f} ms, "
        f"invalid {summary['invalid_requests']} (non-4xx {summary['invalid_not_4xx']})"
    )
    for line in found:
        print(f"[load] THRESHOLD PASSED: {line}", file=sys.stderr)
    print(f"[load] {'PASS' if not found else 'FAIL'}; reports in {out}")
    return 0 if not found else 1


if __name__ == "__main__":
    raise SystemExit(run())
