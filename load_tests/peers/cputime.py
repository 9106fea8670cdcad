"""CPU seconds used by server process groups: a cost per request that contention barely moves.

On a shared 2-core machine throughput depends on who else is running; the CPU time a server
spends per request does not (much). Every server is started in its own session, so its
process group holds its workers too. Read from /proc (Linux).
"""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgids: set[int]) -> float:
    """user + system seconds of the live processes in ``pgids`` (workers included)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended while we looked
            continue
        fields = text[text.rindex(")") + 2 :].split()
        # after the command: state ppid pgrp session ... utime(12) stime(13)
        if int(fields[2]) in pgids:
            total += int(fields[11]) + int(fields[12])
    return total / TICKS
