"""Non-blocking file locks, so that gateway workers (separate processes) agree who works.

``flock`` locks belong to an open file and the kernel drops them when the process dies,
so a crashed holder never leaves a stale lock behind. Two opens of the same file conflict
even inside one process, so the same lock also keeps threads apart.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class FileLock:
    """``try_acquire()`` returns at once: True when this object now holds the lock."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
