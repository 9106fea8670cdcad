"""One TensorFlow everywhere a SavedModel is written or loaded, and a SavedModel that the
serving runtime's op registry accepts (deploy/tfserving/runtime.py, deploy/tfserving/oplist.py).
"""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest

from core.paths import REPO_ROOT
from deploy.tfserving import oplist
from deploy.tfserving.runtime import TENSORFLOW_MINOR, TENSORFLOW_VERSION, TF_SERVING_IMAGE


def requirement(specs: list[str], name: str) -> str:
    (found,) = [s for s in specs if re.match(rf"{re.escape(name)}(\[[^]]*\])?\s*[=<>~!]", s)]
    return found


def test_every_pin_is_the_one_version() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    pinned = f"=={TENSORFLOW_MINOR}.*"
    assert requirement(project["dependencies"], "tensorflow").endswith(pinned)
    assert requirement(project["dependencies"], "tensorflow-serving-api").endswith(pinned)
    assert requirement(project["optional-dependencies"]["gpu"], "tensorflow").endswith(pinned)
    assert TF_SERVING_IMAGE.endswith(f":{TENSORFLOW_VERSION}")


def test_the_exporter_is_the_pinned_tensorflow() -> None:
    import tensorflow as tf

    assert tf.__version__.startswith(f"{TENSORFLOW_MINOR}.")


def test_the_recorded_registry_is_this_versions() -> None:
    """ops-<minor>.json must be re-recorded when the pin moves (the file name follows it)."""
    recorded = oplist.load_recorded()
    live = {name: set(attrs) for name, attrs in oplist.registry_ops().items()}
    assert recorded == live


def test_the_exported_savedmodel_fits_the_serving_runtime(published: Any) -> None:
    used, functions = oplist.saved_model_ops(published.path)
    assert {"MatMul", "StatefulPartitionedCall"} <= set(used)  # a real graph was read
    assert functions and "StatefulPartitionedCall" not in functions
    assert oplist.check(published.path) == []


def test_the_check_names_unknown_ops_and_attributes(published: Any, tmp_path: Path) -> None:
    """What a newer exporter could write: an op the runtime lacks, a new attribute."""
    from tensorflow.core.protobuf import saved_model_pb2

    copy = tmp_path / "saved"
    shutil.copytree(published.path, copy)
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((copy / "saved_model.pb").read_bytes())
    nodes = [n for f in saved.meta_graphs[0].graph_def.library.function for n in f.node_def]
    matmul = next(n for n in nodes if n.op == "MatMul")
    matmul.attr["grad_precision"].b = True
    nodes[0].op = "HousingOpFromTheFuture"
    (copy / "saved_model.pb").write_bytes(saved.SerializeToString())

    problems = oplist.check(copy)

    assert "op HousingOpFromTheFuture is not registered" in problems
    assert "op MatMul: attribute grad_precision is unknown" in problems
    assert oplist.main(["check", str(copy)]) == 1


def test_recording_refuses_another_tensorflow(monkeypatch: pytest.MonkeyPatch) -> None:
    import tensorflow as tf

    monkeypatch.setattr(tf, "__version__", "2.19.1")
    with pytest.raises(SystemExit, match="2.19.1 is installed"):
        oplist.record(Path("/nonexistent/ops.json"))
