"""Concurrent ``models.config`` writers (a retrain and a promotion) lose no update."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from training.repository import PLATFORM_SKLEARN, ModelRepository, RepositoryError

MODEL = "housing_sklearn"
ROUNDS = 40


def publish_dummy(repo: ModelRepository, name: str = MODEL) -> int:
    def write(staging: Path) -> dict:
        (staging / "model.joblib").write_bytes(b"not a real model")
        return {"artifact": {"path": "model.joblib"}}

    version, _ = repo.publish(name, PLATFORM_SKLEARN, write)
    return version


def label_many(root: str, prefix: str, start: multiprocessing.synchronize.Event) -> None:
    """One writer: many read-modify-writes, each adding a label of its own."""
    repo = ModelRepository(root)
    start.wait(30)
    for i in range(ROUNDS):
        repo.set_label(MODEL, f"{prefix}{i}", 1)


def test_two_processes_racing_on_models_config_lose_no_label(tmp_path):
    repo = ModelRepository(tmp_path / "models")
    publish_dummy(repo)
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    writers = [
        context.Process(target=label_many, args=(str(repo.root), prefix, start))
        for prefix in ("retrain", "promote")
    ]
    for writer in writers:
        writer.start()
    start.set()
    for writer in writers:
        writer.join(120)
    assert [w.exitcode for w in writers] == [0, 0]
    labels = repo.labels(MODEL)
    expected = {f"{p}{i}" for p in ("retrain", "promote") for i in range(ROUNDS)}
    assert set(labels) == expected


def test_lock_is_reentrant_within_a_thread(tmp_path):
    repo = ModelRepository(tmp_path / "models")
    publish_dummy(repo)
    with repo.config_lock(), repo.update_config() as config:
        repo.find_config(config, MODEL).version_labels["stable"] = 1
    assert repo.labels(MODEL) == {"stable": 1}


@pytest.mark.parametrize("name", ["..", "../escape", "/abs", ".hidden", "a/b", "", "x" * 200])
def test_unsafe_model_names_never_become_paths(tmp_path, name):
    repo = ModelRepository(tmp_path / "models")
    with pytest.raises(RepositoryError, match="invalid model name"):
        repo.model_dir(name)
    with pytest.raises(RepositoryError, match="invalid model name"):
        repo.register(name, PLATFORM_SKLEARN)
