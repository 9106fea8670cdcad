"""TensorProto ↔ numpy without TensorFlow on the request path (``tf.make_ndarray`` is slow).

Handles both encodings clients use: packed ``tensor_content`` (what ``tf.make_tensor_proto``
writes for arrays) and the typed ``*_val`` fields, including TF's one-value broadcast.
Requests are checked against the signature and the server's limits before anything is
allocated: a 17-byte request must not make the server fill 200 MB. Responses use the
typed fields, as TF Serving does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NoReturn

import numpy as np
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from service.model_server.errors import ServingError, invalid, too_large
from service.model_server.limits import RequestLimits, check_rows

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
    try:
        return types_pb2.DataType.Name(dtype).removeprefix("DT_").lower()
    except ValueError:  # proto3 enums keep unknown numbers
        return f"unknown dtype {dtype}"


def parse_error(name: str, detail: str) -> ServingError:
    """TF Serving's wording for a TensorProto it cannot parse, with the reason."""
    return invalid(f"tensor parsing error: {name} ({detail})")


def declared_shape(name: str, proto: tensor_pb2.TensorProto) -> tuple[int, ...]:
    tensor_shape = proto.tensor_shape
    if tensor_shape.unknown_rank:
        raise parse_error(name, "a request tensor must have a known shape")
    shape = tuple([dim.size for dim in tensor_shape.dim])
    if shape and min(shape) < 0:
        raise parse_error(name, f"shape {list(shape)} has negative dimensions")
    return shape


@dataclass(frozen=True)
class InputSpec:
    """One signature input as the request path checks it, read from its TensorInfo once:
    protobuf field reads cost more than the checks themselves."""

    index: int  # its place among the signature's sorted input names (TF's ``arg[i]``)
    dtype: int
    wanted: np.dtype | None  # None: a string (or unsupported) input
    dims: tuple[int, ...] | None  # None: unknown rank
    width: int  # elements per row (unknown dimensions count as 1)
    fixed: tuple[tuple[int, int], ...]  # (axis, size) of the dimensions that are not -1

    @classmethod
    def of(cls, index: int, info: meta_graph_pb2.TensorInfo) -> InputSpec:
        shape = info.tensor_shape
        dims = None if shape.unknown_rank else tuple(d.size for d in shape.dim)
        width = math.prod(d for d in dims[1:] if d > 0) if dims else 1
        fixed = tuple((axis, size) for axis, size in enumerate(dims or ()) if size != -1)
        return cls(index, info.dtype, NUMPY_DTYPES.get(info.dtype), dims, width, fixed)

    def allows(self, shape: tuple[int, ...]) -> bool:
        """Whether a shape fits the signature's (-1: any size)."""
        dims = self.dims
        if dims is None:
            return True
        if len(shape) != len(dims):
            return False
        return not self.fixed or all(shape[axis] == size for axis, size in self.fixed)


@dataclass(frozen=True)
class SignatureSpec:
    """A SignatureDef's inputs as ``InputSpec``s (see ``signature_spec``)."""

    inputs: dict[str, InputSpec]
    names: frozenset[str]
    sorted_names: tuple[str, ...]


_SPECS: dict[int, tuple[meta_graph_pb2.SignatureDef, SignatureSpec]] = {}
_MAX_SPECS = 256


def signature_spec(signature: meta_graph_pb2.SignatureDef) -> SignatureSpec:
    """The signature's ``SignatureSpec``, built once per signature object.

    Keyed by identity (protobuf messages are neither hashable nor weakly referable); the
    entry keeps its signature alive so an id is never reused while cached. Servables keep
    their signatures for their lifetime; the cache is cleared if it ever grows large.
    """
    cached = _SPECS.get(id(signature))
    if cached is not None and cached[0] is signature:
        return cached[1]
    names = tuple(sorted(signature.inputs))
    spec = SignatureSpec(
        {name: InputSpec.of(i, signature.inputs[name]) for i, name in enumerate(names)},
        frozenset(names),
        names,
    )
    if len(_SPECS) >= _MAX_SPECS:
        _SPECS.clear()
    _SPECS[id(signature)] = (signature, spec)
    return spec


def element_limit(name: str, shape: tuple[int, ...], spec: InputSpec, max_rows: int) -> int:
    """Check a declared shape against the signature and the row limit, before decoding.

    Returns the most elements the input may decode to: ``max_rows`` rows of the
    signature's fixed row shape (unknown dimensions count as 1, so a single broadcast
    value can never be inflated beyond the row limit).
    """
    if not spec.allows(shape):
        raise invalid(
            f"input '{name}' has shape {list(shape)} but the signature expects "
            f"{list(spec.dims or ())} (-1: any size)"
        )
    check_rows(name, shape[0] if shape else 1, max_rows)
    return max_rows * spec.width


