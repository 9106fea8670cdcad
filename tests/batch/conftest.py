"""A real model server process over a small real sklearn model, and input files."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from core.contract import FEATURES
from core.paths import REPO_ROOT
from tests.model_server import artifacts
from training.repository import ModelRepository


@pytest.fixture(scope="session")
def batch_models(tmp_path_factory: pytest.TempPathFactory, split: Any) -> tuple[Path, Any]:
    """models/ with housing_sklearn v1 (labelled stable): the book's preprocessing +
    LinearRegression on a 2,000-row sample."""
    root = tmp_path_factory.mktemp("batch_models")
    repo = ModelRepository(root)
    model = artifacts.fit_sklearn(split.train)
    version = artifacts.publish_sklearn(repo, model)
    repo.set_label(artifacts.SKLEARN, "stable", version)
    return root, model


@pytest.fixture(scope="session")
def model_server(
    batch_models: tuple[Path, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[artifacts.ServerProcess]:
    root, _ = batch_models
    log = tmp_path_factory.mktemp("batch_server") / "server.log"
    server = artifacts.ServerProcess(
        [f"--model_config_file={root / 'models.config'}"], log, rest=False
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def houses(split: Any) -> pd.DataFrame:
    """The test split with an id column (ids deliberately not in row order)."""
    frame = split.test.reset_index(drop=True)
    frame.insert(0, "house_id", [f"H{(i * 7919) % 100_000:05d}" for i in range(len(frame))])
    return frame


def expected(model: Any, frame: pd.DataFrame) -> Any:
    return model.predict(frame[list(FEATURES)].astype({"total_bedrooms": "float64"}))


def housing_cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "core.cli", *argv]


def run_batch(*argv: str) -> tuple[int, dict | None, str]:
    """``housing batch-score ...`` in this process; (exit code, summary JSON, stderr)."""
    from core.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["batch-score", "--no-progress", *argv])
    return code, json.loads(out.getvalue()) if code == 0 else None, err.getvalue()


def start_batch(*argv: str) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(
        housing_cli("batch-score", "--no-progress", *argv),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
