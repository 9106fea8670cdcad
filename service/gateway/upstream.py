"""TF Serving gRPC client: PredictionService.Predict and ModelService.GetModelStatus.

Speaks the protocol of TF Serving and of the project's model server alike. One
``grpc.aio`` channel per distinct target, opened by ``start()`` (inside the app's lifespan,
so after any fork) and closed by ``close()``. Every call carries a deadline and the
request id as ``x-request-id`` metadata; only UNAVAILABLE is retried, with jittered
exponential backoff inside the same deadline. Tensors are filled directly (float32 bytes
in ``tensor_content``, strings in ``string_val``) so no TensorFlow op runs per request.
"""

from __future__ import annotations

import asyncio
import random
import time
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from core.contract import CATEGORICAL_FEATURE, NUMERIC_FEATURES, OUTPUT_NAME, SIGNATURE_NAME

from .errors import GatewayError, UpstreamError
from .metrics import GatewayMetrics

GRPC_OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    # Reconnect quickly after an outage (gRPC's default backoff grows to 2 minutes).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
]
STATE_NAMES = {value: name for name, value in get_model_status_pb2.ModelVersionStatus.State.items()}


@dataclass(frozen=True)
class UpstreamPrediction:
    values: list[float]
    version: int | None


@dataclass(frozen=True)
class UpstreamVersion:
    version: int
    state: str
    error: str | None


class Upstream(Protocol):
    """What the predictor service needs from a model server, whatever the transport."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def target(self, model: str) -> str: ...

    async def predict(
        self,
        model: str,
        columns: Mapping[str, Sequence[Any]],
        size: int,
        *,
        version: int | None,
        label: str | None,
        request_id: str,
    ) -> UpstreamPrediction: ...

    async def model_status(self, model: str, request_id: str) -> list[UpstreamVersion]: ...


def _shape(size: int) -> tensor_shape_pb2.TensorShapeProto:
    return tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size)])


def build_request(
    model: str,
    columns: Mapping[str, Sequence[Any]],
    size: int,
    version: int | None = None,
    label: str | None = None,
) -> predict_pb2.PredictRequest:
    """A Predict request with one ``[size]`` tensor per feature (the ▶ signature)."""
    request = predict_pb2.PredictRequest()
    spec = request.model_spec
    spec.name = model
    spec.signature_name = SIGNATURE_NAME
    if version is not None:
        spec.version.value = version
    elif label is not None:
        spec.version_label = label
    shape = _shape(size)
    nan = float("nan")
    for name in NUMERIC_FEATURES:
        values = array("f", [nan if v is None else v for v in columns[name]])
        request.inputs[name].CopyFrom(
            tensor_pb2.TensorProto(
                dtype=types_pb2.DT_FLOAT, tensor_shape=shape, tensor_content=values.tobytes()
            )
        )
    strings = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=shape)
    strings.string_val.extend(s.encode() for s in columns[CATEGORICAL_FEATURE])
    request.inputs[CATEGORICAL_FEATURE].CopyFrom(strings)
    return request


def read_output(response: predict_pb2.PredictResponse, size: int, target: str) -> list[float]:
    """The ``median_house_value`` tensor as floats, whichever field the server filled."""
    if OUTPUT_NAME not in response.outputs:
        raise GatewayError(
            f"upstream {target} returned no {OUTPUT_NAME!r} output",
            status=502,
            code="bad_upstream_response",
        )
    tensor = response.outputs[OUTPUT_NAME]
    values: list[float]
    if tensor.tensor_content:
        buffer: array[float] = array("d") if tensor.dtype == types_pb2.DT_DOUBLE else array("f")
        buffer.frombytes(tensor.tensor_content)
        values = buffer.tolist()
    elif tensor.dtype == types_pb2.DT_DOUBLE:
        values = list(tensor.double_val)
    else:
        values = list(tensor.float_val)
    if len(values) != size:
        raise GatewayError(
            f"upstream {target} returned {len(values)} predictions for {size} instances",
            status=502,
            code="bad_upstream_response",
        )
    return values


class TFServingClient:
    """``Upstream`` over TF Serving's gRPC API, one channel per target."""

    def __init__(
        self,
        routes: dict[str, str],
        *,
        deadline_seconds: float,
        retries: int,
        retry_backoff_seconds: float,
        retry_after_seconds: int = 1,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.routes = dict(routes)
        self.deadline = deadline_seconds
        self.retries = retries
        self.backoff = retry_backoff_seconds
        self.retry_after = retry_after_seconds
        self.metrics = metrics
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._predict: dict[str, Any] = {}
        self._status: dict[str, Any] = {}

    async def start(self) -> None:
        for target in sorted(set(self.routes.values())):
            channel = grpc.aio.insecure_channel(target, options=GRPC_OPTIONS)
            self._channels[target] = channel
            self._predict[target] = prediction_service_pb2_grpc.PredictionServiceStub(
                channel
            ).Predict
            self._status[target] = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        self._predict.clear()
        self._status.clear()
        await asyncio.gather(*(channel.close() for channel in channels.values()))

    def target(self, model: str) -> str:
        return self.routes[model]

    async def predict(
        self,
        model: str,
        columns: Mapping[str, Sequence[Any]],
        size: int,
        *,
        version: int | None,
        label: str | None,
        request_id: str,
    ) -> UpstreamPrediction:
        target = self.routes[model]
        request = build_request(model, columns, size, version, label)
        response = await self._call(self._predict[target], request, model, "Predict", request_id)
        served = (
            response.model_spec.version.value if response.model_spec.HasField("version") else None
        )
        return UpstreamPrediction(read_output(response, size, target), served)

    async def model_status(self, model: str, request_id: str) -> list[UpstreamVersion]:
        target = self.routes[model]
        request = get_model_status_pb2.GetModelStatusRequest(
            model_spec=model_pb2.ModelSpec(name=model)
        )
        response = await self._call(
            self._status[target], request, model, "GetModelStatus", request_id
        )
        return [
            UpstreamVersion(
                version=int(status.version),
                state=STATE_NAMES.get(status.state, "UNKNOWN"),
                error=status.status.error_message or None,
            )
            for status in response.model_version_status
        ]

    async def _call(self, method: Any, request: Any, model: str, name: str, request_id: str) -> Any:
        """One unary call: deadline, request id, retries on UNAVAILABLE only."""
        target = self.routes[model]
        metadata = (("x-request-id", request_id),)
        deadline = time.monotonic() + self.deadline
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UpstreamError(
                    grpc.StatusCode.DEADLINE_EXCEEDED, "deadline spent on retries", target
                )
            started = time.perf_counter()
            try:
                response = await method(request, timeout=remaining, metadata=metadata)
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                self._observe(model, name, code.name, started)
                if code is grpc.StatusCode.UNAVAILABLE and attempt < self.retries:
                    pause = self.backoff * (2**attempt) * (0.5 + random.random())
                    await asyncio.sleep(min(pause, max(deadline - time.monotonic(), 0)))
                    attempt += 1
                    continue
                raise UpstreamError(code, exc.details() or "", target, self.retry_after) from None
            self._observe(model, name, "OK", started)
            return response

    def _observe(self, model: str, method: str, code: str, started: float) -> None:
        if self.metrics is not None:
            self.metrics.upstream_latency.labels(model, method, code).observe(
                time.perf_counter() - started
            )
