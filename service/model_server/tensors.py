"""TensorProto ↔ numpy without TensorFlow on the request path (``tf.make_ndarray`` is slow).

Handles both encodings clients use: packed ``tensor_content`` (what ``tf.make_tensor_proto``
writes for arrays) and the typed ``*_val`` fields, including TF's one-value broadcast.
Responses use the typed fields, as TF Serving does.
"""

from __future__ import annotations

import math

import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from service.model_server.errors import invalid

NUMPY_DTYPES: dict[int, np.dtype] = {
    types_pb2.DT_FLOAT: np.dtype(np.float32),
    types_pb2.DT_DOUBLE: np.dtype(np.float64),
    types_pb2.DT_INT32: np.dtype(np.int32),
    types_pb2.DT_INT64: np.dtype(np.int64),
    types_pb2.DT_INT16: np.dtype(np.int16),
    types_pb2.DT_INT8: np.dtype(np.int8),
    types_pb2.DT_UINT8: np.dtype(np.uint8),
    types_pb2.DT_BOOL: np.dtype(np.bool_),
    types_pb2.DT_HALF: np.dtype(np.float16),
}
VALUE_FIELDS: dict[int, str] = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_STRING: "string_val",
}


def dtype_name(dtype: int) -> str:
    """TF's short name (``float``, ``double``, ``string``), as in TF Serving's messages."""
    return types_pb2.DataType.Name(dtype).removeprefix("DT_").lower()


def to_numpy(name: str, proto: tensor_pb2.TensorProto) -> np.ndarray:
    """Decode one input; strings become an object array of ``bytes``."""
    shape = tuple(dim.size for dim in proto.tensor_shape.dim)
    count = math.prod(shape)
    dtype = proto.dtype
    if dtype == types_pb2.DT_STRING:
        values: object = list(proto.string_val)
        array = np.empty(len(proto.string_val), dtype=object)
        array[:] = values
    elif dtype in NUMPY_DTYPES:
        np_dtype = NUMPY_DTYPES[dtype]
        if proto.tensor_content:
            if len(proto.tensor_content) != count * np_dtype.itemsize:
                raise invalid(f"input '{name}': tensor_content size does not match shape {shape}")
            return np.frombuffer(proto.tensor_content, dtype=np_dtype).reshape(shape)
        if dtype == types_pb2.DT_HALF:
            array = np.asarray(proto.half_val, dtype=np.uint16).view(np.float16)
        else:
            array = np.asarray(getattr(proto, VALUE_FIELDS[dtype]), dtype=np_dtype)
    else:
        raise invalid(f"input '{name}': unsupported dtype {types_pb2.DataType.Name(dtype)}")
    if array.size == count:
        return array.reshape(shape)
    if array.size == 1 and count > 0:
        return np.full(shape, array[0], dtype=array.dtype)
    raise invalid(f"input '{name}': {array.size} values do not fill shape {list(shape)}")


def from_numpy(array: np.ndarray, dtype: int) -> tensor_pb2.TensorProto:
    """Encode one output with the signature's dtype."""
    proto = tensor_pb2.TensorProto(
        dtype=dtype,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in array.shape]
        ),
    )
    flat = array.ravel()
    if dtype == types_pb2.DT_STRING:
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in flat)
    elif dtype == types_pb2.DT_HALF:
        proto.half_val.extend(flat.astype(np.float16).view(np.uint16).tolist())
    else:
        field = getattr(proto, VALUE_FIELDS[dtype])
        field.extend(flat.astype(NUMPY_DTYPES[dtype]).tolist())
    return proto
