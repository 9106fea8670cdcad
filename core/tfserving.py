"""The one TF Serving client: Predict, GetModelMetadata and GetModelStatus over ``grpc.aio``.

Used by the gateway and by batch scoring alike; it speaks TF Serving's protocol (and so the
project's model server) through ``core.tfserving_protos``, never importing TensorFlow.

- Requests follow the ▶ signature: one ``[batch]`` tensor per feature, the numbers
  ``DT_FLOAT`` in ``tensor_content`` (``None``/NaN = missing ``total_bedrooms``),
  ``ocean_proximity`` ``DT_STRING``.
- Responses give ``median_house_value`` plus the model name and version that answered.
- One retry policy (``RetryPolicy``): every attempt has its own deadline, and a
  ``Deadline`` budget bounds all attempts of a call (and, when the caller passes one,
  everything the caller does for one request). Only ``UNAVAILABLE`` is retried, after an
  exponential backoff with full jitter, and only while a ``RetryBudget`` allows it:
  retries stay a small share of calls, so a model server whose batching queue is full
  (TF Serving answers UNAVAILABLE) is not sent more work because it is overloaded.
- The caller's request id travels as ``x-request-id`` metadata.

Failures are ``TFServingError`` (a gRPC status code, the server's details, the target);
each caller turns them into its own errors (HTTP answers, one-line CLI errors).
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
import time
from array import array
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from core.contract import CATEGORICAL_FEATURE, NUMERIC_FEATURES, OUTPUT_NAME, SIGNATURE_NAME
from core.tfserving_protos.tensorflow.core.framework import (
    tensor_pb2,
    types_pb2,
)
from core.tfserving_protos.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

STATE_NAMES: dict[int, str] = {
    value: name for name, value in get_model_status_pb2.ModelVersionStatus.State.items()
}
DTYPE_NAMES: dict[int, str] = {value: name for name, value in types_pb2.DataType.items()}
REQUEST_ID_HEADER = "x-request-id"
# Generous message limits: batch scoring sends thousands of rows per request.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    # Reconnect quickly after an outage (gRPC's default backoff grows to 2 minutes).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
)


class TFServingError(Exception):
    """A call that failed: the last gRPC status, the server's details and the target."""

    def __init__(
        self, code: grpc.StatusCode, details: str, target: str, *, attempts: int = 1
    ) -> None:
        super().__init__(f"{target}: {code.name}: {details or 'no details'}")
        self.code = code
        self.details = details
        self.target = target
        self.attempts = attempts


class BadResponse(TFServingError):
    """The server answered OK with a response that breaks the ▶ signature."""

    def __init__(self, details: str, target: str) -> None:
        super().__init__(grpc.StatusCode.INTERNAL, details, target)


# ---- deadlines and retries ----------------------------------------------------------------


