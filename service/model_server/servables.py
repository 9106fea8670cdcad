"""Servables: one loaded model version behind one interface, whatever the framework.

Both kinds expose ``signatures`` (name → SignatureDef, what GetModelMetadata returns and
what requests are validated against) and a blocking ``predict`` that takes and returns
whole columns, so a merged batch costs one model call.
"""

from __future__ import annotations

import struct
import warnings
from abc import ABC, abstractmethod
from pathlib import Path

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
from training.repository import PLATFORM_SKLEARN, PLATFORM_TENSORFLOW, load_sklearn_model

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
    """A joblib pipeline (checksum verified before loading) behind the ▶ signature."""

    platform = PLATFORM_SKLEARN

    def __init__(self, name: str, version: int, path: Path):
        super().__init__(name, version, path)
        self.model = load_sklearn_model(path)
        # A pipeline trained with n_jobs=-1 would start a thread pool on every call.
        self.model.set_params(
            **{key: None for key in self.model.get_params() if key.endswith("n_jobs")}
        )
        self.signatures = {SIGNATURE_NAME: contract_signature()}
        self.plan = self._checked_plan()

    def predict(self, signature_name: str, inputs: Columns) -> Columns:
        columns = feature_columns(inputs)
        if self.plan is not None:
            raw = self.plan.predict(columns)
        else:
            raw = self.model.predict(feature_frame(columns))
        return {OUTPUT_NAME: np.asarray(raw, dtype=np.float32).reshape(-1)}

    def _checked_plan(self) -> PipelinePlan | None:
        """The fast plan, only if it predicts bit-identically to the pipeline on real rows."""
        rows = check_rows(self.path)
        plan = PipelinePlan.of(self.model, rows)
        if plan is None:
            return None
        expected = np.asarray(self.model.predict(feature_frame(rows)))
        if not np.array_equal(np.asarray(plan.predict(rows)), expected, equal_nan=True):
            return None
        return plan


def feature_columns(inputs: Columns) -> Columns:
    """The 9 inputs as the columns the pipeline was fitted on: float64 numbers, str category.

    The category is an object array explicitly: pandas 3 would infer its slower Arrow strings.
    """
    columns: Columns = {}
    for name in FEATURES:
        values = inputs[name]
        if name == CATEGORICAL_FEATURE:
            array = np.empty(len(values), dtype=object)
            array[:] = [v.decode() if isinstance(v, bytes) else v for v in values]
            columns[name] = array
        else:
            columns[name] = np.asarray(values, dtype=np.float64)
    return columns


def block_frame(columns: Columns, names: list[str]):
    """A DataFrame of some feature columns, keeping their dtypes.

    Why explicit: pandas 3 turns object arrays of str into its slower Arrow strings.
    """
    import pandas as pd

    if CATEGORICAL_FEATURE not in names:
        return pd.DataFrame(np.column_stack([columns[name] for name in names]), columns=names)
    return pd.DataFrame(
        {name: pd.Series(columns[name], dtype=columns[name].dtype) for name in names},
        columns=names,
    )


def feature_frame(columns: Columns):
    return block_frame(columns, list(FEATURES))


def check_rows(path: Path) -> Columns:
    """Rows to compare the fast plan against the pipeline: the version's reference sample."""
    reference = path / "reference.parquet"
    if reference.is_file():
        import pandas as pd

        frame = pd.read_parquet(reference, columns=list(FEATURES))
        inputs = {name: frame[name].to_numpy() for name in FEATURES}
        inputs[CATEGORICAL_FEATURE] = frame[CATEGORICAL_FEATURE].astype(object).to_numpy()
    else:
        inputs = {name: np.asarray([SAMPLE_ROW[name]], dtype=object) for name in FEATURES}
    return feature_columns(inputs)


# sklearn warns on every call when a transformer fitted on a DataFrame gets an array; the
# plan does that on purpose, only for blocks it verified give identical output.
FEATURE_NAMES_WARNING = "X does not have valid feature names"


