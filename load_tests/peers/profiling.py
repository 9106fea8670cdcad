"""Sample the project's server processes with py-spy while the benchmark drives them.

py-spy attaches from outside (no code change, no restart); ``--format raw`` writes
collapsed stacks, which ``top_frames`` turns into the table of where the time goes.
"""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from pathlib import Path

from core.process import ManagedProcess


def start(processes: list[ManagedProcess], seconds: float, out: Path) -> list[ManagedProcess]:
    """One ``py-spy record`` per process (and its subprocesses), ``seconds`` long."""
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        raise RuntimeError("py-spy not found: pip install py-spy (dev extra)")
    out.mkdir(parents=True, exist_ok=True)
    return [
        ManagedProcess(
            f"py-spy {proc.name}",
            [
                spy,
                "record",
                "--pid",
                str(proc.pid),
                "--subprocesses",
                "--nonblocking",
                "--duration",
                str(max(1, round(seconds))),
                "--rate",
                "50",
                "--format",
                "raw",
                "--output",
                str(out / f"{proc.name}.txt"),
            ],
            out / f"{proc.name}.py-spy.log",
        ).start()  # fmt: skip
        for proc in processes
    ]


def top_frames(collapsed: Path, limit: int = 15) -> list[tuple[str, float]]:
    """Frames by inclusive share of samples (each frame counted once per stack)."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        for frame in set(stack.split(";")):
            inclusive[frame] += int(count)
    return [(frame, n / total) for frame, n in inclusive.most_common(limit)] if total else []
