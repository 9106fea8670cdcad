"""TF Serving ``PredictRequest``s built the way many outside clients build them.

Tensors go in the typed fields (``float_val``/``string_val``), not ``tensor_content``, so
tests and benchmarks exercise the server's decoding of what the book's clients send.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2

from core.contract import CATEGORICAL_FEATURE, FEATURES, NUMERIC_FEATURES


def tensor(values: np.ndarray) -> tensor_pb2.TensorProto:
    """A 1-D tensor in the typed fields (not tensor_content), as many clients send."""
    proto = tensor_pb2.TensorProto(
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(values))]
        )
    )
    if values.dtype == object:
        proto.dtype = types_pb2.DT_STRING
        proto.string_val.extend(str(v).encode() for v in values)
    else:
        proto.dtype = types_pb2.DT_FLOAT
        proto.float_val.extend(values.astype(np.float32).tolist())
    return proto


def predict_request(
    frame: pd.DataFrame,
    model: str,
    version: int | None = None,
    label: str | None = None,
    signature: str = "serving_default",
) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    for name in FEATURES:
        values = frame[name].to_numpy(object if name == CATEGORICAL_FEATURE else np.float32)
        request.inputs[name].CopyFrom(tensor(values))
    return request


def wire_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows as the server sees them: numeric features rounded to float32."""
    out = frame[list(FEATURES)].copy()
    for name in NUMERIC_FEATURES:
        out[name] = out[name].astype(np.float32).astype(np.float64)
    return out