class PipelinePlan:
    """A fitted ``Pipeline(ColumnTransformer, ..., estimator)`` run without the
    ColumnTransformer's per-call bookkeeping.

    Why: with a handful of rows the ColumnTransformer's own work (validating the whole
    frame, selecting each block with pandas indexing, output wrapping) and the transformers'
    DataFrame checks cost more than the transforms. The plan calls the same fitted
    transformers on the same columns, as a plain array where that gives identical output
    on the reference rows (else as a DataFrame), and stacks their outputs as
    ``ColumnTransformer.transform`` does; ``SklearnServable`` then checks the whole plan
    against the pipeline on the version's reference rows before using it.
    """

    def __init__(self, blocks: list[tuple[object, list[str], bool]], steps: list, final):
        self.blocks = blocks
        self.steps = steps
        self.final = final

    @classmethod
    def of(cls, model, rows: Columns) -> PipelinePlan | None:
        """A plan for the pipelines it handles exactly; None for anything else."""
        from sklearn.compose import ColumnTransformer
        from sklearn.pipeline import Pipeline

        if not isinstance(model, Pipeline) or len(model.steps) < 2:
            return None
        first = model.steps[0][1]
        if (
            not isinstance(first, ColumnTransformer)
            or not hasattr(first, "transformers_")
            or first.sparse_output_
            or first.transformer_weights
            or getattr(first, "_sklearn_output_config", {}).get("transform")
            not in (None, "default")
        ):
            return None
        blocks: list[tuple[object, list[str], bool]] = []
        for _, transformer, selection in first.transformers_:
            if transformer == "drop":
                continue
            names = list(selection) if isinstance(selection, list | tuple) else None
            if names is None or not all(isinstance(n, str) and n in FEATURES for n in names):
                return None
            if names:
                blocks.append((transformer, names, takes_array(transformer, names, rows)))
        steps = [step for _, step in model.steps[1:-1] if step not in (None, "passthrough")]
        return cls(blocks, steps, model.steps[-1][1])

    def predict(self, columns: Columns) -> np.ndarray:
        parts = [transform(t, names, columns, as_array) for t, names, as_array in self.blocks]
        features = np.hstack(parts)
        for step in self.steps:
            features = step.transform(features)
        return self.final.predict(features)


def transform(transformer, names: list[str], columns: Columns, as_array: bool) -> np.ndarray:
    from scipy import sparse

    if as_array:
        block = np.column_stack([columns[name] for name in names])
    else:
        block = block_frame(columns, names)
    if transformer == "passthrough":
        return np.asarray(block)
    part = transformer.transform(block)
    return part.toarray() if sparse.issparse(part) else part


def takes_array(transformer, names: list[str], rows: Columns) -> bool:
    """Whether the block gives identical output from a plain array (no DataFrame).

    Only for blocks of one dtype (all numbers, or the category alone): a mixed block would
    become an object array.
    """
    if CATEGORICAL_FEATURE in names and len(names) > 1:
        return False
    warnings.filterwarnings("ignore", message=FEATURE_NAMES_WARNING, category=UserWarning)
    try:
        via_array = transform(transformer, names, rows, as_array=True)
        via_frame = transform(transformer, names, rows, as_array=False)
        return via_array.dtype == via_frame.dtype and bool(
            np.array_equal(via_array, via_frame, equal_nan=True)
        )
    except Exception:  # e.g. the transformer selects columns by name: it needs the DataFrame
        return False


class TensorflowServable(Servable):
    """A SavedModel; its SignatureDefs are read from saved_model.pb, as TF Serving does."""

    platform = PLATFORM_TENSORFLOW

    def __init__(self, name: str, version: int, path: Path):
        super().__init__(name, version, path)
        import tensorflow as tf

        self.signatures = read_signature_defs(path)
        self.model = tf.saved_model.load(str(path))
        self.functions = {name: self.model.signatures[name] for name in self.signatures}

    def predict(self, signature_name: str, inputs: Columns) -> Columns:
        import tensorflow as tf

        signature = self.signatures[signature_name]
        tensors = {
            name: tf.constant(values, dtype=tf.dtypes.as_dtype(signature.inputs[name].dtype))
            for name, values in inputs.items()
        }
        outputs = self.functions[signature_name](**tensors)
        return {name: value.numpy() for name, value in outputs.items()}


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


def read_warmup_requests(path: Path):
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
