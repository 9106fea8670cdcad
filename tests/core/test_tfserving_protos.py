"""The generated TF Serving protocol modules: present, current, identical to TensorFlow's,
TF-free, and a clear error where they were never generated."""

from __future__ import annotations

import ast
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import core.tfserving_protos
from core.paths import REPO_ROOT

PACKAGE_DIR = Path(core.tfserving_protos.__file__).parent
PROTO_DIR = PACKAGE_DIR / "third_party"
PROTOS = sorted(p.relative_to(PROTO_DIR) for p in PROTO_DIR.glob("**/*.proto"))
TF_ROOTS = (
    "tensorflow_serving.apis.prediction_service_pb2",
    "tensorflow_serving.apis.model_service_pb2",
    "tensorflow_serving.config.model_server_config_pb2",
)


def python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter from the repository root."""
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )


def serialized_file(module_file: str) -> bytes:
    """The bytes a generated ``_pb2`` module adds to the descriptor pool."""
    for node in ast.walk(ast.parse(Path(module_file).read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "AddSerializedFile":
            value = node.args[0]
            assert isinstance(value, ast.Constant) and isinstance(value.value, bytes)
            return value.value
    raise AssertionError(f"{module_file} registers no file")


def regenerate(*flags: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    # protoc runs in its own process: it must not share one with TensorFlow's protobuf.
    return subprocess.run(
        [sys.executable, "-m", "core.tfserving_protos.regenerate", *flags],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_installed_modules_match_the_protos() -> None:
    """The install generated them (setup.py) and they match a fresh generation."""
    result = regenerate("--check")
    assert result.returncode == 0, result.stderr


IMPORT_PREDICT = "from core.tfserving_protos.tensorflow_serving.apis import predict_pb2"


def test_a_checkout_never_installed_says_how_to_generate_them(tmp_path: Path) -> None:
    """A bare checkout lacks the modules: importing one names the fix, --check fails, and
    regenerating (what the install runs) makes them importable and current."""
    bare = tmp_path / "core" / "tfserving_protos"
    bare.mkdir(parents=True)
    shutil.copyfile(REPO_ROOT / "core" / "__init__.py", tmp_path / "core" / "__init__.py")
    for name in ("__init__.py", "regenerate.py"):
        shutil.copyfile(PACKAGE_DIR / name, bare / name)
    shutil.copytree(PROTO_DIR, bare / "third_party")
    run = [sys.executable, "-c", IMPORT_PREDICT]

    missing = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1
    last = missing.stderr.strip().splitlines()[-1]
    assert "core.tfserving_protos.tensorflow_serving is generated" in last, missing.stderr
    assert "make install" in last and "python -m core.tfserving_protos.regenerate" in last

    stale = regenerate("--check", cwd=tmp_path)
    assert stale.returncode == 1
    assert "stale: tensorflow_serving/apis/predict_pb2.py" in stale.stderr.splitlines()

    assert regenerate(cwd=tmp_path).returncode == 0
    assert regenerate("--check", cwd=tmp_path).returncode == 0
    found = subprocess.run(
        [sys.executable, "-c", f"{IMPORT_PREDICT}; print(predict_pb2.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()) == bare / "tensorflow_serving" / "apis" / "predict_pb2.py"


def test_the_protos_cover_the_services_and_the_config() -> None:
    names = {str(p) for p in PROTOS}
    for needed in (
        "tensorflow_serving/apis/prediction_service.proto",
        "tensorflow_serving/apis/model_service.proto",
        "tensorflow_serving/config/model_server_config.proto",
        "tensorflow/core/framework/tensor.proto",
    ):
        assert needed in names


def test_every_file_is_byte_identical_to_tensorflows() -> None:
    """Identical bytes are what lets both sets share protobuf's default descriptor pool."""
    for module in TF_ROOTS:
        importlib.import_module(module)
    theirs = {
        module.DESCRIPTOR.name: module.__file__
        for name, module in list(sys.modules.items())
        if name.endswith("_pb2")
        and not name.startswith("core.")
        and hasattr(getattr(module, "DESCRIPTOR", None), "serialized_pb")
    }
    assert len(PROTOS) > 30
    for proto in PROTOS:
        ours = PACKAGE_DIR / proto.with_name(proto.stem + "_pb2.py")
        assert str(proto) in theirs, f"TensorFlow registers no {proto}"
        assert serialized_file(str(ours)) == serialized_file(theirs[str(proto)]), proto


BOTH_ORDERS = """
import sys
def ours():
    from core.tfserving_protos.tensorflow_serving.apis import predict_pb2
    from core.tfserving_protos.tensorflow_serving.apis import prediction_service_pb2_grpc
    from core.tfserving_protos.tensorflow_serving.config import model_server_config_pb2
    return predict_pb2
def tensorflows():
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    from tensorflow_serving.config import model_server_config_pb2
    from tensorflow.core.protobuf import meta_graph_pb2
    return predict_pb2
first, second = (ours, tensorflows) if sys.argv[-1] == "ours" else (tensorflows, ours)
a = first().PredictRequest(model_spec={"name": "m", "version_label": "stable"})
b = second().PredictRequest()
b.CopyFrom(a)
b.inputs["x"].string_val.append(b"y")
back = type(a).FromString(b.SerializeToString())
print(type(a) is type(b), back.model_spec.version_label, back.inputs["x"].string_val[0].decode())
"""


@pytest.mark.parametrize("first", ["ours", "tensorflows"])
def test_one_process_imports_both_in_either_order(first: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", BOTH_ORDERS, first],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["True", "stable", "y"]


def test_importing_them_does_not_import_tensorflow() -> None:
    result = python(
        "import sys, core.tfserving\n"
        "from core.tfserving_protos.tensorflow_serving.config import model_server_config_pb2\n"
        "roots = ('tensorflow', 'tensorflow_serving')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in roots))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
