"""CPU seconds used by server process groups: a cost per request that contention barely moves.

On a shared 2-core machine throughput depends on who else is running; the CPU time a server
spends per request does not (much). Every server is started in its own session, so its
process group holds its workers too. Read from /proc (Linux).
"""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command: state ppid pgrp session ... utime(12)
    stime(13); None once the process has ended."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _live_pids() -> list[int]:
    return [int(stat.parent.name) for stat in Path("/proc").glob("[0-9]*/stat")]


def _cpu_ticks(fields: list[str]) -> int:
    return int(fields[11]) + int(fields[12])


def group_cpu_seconds(pgids: set[int]) -> float:
    """user + system seconds of the live processes in ``pgids`` (workers included)."""
    ticks = 0
    for pid in _live_pids():
        fields = _stat_fields(pid)
        if fields is not None and int(fields[2]) in pgids:
            ticks += _cpu_ticks(fields)
    return ticks / TICKS


def process_tree(root: int) -> set[int]:
    """``root`` and every live descendant (services a launcher started in their own sessions
    included), found through the parent pids in /proc."""
    children: dict[int, list[int]] = {}
    for pid in _live_pids():
        fields = _stat_fields(pid)
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(pid)
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo.extend(children.get(pid, []))
    return tree


def role(pid: int) -> str:
    """A short name for a process of the stack: the ``housing serve`` subcommand, or the
    program's name (prometheus)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [w.decode(errors="replace") for w in argv if w]
    if "serve" in words and words.index("serve") + 1 < len(words):
        return words[words.index("serve") + 1]
    return Path(words[0]).name if words else "?"


def group_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[2])


def groups_by_role(root: int) -> dict[str, set[int]]:
    """Process groups of ``root``'s tree, keyed by the role of each group's leader (a
    server's spawned workers run other command lines but stay in its group)."""
    groups: dict[str, set[int]] = {}
    for pid in process_tree(root):
        pgid = group_of(pid)
        if pgid is not None:
            groups.setdefault(role(pgid), set()).add(pgid)
    return groups


def resident_mb(pid: int) -> float:
    """Resident set size in MB (0 if the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def resident_by_role(root: int) -> dict[str, list[float]]:
    """RSS (MB) of each process in ``root``'s tree, by role: a gateway's workers each count."""
    sizes: dict[str, list[float]] = {}
    for pid in sorted(process_tree(root)):
        pgid = group_of(pid)
        if pgid is not None:
            sizes.setdefault(role(pgid), []).append(round(resident_mb(pid), 1))
    return sizes


def tree_cpu_seconds(root: int) -> float:
    """user + system seconds of ``root`` and its live descendants: what a server and its
    workers spent, however loaded the machine is."""
    ticks = 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields is not None:
            ticks += _cpu_ticks(fields)
    return ticks / TICKS
