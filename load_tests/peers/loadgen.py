"""One load generator for every server: ``wrk`` (Debian) with a Lua script for POST bodies.

wrk is written in C, so on a 2-core machine it takes far less CPU away from the server
under test than a Python client would. It is closed-loop: each of the ``connections``
keeps one request in flight, so throughput and latency are measured together.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

LUA = Path(__file__).resolve().parent / "post_bodies.lua"


class LoadGenError(RuntimeError):
    """wrk is missing or did not report a result."""


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    rps: float
    rows_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    error_detail: dict[str, int]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise LoadGenError("wrk not found: install it with `apt-get install -y wrk`")
    return found


def drive(
    url: str,
    bodies: list[str],
    rows_per_request: int,
    connections: int = 16,
    seconds: float = 15,
    threads: int = 1,
) -> LoadResult:
    """POST ``bodies`` round-robin to ``url`` for ``seconds``; errors = socket + non-2xx."""
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as fh:
        fh.write("\n".join(bodies) + "\n")
        bodies_file = fh.name
    command = [
        wrk_binary(), f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
        "--timeout", "10s", "-s", str(LUA), url, "--", bodies_file,
    ]  # fmt: skip
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 60, check=False
        )
    finally:
        Path(bodies_file).unlink(missing_ok=True)
    line = next((x for x in completed.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if completed.returncode != 0 or line is None:
        raise LoadGenError(f"wrk failed ({completed.returncode}): {completed.stderr[-500:]}")
    raw = json.loads(line.removeprefix("WRK_JSON "))
    duration = raw["duration_us"] / 1e6
    errors = sum(raw["errors"].values())
    ok = raw["requests"] - raw["errors"]["status"]
    lat = raw["latency_us"]
    return LoadResult(
        requests=raw["requests"],
        seconds=duration,
        rps=raw["requests"] / duration,
        rows_per_s=ok * rows_per_request / duration,
        p50_ms=lat["p50"] / 1000,
        p99_ms=lat["p99"] / 1000,
        max_ms=lat["max"] / 1000,
        errors=errors,
        error_detail=raw["errors"],
    )
