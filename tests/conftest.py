"""Shared fixtures: the dataset and its split (loaded once per session), a GCS emulator."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.process import ManagedProcess, free_port, tcp_open
from training.data import Split, load_split


@pytest.fixture(scope="session")
def split() -> Split:
    return load_split()


@pytest.fixture(scope="session")
def storage_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """gcp-storage-emulator as a real HTTP server on a free port (in memory); its URL."""
    port = free_port()
    argv = [
        str(Path(sys.executable).parent / "gcp-storage-emulator"),
        "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "--quiet",
    ]  # fmt: skip
    log = tmp_path_factory.mktemp("gcs") / "emulator.log"
    with ManagedProcess("gcp-storage-emulator", argv, log) as emulator:
        emulator.wait_ready(tcp_open(port), timeout=30)
        yield f"http://127.0.0.1:{port}"
