"""A PredictionService + ModelService gRPC server whose Predict takes as long as the test
says: the only way to make a real upstream slow on demand. Real gRPC, in-process."""

from __future__ import annotations

import threading
from concurrent import futures

import grpc
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from core.contract import OUTPUT_NAME


class SlowUpstream(
    prediction_service_pb2_grpc.PredictionServiceServicer,
    model_service_pb2_grpc.ModelServiceServicer,
):
    def __init__(self) -> None:
        self.delay = 0.0
        self.release = threading.Event()  # set: finish any sleeping call now

    def Predict(self, request, context):  # noqa: N802 (gRPC method name)
        if self.delay:
            self.release.wait(self.delay)
        rows = request.inputs["median_income"].tensor_shape.dim[0].size
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = 1
        response.outputs[OUTPUT_NAME].CopyFrom(
            tensor_pb2.TensorProto(
                dtype=types_pb2.DT_FLOAT,
                tensor_shape=tensor_shape_pb2.TensorShapeProto(
                    dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=rows)]
                ),
                float_val=[200_000.0] * rows,
            )
        )
        return response

    def GetModelStatus(self, request, context):  # noqa: N802
        response = get_model_status_pb2.GetModelStatusResponse()
        status = response.model_version_status.add()
        status.version = 1
        status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        return response


def serve(upstream: SlowUpstream) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(upstream, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(upstream, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port