class Deadline:
    """A point in time that bounds all the work for one request (a deadline budget)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.expires = clock() + seconds

    def remaining(self) -> float:
        return max(self.expires - self.clock(), 0.0)

    def expired(self) -> bool:
        return self.remaining() <= 0


class RetryBudget:
    """Retries may be at most ``ratio`` of the calls made in the last ``window`` seconds
    (plus ``minimum`` retries per window, so a process that just started can ride out a
    brief outage). Shared by every call of one client, whatever request it serves."""

    def __init__(
        self,
        ratio: float = 0.1,
        minimum: int = 10,
        window: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ratio = ratio
        self.minimum = minimum
        self.window = window
        self.clock = clock
        self._calls: deque[float] = deque()
        self._retries: deque[float] = deque()

    def _prune(self, now: float) -> None:
        horizon = now - self.window
        for times in (self._calls, self._retries):
            while times and times[0] < horizon:
                times.popleft()

    def record_call(self) -> None:
        self._calls.append(self.clock())

    def try_retry(self) -> bool:
        """Spend one retry if the budget allows it."""
        now = self.clock()
        self._prune(now)
        if len(self._retries) >= self.minimum + self.ratio * len(self._calls):
            return False
        self._retries.append(now)
        return True


@dataclass(frozen=True)
class RetryPolicy:
    """How one call is attempted: ``attempt_seconds`` per attempt, all attempts within
    ``budget_seconds`` (or the caller's ``Deadline``, whichever ends first), at most
    ``max_retries`` retries of UNAVAILABLE with backoff ``backoff * 2**n`` (capped at
    ``max_backoff``, fully jittered)."""

    attempt_seconds: float = 5.0
    budget_seconds: float = 5.0
    max_retries: int = 2
    backoff: float = 0.05
    max_backoff: float = 1.0

    def pause(self, retry: int) -> float:
        return random.uniform(0, min(self.max_backoff, self.backoff * 2**retry))


# ---- the wire format -----------------------------------------------------------------------


def _float_content(values: Sequence[float | None] | Any) -> bytes:
    """Little-endian float32 bytes from a list (``None`` = missing -> NaN) or a numpy array."""
    if hasattr(values, "__array__"):  # numpy data: numpy is loaded already
        import numpy as np

        return np.ascontiguousarray(values, dtype="<f4").tobytes()
    buffer = array("f", [math.nan if v is None else v for v in values])
    if sys.byteorder == "big":
        buffer.byteswap()
    return buffer.tobytes()


def _fill_float(tensor: tensor_pb2.TensorProto, values: Sequence[float | None] | Any) -> None:
    tensor.dtype = types_pb2.DT_FLOAT
    tensor.tensor_shape.dim.add().size = len(values)
    tensor.tensor_content = _float_content(values)


def _fill_string(tensor: tensor_pb2.TensorProto, values: Sequence[Any]) -> None:
    tensor.dtype = types_pb2.DT_STRING
    tensor.tensor_shape.dim.add().size = len(values)
    tensor.string_val.extend(str(v).encode() for v in values)


def model_spec(
    model: str, version: int | None = None, label: str | None = None, signature: str = ""
) -> model_pb2.ModelSpec:
    """A ``ModelSpec``: an explicit version wins over a label; neither = the server's policy."""
    spec = model_pb2.ModelSpec()
    _fill_spec(spec, model, version, label, signature)
    return spec


def _fill_spec(
    spec: model_pb2.ModelSpec, model: str, version: int | None, label: str | None, signature: str
) -> None:
    spec.name = model
    spec.signature_name = signature
    if version is not None:
        spec.version.value = version
    elif label is not None:
        spec.version_label = label


def predict_request(
    model: str,
    columns: Mapping[str, Sequence[Any]],
    *,
    version: int | None = None,
    label: str | None = None,
) -> predict_pb2.PredictRequest:
    """A Predict request for the ▶ signature from one sequence per feature (same length)."""
    sizes = {len(columns[name]) for name in (*NUMERIC_FEATURES, CATEGORICAL_FEATURE)}
    if len(sizes) != 1:
        raise ValueError(f"feature columns differ in length: {sorted(sizes)}")
    request = predict_pb2.PredictRequest()
    _fill_spec(request.model_spec, model, version, label, SIGNATURE_NAME)
    inputs = request.inputs  # filled in place: building tensors and copying them costs twice
    for name in NUMERIC_FEATURES:
        _fill_float(inputs[name], columns[name])
    _fill_string(inputs[CATEGORICAL_FEATURE], columns[CATEGORICAL_FEATURE])
    return request


@dataclass(frozen=True)
class Prediction:
    """One Predict answer: the values in row order and who answered."""

    values: list[float]
    model: str
    version: int | None


def read_prediction(
    response: predict_pb2.PredictResponse, rows: int, target: str = ""
) -> Prediction:
    """``median_house_value`` as floats (whichever field the server filled), checked to have
    one value per row, with the answering model's name and version."""
    if OUTPUT_NAME not in response.outputs:
        raise BadResponse(f"no {OUTPUT_NAME!r} output in the response", target)
    tensor = response.outputs[OUTPUT_NAME]
    if tensor.dtype not in (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE):
        name = DTYPE_NAMES.get(tensor.dtype, str(tensor.dtype))
        raise BadResponse(f"{OUTPUT_NAME!r} has dtype {name}, expected DT_FLOAT", target)
    double = tensor.dtype == types_pb2.DT_DOUBLE
    values: list[float]
    if tensor.tensor_content:
        buffer = array("d" if double else "f")
        if len(tensor.tensor_content) % buffer.itemsize:
            raise BadResponse(f"{OUTPUT_NAME!r} tensor_content is not whole values", target)
        buffer.frombytes(tensor.tensor_content)
        if sys.byteorder == "big":
            buffer.byteswap()
        values = buffer.tolist()
    else:
        values = list(tensor.double_val if double else tensor.float_val)
    if len(values) != rows:
        raise BadResponse(f"{len(values)} predictions for {rows} rows", target)
    spec = response.model_spec
    version = spec.version.value if spec.HasField("version") else None
    return Prediction(values, spec.name, version)


@dataclass(frozen=True)
class VersionState:
    """One version as GetModelStatus reports it (state: START, LOADING, AVAILABLE, ...)."""

    version: int
    state: str
    error: str | None = None


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...] | None  # None: unknown rank; -1: unknown dimension


@dataclass(frozen=True)
class Signature:
    """One signature from GetModelMetadata: its inputs and outputs by name."""

    model: str
    version: int | None
    inputs: dict[str, TensorInfo] = field(default_factory=dict)
    outputs: dict[str, TensorInfo] = field(default_factory=dict)


def _tensor_info(info: Any) -> TensorInfo:
    shape = info.tensor_shape
    dims = None if shape.unknown_rank else tuple(int(d.size) for d in shape.dim)
    return TensorInfo(DTYPE_NAMES.get(info.dtype, str(info.dtype)), dims)


# ---- the client ----------------------------------------------------------------------------

# Called after every attempt with (model, method, gRPC code name, seconds).
Observer = Callable[[str, str, str, float], None]


