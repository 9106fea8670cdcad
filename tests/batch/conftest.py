"""A real model server process over a small real sklearn model, and input files."""

from __future__ import annotations

import contextlib
import io
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from core.contract import FEATURES, SKLEARN_MODEL
from core.process import ManagedProcess, housing_argv
from load_tests import models as test_models
from load_tests import stack
from tests.commands import flags
from training.repository import ModelRepository


@pytest.fixture(scope="session")
def batch_models(tmp_path_factory: pytest.TempPathFactory, split: Any) -> tuple[Path, Any]:
    """models/ with housing_sklearn v1 (labelled stable) and a newer v2 (a candidate, not
    promoted), both served: the book's preprocessing + LinearRegression on 2,000-row samples.
    Returns the folder and v1's model (what the default run must use)."""
    root = tmp_path_factory.mktemp("batch_models")
    repo = ModelRepository(root)
    stable = test_models.small_sklearn(split.train, trees=0)
    version = test_models.publish_sklearn(repo, stable)
    test_models.publish_sklearn(repo, newer_model(split))
    config = repo.read_config()
    entry = repo.find_config(config, SKLEARN_MODEL)
    entry.model_version_policy.specific.versions[:] = [version, version + 1]
    repo.write_config(config)
    repo.set_label(SKLEARN_MODEL, "stable", version)
    return root, stable


def newer_model(split: Any) -> Any:
    """Version 2: fitted on another sample, so its predictions differ from version 1's."""
    return test_models.small_sklearn(split.train, trees=0, seed=7)


@pytest.fixture(scope="session")
def model_server(
    batch_models: tuple[Path, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ManagedProcess]:
    root, _ = batch_models
    log = tmp_path_factory.mktemp("batch_server") / "server.log"
    with stack.model_server(root / "models.config", log, rest_port=0) as server:
        yield stack.serving(server)


@pytest.fixture(scope="session")
def houses(split: Any) -> pd.DataFrame:
    """The test split with an id column (ids deliberately not in row order)."""
    frame = split.test.reset_index(drop=True)
    frame.insert(0, "house_id", [f"H{(i * 7919) % 100_000:05d}" for i in range(len(frame))])
    return frame


def resampled(houses: pd.DataFrame, rows: int, path: Path, seed: int) -> tuple[Path, pd.DataFrame]:
    """``rows`` rows drawn from ``houses`` (with replacement), fresh unique ids, as parquet."""
    frame = houses.sample(rows, replace=True, random_state=seed).reset_index(drop=True)
    frame["house_id"] = [f"B{i:06d}" for i in range(len(frame))]
    frame.to_parquet(path, index=False)
    return path, frame


def expected(model: Any, frame: pd.DataFrame) -> Any:
    return model.predict(frame[list(FEATURES)].astype({"total_bedrooms": "float64"}))


def run_batch(*argv: str) -> tuple[int, dict | None, str]:
    """``housing batch-score ...`` in this process; (exit code, summary JSON, stderr)."""
    from core.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["batch-score", "--no-progress", *argv])
    return code, json.loads(out.getvalue()) if code == 0 else None, err.getvalue()


def start_batch(log_dir: Path, *argv: str) -> ManagedProcess:
    """``housing batch-score ...`` as its own process (to be killed), output in ``log_dir``."""
    log = log_dir / f"batch-{uuid.uuid4().hex[:6]}.log"
    argv = housing_argv("batch-score", "--no-progress", *argv)
    return ManagedProcess("batch-score", argv, log, env={"TF_CPP_MIN_LOG_LEVEL": "3"}).start()


def batch_args(
    source: Path, output: Path, model: str = SKLEARN_MODEL, **options: object
) -> list[str]:
    """``--input SOURCE --output OUTPUT --model MODEL``, then ``options`` as :func:`flags`."""
    return flags(input=source, output=output, model=model, **options)


def checkpoint(output: Path) -> dict[str, Any]:
    """The run's checkpoint (``completed`` chunks, ``served`` version); empty before its first."""
    path = Path(str(output) + ".parts") / "checkpoint.json"
    return json.loads(path.read_text()) if path.exists() else {}


def wait_for_chunks(run: ManagedProcess, output: Path, chunks: int, timeout: float = 120) -> None:
    """Until the running ``run`` has checkpointed ``chunks`` chunks of ``output``."""
    deadline = time.monotonic() + timeout
    while len(checkpoint(output).get("completed", [])) < chunks:
        assert run.alive() and time.monotonic() < deadline, run.log_tail()
        time.sleep(0.05)
