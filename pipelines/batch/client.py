"""The async gRPC PredictionService client: one request per chunk, deadline, UNAVAILABLE retries.

Tensors are built directly as ``TensorProto`` bytes (``tensor_content`` for floats), which is
far cheaper than converting through TensorFlow for hundreds of thousands of rows.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from core.contract import CATEGORICAL_FEATURE, NUMERIC_FEATURES, OUTPUT_NAME, SIGNATURE_NAME
from core.errors import UserError

MAX_MESSAGE_BYTES = 256 * 1024 * 1024


def shape(rows: int) -> tensor_shape_pb2.TensorShapeProto:
    return tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=rows)])


def float_tensor(values: np.ndarray) -> tensor_pb2.TensorProto:
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT,
        tensor_shape=shape(len(values)),
        tensor_content=np.ascontiguousarray(values, dtype="<f4").tobytes(),
    )


def string_tensor(values: np.ndarray) -> tensor_pb2.TensorProto:
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=shape(len(values)),
        string_val=[str(v).encode() for v in values],
    )


def read_predictions(response: predict_pb2.PredictResponse, rows: int) -> np.ndarray:
    if OUTPUT_NAME not in response.outputs:
        raise UserError(f"the model's response has no {OUTPUT_NAME!r} output")
    tensor = response.outputs[OUTPUT_NAME]
    if tensor.tensor_content:
        values = np.frombuffer(tensor.tensor_content, dtype="<f4")
    else:
        values = np.asarray(tensor.float_val or tensor.double_val, dtype=np.float64)
    if len(values) != rows:
        raise UserError(f"the model returned {len(values)} predictions for {rows} rows")
    return values.astype(np.float64)


@dataclass
class Scorer:
    """Sends chunks to ``target``; counts the retries it needed."""

    target: str
    model: str
    version: int | None = None
    label: str | None = None
    deadline: float = 30.0
    retries: int = 10
    backoff: float = 0.2
    max_backoff: float = 10.0
    retried: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        options = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ]
        self.channel = grpc.aio.insecure_channel(self.target, options=options)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    def request(
        self, numeric: dict[str, np.ndarray], category: np.ndarray
    ) -> predict_pb2.PredictRequest:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model
        request.model_spec.signature_name = SIGNATURE_NAME
        if self.version is not None:
            request.model_spec.version.value = self.version
        elif self.label is not None:
            request.model_spec.version_label = self.label
        for name in NUMERIC_FEATURES:
            request.inputs[name].CopyFrom(float_tensor(numeric[name]))
        request.inputs[CATEGORICAL_FEATURE].CopyFrom(string_tensor(category))
        return request

    async def predict(self, numeric: dict[str, np.ndarray], category: np.ndarray) -> np.ndarray:
        """Predictions for the rows; UNAVAILABLE is retried with jittered exponential backoff."""
        request = self.request(numeric, category)
        attempt = 0
        while True:
            try:
                response = await self.stub.Predict(request, timeout=self.deadline)
                return read_predictions(response, len(category))
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or attempt >= self.retries:
                    raise UserError(
                        f"{self.target}: {exc.code().name}: {exc.details()}"
                        + (f" (after {attempt} retries)" if attempt else "")
                    ) from None
                delay = min(self.max_backoff, self.backoff * 2**attempt)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                attempt += 1
                self.retried += 1

    async def close(self) -> None:
        await self.channel.close()
