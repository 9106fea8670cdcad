"""What long commands show on the console: progress, and not TensorFlow's start-up noise.

One policy for every command: progress bars (with ETA) and heartbeat lines appear only on
an interactive terminal and never under ``housing --quiet``; logs redirected to a file get
none. TensorFlow's native start-up messages (oneDNN, CPU features, "could not find cuda
drivers", cuInit, absl's pre-init warning) are written by C++ straight to file descriptor
2 before any setting can silence them, so :class:`NativeNoiseFilter` drops those lines at
the descriptor, passing everything else through; ``housing --verbose`` keeps them.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

_state = {"quiet": False}

# A native log line: "I0000 00:00:1796036709.996654   23104 port.cc:153] ...".
_NATIVE_LINE = re.compile(rb"^([IWEF])\d{4} \S+ +\d+ [\w./-]+:\d+\] (.*)$")
_CUDA_STARTUP = re.compile(rb"cuda|cuInit|cuDNN|cuFFT|cuBLAS|Unable to register|TensorRT", re.I)
_OTHER_NOISE = (
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"To enable the following instructions:",
)


def configure(quiet: bool = False) -> None:
    _state["quiet"] = quiet


def quiet() -> bool:
    return _state["quiet"]


def progress_enabled() -> bool:
    return not _state["quiet"] and sys.stderr.isatty()


def bar(iterable: Iterable[Any] | None = None, enabled: bool = True, **options: Any) -> Any:
    """A tqdm bar on stderr (rate and ETA), silent unless :func:`progress_enabled` (and
    ``enabled``: a command's own switch)."""
    from tqdm import tqdm

    return tqdm(iterable, file=sys.stderr, disable=not (enabled and progress_enabled()), **options)


@contextmanager
def heartbeat(what: str, every_seconds: float = 15.0) -> Iterator[None]:
    """While the block runs, a line every ``every_seconds``: "<what>: still running (1m30s)".
    For waits whose length nobody knows (a Vertex operation, one long fit)."""
    if not progress_enabled():
        yield
        return
    done = threading.Event()
    started = time.monotonic()

    def beat() -> None:
        while not done.wait(every_seconds):
            elapsed = int(time.monotonic() - started)
            print(f"{what}: still running ({elapsed // 60}m{elapsed % 60:02d}s)", file=sys.stderr)

    thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def is_noise(line: bytes) -> bool:
    """TensorFlow start-up chatter: native INFO/WARNING lines, CUDA probing errors."""
    if line.startswith(_OTHER_NOISE):
        return True
    match = _NATIVE_LINE.match(line)
    if match is None:
        return False
    return match.group(1) in (b"I", b"W") or bool(_CUDA_STARTUP.search(match.group(2)))


class NativeNoiseFilter:
    """Puts a pipe in front of file descriptor 2; a thread copies what arrives to the real
    stderr, dropping :func:`is_noise` lines. Partial lines (progress bars redrawn with
    ``\\r``) pass at once unless they could be the start of a native log line."""

    def __init__(self) -> None:
        self._saved: int | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> NativeNoiseFilter:
        sys.stderr.flush()
        self._saved = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._thread = threading.Thread(
            target=self._pump, args=(read_end, self._saved), name="stderr-filter", daemon=True
        )
        self._thread.start()
        # Python-side absl warnings from TensorFlow and Keras ("WARNING:absl:...").
        logging.getLogger("absl").setLevel(logging.ERROR)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        return self

    @staticmethod
    def _pump(read_end: int, out: int) -> None:
        pending = b""
        while chunk := os.read(read_end, 65536):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                if not is_noise(line):
                    os.write(out, line + b"\n")
            if pending and (b"\r" in pending or pending[:1] not in b"IWEFT"):
                os.write(out, pending)
                pending = b""
        if pending and not is_noise(pending):
            os.write(out, pending)
        os.close(read_end)

    def stop(self, timeout: float = 2.0) -> None:
        """Put the real stderr back; what was in the pipe is written first."""
        if self._saved is None:
            return
        sys.stderr.flush()
        os.dup2(self._saved, 2)  # closes the pipe's last write end: the thread sees EOF
        if self._thread is not None:
            self._thread.join(timeout)
        os.close(self._saved)
        self._saved = None
