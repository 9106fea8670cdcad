"""Servables: one loaded model version behind one interface, whatever the framework.

Both kinds expose ``signatures`` (name → SignatureDef, what GetModelMetadata returns and
what requests are validated against) and a blocking ``predict`` that takes and returns
whole columns, so a merged batch costs one model call.
"""

from __future__ import annotations

import logging
import struct
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tensorflow.core.framework import tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2

from core.contract import (
    CATEGORICAL_FEATURE,
    EXAMPLE_INSTANCE,
    FEATURES,
    NUMERIC_FEATURES,
    OUTPUT_NAME,
    SIGNATURE_NAME,
)
from service.model_server.tensors import NUMPY_DTYPES, to_numpy
from training.compiled import (
    CompiledTrees,
    choose_form,
    columns_of,
    feature_columns,
    load_verified_trees,
)
from training.reference import REFERENCE_NAME, read_reference
from training.repository import (
    PLATFORM_SKLEARN,
    PLATFORM_TENSORFLOW,
    load_sklearn_model,
    read_manifest,
)

log = logging.getLogger("housing.model_server")

PREDICT_METHOD = "tensorflow/serving/predict"
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
# One plausible district, used to warm a version up when it ships no warm-up requests:
# the example district, with a missing total_bedrooms and the category as wire bytes.
SAMPLE_ROW: dict[str, object] = {
    **EXAMPLE_INSTANCE,
    "total_bedrooms": float("nan"),
    "ocean_proximity": EXAMPLE_INSTANCE["ocean_proximity"].encode(),
}

Columns = dict[str, np.ndarray]


def contract_signature() -> meta_graph_pb2.SignatureDef:
    """The ▶ ``serving_default`` signature, for servables that have no graph of their own."""

    def info(name: str, dtype: int) -> meta_graph_pb2.TensorInfo:
        return meta_graph_pb2.TensorInfo(
            name=f"{name}:0",
            dtype=dtype,
            tensor_shape=tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=-1)]
            ),
        )

    signature = meta_graph_pb2.SignatureDef(method_name=PREDICT_METHOD)
    for name in NUMERIC_FEATURES:
        signature.inputs[name].CopyFrom(info(name, types_pb2.DT_FLOAT))
    signature.inputs[CATEGORICAL_FEATURE].CopyFrom(info(CATEGORICAL_FEATURE, types_pb2.DT_STRING))
    signature.outputs[OUTPUT_NAME].CopyFrom(info(OUTPUT_NAME, types_pb2.DT_FLOAT))
    return signature


class Servable(ABC):
    """One model version, loaded and ready."""

    platform: str
    form: str = "model"  # how it computes predictions (a metric label); sklearn: 3 forms
    # Whether a call holds the GIL throughout (then a worker thread only adds hand-offs:
    # see service.model_server.batching); TensorFlow releases it while the graph runs.
    holds_gil: bool = False

    def __init__(self, name: str, version: int, path: Path):
        self.name = name
        self.version = version
        self.path = path
        self.signatures: dict[str, meta_graph_pb2.SignatureDef] = {}

    @abstractmethod
    def predict(self, signature_name: str, inputs: Columns) -> Columns:
        """Run the model on whole columns; blocking (called in a worker thread)."""

    def warmup(self) -> int:
        """Run the version's warm-up requests (TF Serving's file) or one sample row."""
        requests = list(read_warmup_requests(self.path / WARMUP_FILE))
        if requests:
            for signature_name, inputs in requests:
                self.predict(signature_name, inputs)
            return len(requests)
        signature = self.signatures.get(SIGNATURE_NAME)
        if signature is None or set(signature.inputs) != set(FEATURES):
            return 0
        sample = {
            name: np.asarray(
                [SAMPLE_ROW[name]],
                dtype=object if name == CATEGORICAL_FEATURE else NUMPY_DTYPES[types_pb2.DT_FLOAT],
            )
            for name in FEATURES
        }
        self.predict(SIGNATURE_NAME, sample)
        return 1


class SklearnServable(Servable):
    """A joblib pipeline (checksum verified before loading) behind the ▶ signature.

    It serves in the fastest form that agrees with the pipeline on the version's reference
    rows (``training.compiled.choose_form``): the compiled trees, else the feature plan with
    the fitted estimator, else the pipeline itself; ``form`` says which, and a log line says
    why a faster form was passed over.
    """

    platform = PLATFORM_SKLEARN
    holds_gil = True

    def __init__(self, name: str, version: int, path: Path):
        super().__init__(name, version, path)
        self.model = load_sklearn_model(path)
        # A pipeline trained with n_jobs=-1 would start a thread pool on every call.
        self.model.set_params(
            **{key: None for key in self.model.get_params() if key.endswith("n_jobs")}
        )
        self.signatures = {SIGNATURE_NAME: contract_signature()}
        choice = choose_form(self.model, check_rows(path), self._compiled_loader())
        self.predictor = choice.predictor
        self.form = choice.form
        if choice.reasons:
            log.warning(
                "model %s version %d serves the %s form: %s",
                name,
                version,
                self.form,
                "; ".join(choice.reasons),
            )
        else:
            log.info("model %s version %d serves the %s form", name, version, self.form)

    def _compiled_loader(self) -> Callable[[], CompiledTrees] | None:
        """Loads the version's compiled trees (checksum first), if its manifest lists them."""
        block = read_manifest(self.path).get("compiled") or {}
        if "path" not in block:
            return None
        return lambda: load_verified_trees(self.path, self.model.steps[-1][1])

    def predict(self, signature_name: str, inputs: Columns) -> Columns:
        raw = self.predictor.predict(feature_columns(inputs))
        return {OUTPUT_NAME: np.asarray(raw, dtype=np.float32).reshape(-1)}


