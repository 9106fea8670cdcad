"""Command lines for tests: flags written as keyword arguments, and Python run in its own
process from the repository root (what a user's shell would start)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping

from core.paths import REPO_ROOT


def flags(**options: object) -> list[str]:
    """``id_column="x", batch_size=50`` → ``["--id-column", "x", "--batch-size", "50"]``, in
    the order given; ``True`` is the bare flag and ``None`` or ``False`` leaves it out."""
    argv: list[str] = []
    for name, value in options.items():
        if value is None or value is False:
            continue
        argv.append("--" + name.replace("_", "-"))
        if value is not True:
            argv.append(str(value))
    return argv


def run_python(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``python ARGS...`` (``-m module ...`` or ``-c code ...``) in the repository root, its
    output captured as text; ``env`` None inherits this process's environment."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