def to_numpy(
    name: str,
    proto: tensor_pb2.TensorProto,
    max_elements: int | None = None,
    shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Decode one input; strings become an object array of ``bytes``.

    ``max_elements`` bounds what the declared shape may allocate (see ``element_limit``);
    ``shape`` is the ``declared_shape`` when the caller has read it already.
    """
    if shape is None:
        shape = declared_shape(name, proto)
    count = math.prod(shape)
    if max_elements is not None and count > max_elements:
        raise too_large(
            f"input '{name}': shape {list(shape)} is larger than the limit of {max_elements} "
            "elements"
        )
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
        raise invalid(f"input '{name}': unsupported dtype {dtype_name(dtype)}")
    if array.size == count:
        return array.reshape(shape)
    if array.size == 1 and count > 0:
        return np.full(shape, array[0], dtype=array.dtype)
    raise invalid(f"input '{name}': {array.size} values do not fill shape {list(shape)}")


def decode_inputs(
    protos: Mapping[str, tensor_pb2.TensorProto],
    signature: meta_graph_pb2.SignatureDef,
    limits: RequestLimits,
) -> dict[str, np.ndarray]:
    """A Predict request's tensors as checked columns, each shape checked before decoding.

    Names the signature does not have are not decoded: the request fails on its names.
    """
    specs = signature_spec(signature).inputs
    max_rows, max_string_bytes = limits.max_rows, limits.max_string_bytes
    columns: dict[str, np.ndarray] = {}
    for name, proto in protos.items():
        spec = specs.get(name)
        if spec is None:
            columns[name] = NOT_DECODED
            continue
        shape = declared_shape(name, proto)
        limit = element_limit(name, shape, spec, max_rows)
        values = to_numpy(name, proto, limit, shape)
        columns[name] = checked_values(name, values, spec.dtype, max_string_bytes)
    return columns


NOT_DECODED = np.empty(0, dtype=object)


def checked_values(name: str, values: np.ndarray, dtype: int, max_string_bytes: int) -> np.ndarray:
    """Values a model can take: numbers cast to the signature's dtype without overflow,
    floats finite or NaN (NaN means missing), strings UTF-8 text of bounded length.

    A kind mismatch (string for a number) is left for the signature check to report.
    """
    wanted = NUMPY_DTYPES.get(dtype)
    if wanted is not None and values.dtype == wanted and wanted.kind == "f":
        # The common case, without a cast; a finite sum (one call) rules out infinities.
        if not math.isfinite(np.add.reduce(values, axis=None)):
            infinite = np.isinf(values)
            if infinite.any():
                _refuse_infinite(name, values, infinite, wanted)
        return values
    if wanted is None or dtype == types_pb2.DT_BOOL:
        if dtype == types_pb2.DT_STRING and values.dtype == object:
            for value in values.ravel():
                if len(value) > max_string_bytes:
                    raise too_large(
                        f"input '{name}': a string of {len(value)} bytes is larger than the "
                        f"limit of {max_string_bytes} bytes"
                    )
                try:
                    value.decode()
                except UnicodeDecodeError:
                    raise invalid(f"input '{name}': {value[:40]!r} is not UTF-8 text") from None
        return values
    if values.dtype == object or values.dtype.kind not in "biuf":
        return values
    if wanted.kind in "iu" and values.dtype.kind == "f":
        return values  # reported by the signature check as a dtype mismatch
    if wanted.kind in "iu" and values.size:
        info = np.iinfo(wanted)
        low, high = values.min(), values.max()
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise invalid(f"input '{name}': {bad} is out of range for {wanted.name}")
    with np.errstate(over="ignore", invalid="ignore"):
        cast = values.astype(wanted, copy=False)
    if cast.dtype.kind == "f":
        infinite = np.isinf(cast)
        if infinite.any():
            _refuse_infinite(name, values, infinite, wanted)
    return cast


def _refuse_infinite(
    name: str, values: np.ndarray, infinite: np.ndarray, wanted: np.dtype
) -> NoReturn:
    bad = values[infinite].ravel()[0]
    raise invalid(
        f"input '{name}': {bad} is not a finite {wanted.name} "
        "(NaN means missing; infinities and out-of-range numbers are refused)"
    )


def from_numpy(
    array: np.ndarray, dtype: int, proto: tensor_pb2.TensorProto | None = None
) -> tensor_pb2.TensorProto:
    """Encode one output with the signature's dtype, into ``proto`` when given (a
    response's own map entry: no message to build and copy)."""
    if proto is None:
        proto = tensor_pb2.TensorProto()
    proto.dtype = dtype
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    flat = array.ravel()
    if dtype == types_pb2.DT_STRING:
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in flat)
    elif dtype == types_pb2.DT_HALF:
        proto.half_val.extend(flat.astype(np.float16).view(np.uint16).tolist())
    else:
        field = getattr(proto, VALUE_FIELDS[dtype])
        field.extend(flat.astype(NUMPY_DTYPES[dtype]).tolist())
    return proto
