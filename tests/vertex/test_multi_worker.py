"""``vertex train --replica-count 2`` as it runs on Vertex: two real trainer processes with the
``TF_CONFIG`` Vertex sets (a chief and a worker), training under MultiWorkerMirroredStrategy
over loopback; the chief alone reports and exports, and its model is as good as one
machine's with the same settings."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from core.process import ManagedProcess, free_port
from deploy.vertex.trainer import cluster_role

SETTINGS = ["--epochs=4", "--sample=2000", "--n_hidden=2", "--n_neurons=30"]
TOLERANCE = 0.15  # relative test-RMSE difference allowed (different batch order and LR)


def trainer(tmp_path: Path, name: str, tf_config: dict[str, Any] | None) -> ManagedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "AIP_MODEL_DIR")}
    env |= {
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "CLOUD_ML_HP_METRIC_FILE": str(tmp_path / f"{name}.metrics"),
    }
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    argv = [sys.executable, "-m", "deploy.vertex.trainer", *SETTINGS]
    argv.append(f"--model-dir={tmp_path / name / 'model'}")
    log = tmp_path / f"{name}.log"
    return ManagedProcess(name, argv, log, env=env, inherit_env=False).start()


def finish(process: ManagedProcess) -> dict[str, Any]:
    """Wait for the trainer; the summary JSON it prints last (its log also holds stderr)."""
    try:
        code = process.wait(timeout=900)
    finally:
        process.stop()
    assert code == 0, process.log_tail()
    summaries = [line for line in process.log_text().splitlines() if line.startswith("{")]
    return json.loads(summaries[-1])


def test_tf_config_roles() -> None:
    def role(cluster: dict[str, Any], kind: str, index: int) -> tuple[bool, bool]:
        task = {"type": kind, "index": index}
        return cluster_role({"TF_CONFIG": json.dumps({"cluster": cluster, "task": task})})

    two = {"chief": ["a:1"], "worker": ["b:1"]}
    assert role(two, "chief", 0) == (True, True)
    assert role(two, "worker", 0) == (True, False)
    assert role({"worker": ["a:1", "b:1"]}, "worker", 0) == (True, True)
    assert role({"chief": ["a:1"]}, "chief", 0) == (False, True)
    assert cluster_role({}) == (False, True)


@pytest.mark.slow
def test_two_workers_train_one_model_as_good_as_one_machine(tmp_path: Path) -> None:
    cluster = {"chief": [f"localhost:{free_port()}"], "worker": [f"localhost:{free_port()}"]}
    chief = trainer(tmp_path, "chief", {"cluster": cluster, "task": {"type": "chief", "index": 0}})
    worker = trainer(
        tmp_path, "worker", {"cluster": cluster, "task": {"type": "worker", "index": 0}}
    )
    chief_out, worker_out = finish(chief), finish(worker)

    assert chief_out["role"] == "chief" and chief_out["distributed"] is True
    assert worker_out["role"] == "worker"
    # One model, kept in step by all-reduce: both processes end with the same weights.
    assert worker_out["val_rmse"] == chief_out["val_rmse"]
    assert (tmp_path / "chief" / "model" / "saved_model.pb").is_file()
    assert not (tmp_path / "worker").exists(), "only the chief exports"
    assert (tmp_path / "chief.metrics").is_file() and not (tmp_path / "worker.metrics").exists()
    distributed = json.loads((tmp_path / "chief" / "model" / "manifest.json").read_text())
    assert distributed["hyperparameters"]["strategy"] == "multi_worker"

    single_out = finish(trainer(tmp_path, "single", None))
    assert single_out["distributed"] is False
    single = json.loads((tmp_path / "single" / "model" / "manifest.json").read_text())
    ratio = distributed["metrics"]["test_rmse"] / single["metrics"]["test_rmse"]
    assert abs(ratio - 1) <= TOLERANCE, (distributed["metrics"], single["metrics"])
