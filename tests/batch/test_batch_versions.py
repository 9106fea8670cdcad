"""Which version scores a batch: ``stable`` by default, pinned for the run, kept on resume.

Against real model servers with two versions of housing_sklearn, ``stable`` pointing at the
older one (v1) and a newer, unpromoted v2 (what the server's default policy would pick).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from core.contract import EXAMPLE_INSTANCE, FEATURES, SKLEARN_MODEL
from core.process import ManagedProcess
from core.tfserving import TFServingClient
from load_tests import stack
from tests.batch.conftest import (
    batch_args,
    checkpoint,
    expected,
    newer_model,
    resampled,
    run_batch,
    start_batch,
    wait_for_chunks,
)
from training.repository import ModelRepository


def scored_versions(path: Path) -> set[int]:
    return set(pd.read_parquet(path)["model_version"].dropna().astype(int))


def test_default_run_uses_the_stable_label_not_the_newest_version(
    model_server: Any, batch_models: Any, houses: pd.DataFrame, tmp_path: Path, capsys: Any
) -> None:
    _, stable_model = batch_models
    source, output = tmp_path / "h.parquet", tmp_path / "o.parquet"
    houses.head(400).to_parquet(source)
    code, summary, err = run_batch(
        *batch_args(source, output, target=model_server.address("grpc"), batch_size=50)
    )
    assert code == 0, err
    assert (summary["model"], summary["version"], summary["label"]) == (SKLEARN_MODEL, 1, "stable")
    assert "version 1 (label 'stable')" in err
    scored = pd.read_parquet(output)
    assert scored["model_version"].tolist() == [1] * 400
    np.testing.assert_allclose(
        scored["predicted_median_house_value"], expected(stable_model, houses.head(400)),
        rtol=1e-4, atol=1.0,
    )  # fmt: skip


def test_an_explicit_version_is_used_and_recorded(
    model_server: Any, split: Any, houses: pd.DataFrame, tmp_path: Path
) -> None:
    source, output = tmp_path / "h.csv", tmp_path / "o.csv"
    houses.head(120).to_csv(source, index=False)
    code, summary, err = run_batch(
        *batch_args(source, output, target=model_server.address("grpc"), version=2, batch_size=50)
    )
    assert code == 0, err
    assert (summary["version"], summary["requested_version"], summary["label"]) == (2, 2, None)
    scored = pd.read_csv(output)
    assert scored["model_version"].tolist() == [2] * 120
    np.testing.assert_allclose(
        scored["predicted_median_house_value"], expected(newer_model(split), houses.head(120)),
        rtol=1e-4, atol=1.0,
    )  # fmt: skip


# ---- a server whose labels the tests move -----------------------------------------------------


@pytest.fixture(scope="module")
def movable(batch_models: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Its own copy of the models and a server that re-reads models.config every second."""
    root = tmp_path_factory.mktemp("movable") / "models"
    shutil.copytree(batch_models[0], root)
    log = root.parent / "server.log"
    extra = ["--model_config_file_poll_wait_seconds", "1"]
    with stack.model_server(root / "models.config", log, rest_port=0, extra=extra) as server:
        yield ModelRepository(root), stack.serving(server)


def served_by_stable(server: ManagedProcess) -> int | None:
    async def ask() -> int | None:
        async with TFServingClient(server.address("grpc")) as client:
            columns = {name: [EXAMPLE_INSTANCE[name]] for name in FEATURES}
            answer = await client.predict(SKLEARN_MODEL, columns, label="stable")
            return answer.version

    return asyncio.run(ask())


def move_stable(repo: ModelRepository, server: ManagedProcess, version: int) -> None:
    """Point ``stable`` at ``version`` and wait until the running server answers with it."""
    repo.set_label(SKLEARN_MODEL, "stable", version)
    deadline = time.monotonic() + 60
    while served_by_stable(server) != version:
        assert time.monotonic() < deadline, "the server never applied the label"
        time.sleep(0.2)


@pytest.fixture
def big(houses: pd.DataFrame, tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    return resampled(houses, 20_000, tmp_path / "big.parquet", seed=3)


@dataclass
class Run:
    process: ManagedProcess
    argv: list[str]
    output: Path


def start_on_stable_v1(movable: Any, source: Path, folder: Path, concurrency: int) -> Run:
    """With ``stable`` on v1, a batch-score run of ``source`` (own process) 5 chunks in."""
    repo, server = movable
    move_stable(repo, server, 1)
    output = folder / "o.parquet"
    argv = batch_args(
        source, output, target=server.address("grpc"), batch_size=50, concurrency=concurrency
    )
    process = start_batch(folder, *argv)
    try:
        wait_for_chunks(process, output, 5)
    except BaseException:
        process.kill()
        raise
    return Run(process, argv, output)


def test_a_label_moved_mid_run_does_not_change_the_version(
    movable: Any, batch_models: Any, big: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    source, frame = big
    run = start_on_stable_v1(movable, source, tmp_path, concurrency=2)
    try:
        move_stable(*movable, 2)
        assert run.process.alive(), "the run ended before the label moved: give it more rows"
        assert run.process.wait(300) == 0, run.process.log_tail()
    finally:
        run.process.stop()
    scored = pd.read_parquet(run.output)
    assert len(scored) == 20_000 and scored_versions(run.output) == {1}
    np.testing.assert_allclose(
        scored["predicted_median_house_value"], expected(batch_models[1], frame),
        rtol=1e-4, atol=1.0,
    )  # fmt: skip
    summary = json.loads(Path(str(run.output) + ".summary.json").read_text())
    assert (summary["version"], summary["label"]) == (1, "stable")


def test_a_resumed_run_keeps_its_checkpoints_version(
    movable: Any, batch_models: Any, big: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    source, frame = big
    run = start_on_stable_v1(movable, source, tmp_path, concurrency=1)
    run.process.kill()
    assert checkpoint(run.output)["served"] == {"model": SKLEARN_MODEL, "version": 1}
    move_stable(*movable, 2)  # a promotion between the two runs

    code, summary, err = run_batch(*run.argv, "--resume")
    assert code == 0, err
    assert "resuming with housing_sklearn version 1" in err
    assert summary["version"] == 1 and summary["resumed_chunks"] >= 5
    assert scored_versions(run.output) == {1}
    scored = pd.read_parquet(run.output)
    np.testing.assert_allclose(
        scored["predicted_median_house_value"], expected(batch_models[1], frame),
        rtol=1e-4, atol=1.0,
    )  # fmt: skip


def test_the_client_reads_status_and_metadata_from_the_real_server(model_server: Any) -> None:
    async def ask() -> tuple[Any, Any]:
        async with TFServingClient(model_server.address("grpc")) as client:
            states = await client.model_status(SKLEARN_MODEL, request_id="meta-1")
            signature = await client.model_metadata(SKLEARN_MODEL, label="stable")
            return states, signature

    states, signature = asyncio.run(ask())
    assert sorted((s.version, s.state) for s in states) == [(1, "AVAILABLE"), (2, "AVAILABLE")]
    assert (signature.model, signature.version) == (SKLEARN_MODEL, 1)
    assert set(signature.inputs) == set(FEATURES)
    assert signature.inputs["ocean_proximity"].dtype == "DT_STRING"
    assert signature.inputs["median_income"].dtype == "DT_FLOAT"
    assert signature.outputs["median_house_value"].dtype == "DT_FLOAT"
