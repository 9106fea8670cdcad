"""The one fake upstream: a real gRPC server (grpc.aio, own thread and loop) speaking TF
Serving's protocol, for the gateway, TF Serving client and fault tests.

Each test sets what it answers (codes, delays, versions, labels) through ``Behaviour``;
it predicts ``100_000 * median_income + 1_000 * version`` so tests can tell versions apart.
"""

from __future__ import annotations

import asyncio
import math
import threading
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from core.tfserving_protos.tensorflow.core.framework import (
    tensor_pb2,
    tensor_shape_pb2,
    types_pb2,
)
from core.tfserving_protos.tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
LOADING = get_model_status_pb2.ModelVersionStatus.LOADING


@dataclass
class Call:
    method: str
    model: str
    version: int | None
    label: str | None
    request_id: str | None
    rows: int = 0
    inputs: dict = field(default_factory=dict)


@dataclass
class Behaviour:
    models: dict[str, dict[int, int]] = field(default_factory=dict)  # name -> version -> state
    labels: dict[str, dict[str, int]] = field(default_factory=dict)
    predict_error: tuple[grpc.StatusCode, str] | None = None
    status_error: tuple[grpc.StatusCode, str] | None = None
    fail_unavailable: int = 0  # Predict calls to fail with UNAVAILABLE before answering
    delay: float = 0.0
    output_name: str = "median_house_value"
    output_value: float | None = None  # answer this for every row instead of the formula
    on_predict: Callable[[Behaviour], None] | None = None  # runs at the start of each Predict
    calls: list[Call] = field(default_factory=list)


def _values(tensor: tensor_pb2.TensorProto) -> list:
    if tensor.dtype == types_pb2.DT_STRING:
        return [s.decode() for s in tensor.string_val]
    if tensor.tensor_content:
        return array("f", tensor.tensor_content).tolist()
    return list(tensor.float_val)


class FakeServer(
    prediction_service_pb2_grpc.PredictionServiceServicer,
    model_service_pb2_grpc.ModelServiceServicer,
):
    def __init__(self) -> None:
        self.behaviour = Behaviour()

    def reset(self) -> Behaviour:
        self.behaviour = Behaviour(
            models={
                "housing_sklearn": {1: AVAILABLE, 2: AVAILABLE},
                "housing_keras": {1: AVAILABLE},
            },
            labels={"housing_sklearn": {"stable": 2}, "housing_keras": {"stable": 1}},
        )
        return self.behaviour

    def _resolve(self, spec, context) -> int:
        b = self.behaviour
        versions = b.models.get(spec.name)
        if versions is None:
            raise LookupError(f"Servable not found for request: Latest({spec.name})")
        if spec.HasField("version"):
            if spec.version.value not in versions:
                raise LookupError(
                    f"Servable not found for request: Specific({spec.name}, {spec.version.value})"
                )
            return spec.version.value
        if spec.version_label:
            label = b.labels.get(spec.name, {}).get(spec.version_label)
            if label is None:
                raise ValueError(f"Unrecognized servable version label: {spec.version_label}")
            return label
        return max(v for v, s in versions.items() if s == AVAILABLE)

    async def Predict(self, request, context):
        b = self.behaviour
        metadata = dict(context.invocation_metadata())
        spec = request.model_spec
        call = Call(
            "Predict",
            spec.name,
            spec.version.value if spec.HasField("version") else None,
            spec.version_label or None,
            metadata.get("x-request-id"),
            inputs={k: _values(v) for k, v in request.inputs.items()},
        )
        call.rows = len(call.inputs.get("median_income", []))
        b.calls.append(call)
        if b.on_predict is not None:
            b.on_predict(b)
        if b.delay:
            await asyncio.sleep(b.delay)
        if b.fail_unavailable > 0:
            b.fail_unavailable -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        if b.predict_error:
            await context.abort(*b.predict_error)
        try:
            version = self._resolve(spec, context)
        except LookupError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        income = call.inputs["median_income"]
        out = [100_000 * x + 1_000 * version for x in income]
        if b.output_value is not None:
            out = [b.output_value] * len(out)
        elif any(math.isnan(x) for x in call.inputs["total_bedrooms"]):
            out = [x + 1 for x in out]  # lets tests see NaN arrived for a missing value
        response = predict_pb2.PredictResponse()
        response.model_spec.name = spec.name
        response.model_spec.version.value = version
        response.model_spec.signature_name = "serving_default"
        tensor = response.outputs[b.output_name]
        tensor.dtype = types_pb2.DT_FLOAT
        tensor.tensor_shape.CopyFrom(
            tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(out))]
            )
        )
        tensor.float_val.extend(out)
        return response

    async def GetModelStatus(self, request, context):
        b = self.behaviour
        b.calls.append(
            Call(
                "GetModelStatus",
                request.model_spec.name,
                None,
                None,
                dict(context.invocation_metadata()).get("x-request-id"),
            )
        )
        if b.delay:
            await asyncio.sleep(b.delay)
        if b.status_error:
            await context.abort(*b.status_error)
        versions = b.models.get(request.model_spec.name)
        if versions is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"Could not find any versions of model {request.model_spec.name}",
            )
        response = get_model_status_pb2.GetModelStatusResponse()
        for version, state in sorted(versions.items()):
            status = response.model_version_status.add()
            status.version = version
            status.state = state
        return response


class FakeUpstream:
    """Runs ``FakeServer`` on 127.0.0.1:<free port> in a background thread."""

    def __init__(self) -> None:
        self.servicer = FakeServer()
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self.server = grpc.aio.server()
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            self.servicer, self.server
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(self.servicer, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        self._stop = asyncio.Event()
        self._started.set()
        await self._stop.wait()
        await self.server.stop(0)

    def start(self) -> FakeUpstream:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("fake upstream did not start")
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