def check_rows(path: Path) -> Columns:
    """Rows to check the faster forms against the pipeline: the version's reference sample."""
    if (path / REFERENCE_NAME).is_file():
        return columns_of(read_reference(path))
    return feature_columns(
        {name: np.asarray([SAMPLE_ROW[name]], dtype=object) for name in FEATURES}
    )


class TensorflowServable(Servable):
    """A SavedModel; its SignatureDefs are read from saved_model.pb, as TF Serving does."""

    platform = PLATFORM_TENSORFLOW
    form = "saved_model"

    def __init__(self, name: str, version: int, path: Path):
        super().__init__(name, version, path)
        import tensorflow as tf

        self.signatures = read_signature_defs(path)
        self.model = tf.saved_model.load(str(path))
        self.functions = {name: self.model.signatures[name] for name in self.signatures}
        self.calls = {
            name: signature_call(self.functions[name], signature)
            for name, signature in self.signatures.items()
        }

    def predict(self, signature_name: str, inputs: Columns) -> Columns:
        return self.calls[signature_name](inputs)


def signature_call(function: Any, signature: meta_graph_pb2.SignatureDef) -> Callable:
    """Columns → columns through one signature function, with as little Python as TF allows.

    Why: calling a loaded signature with keyword tensors costs ~150-200 µs of Python per
    call (binding the structured signature, checking each tensor against its spec) on top
    of running the graph, for inputs the request path has already checked against the same
    signature. The function's flat call (``_call_flat``, TF's own next step) skips that. It
    is private TF API, so it is used only when present, when the graph's inputs are exactly
    the signature's, and when it gives the same outputs as the public call on a sample.
    """
    import tensorflow as tf

    dtypes = {name: tf.dtypes.as_dtype(info.dtype) for name, info in signature.inputs.items()}

    def keyword(inputs: Columns) -> Columns:
        tensors = {name: tf.constant(values, dtype=dtypes[name]) for name, values in inputs.items()}
        outputs = function(**tensors)
        return {name: value.numpy() for name, value in outputs.items()}

    call_flat = getattr(function, "_call_flat", None)
    arguments = len(function.inputs) - len(function.captured_inputs)
    order = [tensor.name.split(":")[0] for tensor in function.inputs[:arguments]]
    if call_flat is None or sorted(order) != sorted(signature.inputs):
        return keyword

    def flat(inputs: Columns) -> Columns:
        tensors = [tf.constant(inputs[name], dtype=dtypes[name]) for name in order]
        outputs = call_flat(tensors, function.captured_inputs)
        return {name: value.numpy() for name, value in outputs.items()}

    sample = {name: sample_column(name, dtypes[name].as_numpy_dtype) for name in order}
    try:
        same = _same_outputs(flat(sample), keyword(sample))
    except Exception:  # noqa: BLE001 (any failure means: use the public call)
        same = False
    return flat if same else keyword


def sample_column(name: str, dtype: Any) -> np.ndarray:
    """One row of an input for a self-check: the sample district's value, else zero."""
    if np.dtype(dtype) == object:
        value = SAMPLE_ROW.get(name, b"")
        return np.asarray([value if isinstance(value, bytes) else str(value).encode()], object)
    value = SAMPLE_ROW.get(name, 0)
    return np.asarray([value if isinstance(value, int | float) else 0], dtype=dtype)


def _same_outputs(first: Columns, second: Columns) -> bool:
    return first.keys() == second.keys() and all(
        np.array_equal(first[name], second[name], equal_nan=True) for name in first
    )


def read_signature_defs(path: Path) -> dict[str, meta_graph_pb2.SignatureDef]:
    """The serving MetaGraph's SignatureDefs (TF Serving hides the ``__saved_model_init_op``)."""
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((path / "saved_model.pb").read_bytes())
    for meta_graph in saved_model.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return {
                key: value
                for key, value in meta_graph.signature_def.items()
                if not key.startswith("__")
            }
    raise ValueError(f"{path}/saved_model.pb has no MetaGraph tagged 'serve'")


def read_warmup_requests(path: Path) -> Iterator[tuple[str, Any]]:
    """(signature, columns) of each PredictRequest in a TF Serving warm-up TFRecord file."""
    if not path.is_file():
        return
    data = path.read_bytes()
    offset = 0
    while offset + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        start = offset + 12
        record = data[start : start + length]
        offset = start + length + 4
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record)
        if log.WhichOneof("log_type") != "predict_log":
            continue
        request = log.predict_log.request
        yield (
            request.model_spec.signature_name or SIGNATURE_NAME,
            {name: to_numpy(name, tensor) for name, tensor in request.inputs.items()},
        )


def load_servable(name: str, version: int, path: Path, platform: str) -> Servable:
    if platform == PLATFORM_SKLEARN:
        return SklearnServable(name, version, path)
    if platform == PLATFORM_TENSORFLOW:
        return TensorflowServable(name, version, path)
    raise ValueError(
        f"model {name}: model_platform {platform!r} is not supported "
        f"(use {PLATFORM_TENSORFLOW!r} or {PLATFORM_SKLEARN!r})"
    )