class TFServingClient:
    """One ``grpc.aio`` channel to one model server, opened by ``start()`` (after any fork)."""

    def __init__(
        self,
        target: str,
        policy: RetryPolicy | None = None,
        *,
        retry_budget: RetryBudget | None = None,
        observe: Observer | None = None,
        channel_options: Sequence[tuple[str, Any]] = CHANNEL_OPTIONS,
    ) -> None:
        self.target = target
        self.policy = policy or RetryPolicy()
        self.retry_budget = retry_budget or RetryBudget()
        self.observe = observe
        self.channel_options = list(channel_options)
        self.retries = 0  # retries made, for reports
        self.retries_refused = 0  # retries the retry budget refused
        self._channel: grpc.aio.Channel | None = None
        self._methods: dict[str, Any] = {}

    async def start(self) -> None:
        if self._channel is not None:
            return
        self._channel = grpc.aio.insecure_channel(self.target, options=self.channel_options)
        prediction = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._methods = {
            "Predict": prediction.Predict,
            "GetModelMetadata": prediction.GetModelMetadata,
            "GetModelStatus": model_service_pb2_grpc.ModelServiceStub(self._channel).GetModelStatus,
        }

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        self._methods = {}
        if channel is not None:
            await channel.close()

    async def __aenter__(self) -> TFServingClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def predict(
        self,
        model: str,
        columns: Mapping[str, Sequence[Any]],
        *,
        version: int | None = None,
        label: str | None = None,
        request_id: str | None = None,
        deadline: Deadline | None = None,
    ) -> Prediction:
        """Predictions for the rows in ``columns`` (one sequence per feature)."""
        request = predict_request(model, columns, version=version, label=label)
        rows = len(columns[CATEGORICAL_FEATURE])
        response = await self._call("Predict", model, request, request_id, deadline)
        return read_prediction(response, rows, self.target)

    async def model_status(
        self,
        model: str,
        *,
        version: int | None = None,
        request_id: str | None = None,
        deadline: Deadline | None = None,
    ) -> list[VersionState]:
        """Every version the server knows of ``model`` (or just ``version``) and its state."""
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=model_spec(model, version))
        response = await self._call("GetModelStatus", model, request, request_id, deadline)
        return [
            VersionState(
                int(status.version),
                STATE_NAMES.get(status.state, "UNKNOWN"),
                status.status.error_message or None,
            )
            for status in response.model_version_status
        ]

    async def model_metadata(
        self,
        model: str,
        *,
        version: int | None = None,
        label: str | None = None,
        request_id: str | None = None,
        deadline: Deadline | None = None,
    ) -> Signature:
        """The ▶ signature (``serving_default``) of the version the spec resolves to."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=model_spec(model, version, label), metadata_field=["signature_def"]
        )
        response = await self._call("GetModelMetadata", model, request, request_id, deadline)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        if "signature_def" not in response.metadata or not response.metadata[
            "signature_def"
        ].Unpack(signatures):
            raise BadResponse("no signature_def metadata in the response", self.target)
        if SIGNATURE_NAME not in signatures.signature_def:
            raise BadResponse(f"the model has no {SIGNATURE_NAME!r} signature", self.target)
        signature = signatures.signature_def[SIGNATURE_NAME]
        spec = response.model_spec
        return Signature(
            model=spec.name or model,
            version=spec.version.value if spec.HasField("version") else None,
            inputs={k: _tensor_info(v) for k, v in signature.inputs.items()},
            outputs={k: _tensor_info(v) for k, v in signature.outputs.items()},
        )

    async def _call(
        self,
        name: str,
        model: str,
        request: Any,
        request_id: str | None,
        deadline: Deadline | None,
    ) -> Any:
        """One unary call under the retry policy; raises ``TFServingError``."""
        if self._channel is None:
            raise RuntimeError("TFServingClient.start() was not called")
        method = self._methods[name]
        policy = self.policy
        budget = Deadline(policy.budget_seconds)
        if deadline is not None and deadline.expires < budget.expires:
            budget = deadline
        metadata = ((REQUEST_ID_HEADER, request_id),) if request_id else None
        attempt = 0
        while True:
            timeout = min(policy.attempt_seconds, budget.remaining())
            if timeout <= 0:
                raise TFServingError(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    "deadline budget spent before the call",
                    self.target,
                    attempts=attempt,
                )
            attempt += 1
            self.retry_budget.record_call()
            started = time.perf_counter()
            try:
                response = await method(request, timeout=timeout, metadata=metadata)
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                self._observed(model, name, code.name, started)
                error = TFServingError(code, exc.details() or "", self.target, attempts=attempt)
                if code is not grpc.StatusCode.UNAVAILABLE or attempt > policy.max_retries:
                    raise error from None
                pause = policy.pause(attempt - 1)
                if pause >= budget.remaining():
                    raise error from None
                if not self.retry_budget.try_retry():
                    self.retries_refused += 1
                    raise error from None
                self.retries += 1
                await asyncio.sleep(pause)
                continue
            self._observed(model, name, "OK", started)
            return response

    def _observed(self, model: str, method: str, code: str, started: float) -> None:
        if self.observe is not None:
            self.observe(model, method, code, time.perf_counter() - started)
