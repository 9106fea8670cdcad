"""gRPC: TF Serving's PredictionService and ModelService, on ``grpc.aio``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from service.model_server.control import ReloadPolicy
from service.model_server.errors import ServingError, invalid
from service.model_server.limits import RequestLimits
from service.model_server.manager import ModelManager
from service.model_server.predict import DataPlane
from service.model_server.tensors import decode_inputs, from_numpy

SIGNATURE_DEF_FIELD = "signature_def"


def version_choice(spec: Any) -> tuple[int | None, str | None]:
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return spec.version.value, None
    if choice == "version_label":
        return None, spec.version_label
    return None, None


class Unparsable:
    """What a request body that is not a valid message decodes to."""

    def __init__(self, error: Exception):
        self.error = error


def tolerant(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # protobuf's DecodeError, or anything a parser raises
            return Unparsable(exc)

    return parse


class MalformedRequests(grpc.aio.ServerInterceptor):
    """An unparsable request message is INVALID_ARGUMENT (grpc's own answer is UNKNOWN).

    The wrapped handler is built once per method, not per call: this runs on every RPC."""

    def __init__(self) -> None:
        self._wrapped: dict[str, Any] = {}

    async def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: Any
    ) -> Any:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None or not handler.request_deserializer:
            return handler
        behaviour = handler.unary_unary

        async def checked(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, Unparsable):
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"{method}: the request message is malformed"
                )
            return await behaviour(request, context)

        wrapped = grpc.unary_unary_rpc_method_handler(
            checked,
            request_deserializer=tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
        self._wrapped[method] = wrapped
        return wrapped


async def abort(context: grpc.aio.ServicerContext, error: ServingError) -> None:
    await context.abort(error.code, error.message)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, predictor: DataPlane, limits: RequestLimits | None = None):
        self.predictor = predictor
        self.limits = limits or RequestLimits()

    async def Predict(  # noqa: N802
        self, request: predict_pb2.PredictRequest, context: grpc.aio.ServicerContext
    ) -> predict_pb2.PredictResponse:
        spec = request.model_spec
        try:
            version, label = version_choice(spec)
            result = await self.predictor.predict(
                spec.name,
                version,
                label,
                spec.signature_name,
                lambda signature: decode_inputs(request.inputs, signature, self.limits),
                list(request.output_filter),
                "grpc",
            )
        except ServingError as error:
            await abort(context, error)
            raise AssertionError("unreachable") from None
        response = predict_pb2.PredictResponse()
        response.model_spec.name = result.name
        response.model_spec.version.value = result.version
        response.model_spec.signature_name = result.signature_name
        for name, values in result.outputs.items():
            from_numpy(values, result.signature.outputs[name].dtype, response.outputs[name])
        return response

    async def GetModelMetadata(  # noqa: N802
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        spec = request.model_spec
        started = time.perf_counter()
        try:
            if not request.metadata_field:
                raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
            for field in request.metadata_field:
                if field != SIGNATURE_DEF_FIELD:
                    raise invalid(f"Metadata field {field} is not supported")
            version, label = version_choice(spec)
            response = metadata_response(self.predictor.manager, spec.name, version, label)
        except ServingError as error:
            await abort(context, error)
            raise AssertionError("unreachable") from None
        self.predictor.metrics.latency.labels(
            spec.name, str(response.model_spec.version.value), "metadata"
        ).observe(time.perf_counter() - started)
        return response


def metadata_response(
    manager: ModelManager, name: str, version: int | None, label: str | None
) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """The real SignatureDefs of the version, packed as TF Serving packs them."""
    loaded = manager.resolve(name, version, label)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = name
    response.model_spec.version.value = loaded.servable.version
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for key, signature in loaded.servable.signatures.items():
        signature_map.signature_def[key].CopyFrom(signature)
    response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
    return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: ModelManager, config_dir: Path, reload_policy: ReloadPolicy):
        self.manager = manager
        self.config_dir = config_dir
        self.reload_policy = reload_policy

    async def GetModelStatus(  # noqa: N802
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        spec = request.model_spec
        try:
            version, label = version_choice(spec)
            if label:
                state = self.manager.models.get(spec.name)
                if state is None or label not in state.labels:
                    raise invalid(f"Unrecognized servable version label: {label}")
                version = state.labels[label]
            statuses = self.manager.status(spec.name, version)
        except ServingError as error:
            await abort(context, error)
            raise AssertionError("unreachable") from None
        return get_model_status_pb2.GetModelStatusResponse(model_version_status=statuses)

    async def HandleReloadConfigRequest(  # noqa: N802
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        """Apply a new model list; like TF Serving, a failure is both in the body and the code.

        Only when the reload policy allows the caller, and only inside the model repository.
        """
        try:
            metadata = {key: value for key, value in context.invocation_metadata() or ()}
            self.reload_policy.authorize(context.peer(), metadata)
            if request.config.WhichOneof("config") != "model_config_list":
                raise invalid("ReloadConfigRequest: only model_config_list is supported")
            await self.manager.apply_config(request.config, self.config_dir, confine=True)
        except ServingError as error:
            context.set_code(error.code)
            context.set_details(error.message)
            response = model_management_pb2.ReloadConfigResponse()
            response.status.error_code = error.code.value[0]
            response.status.error_message = error.message
            return response
        return model_management_pb2.ReloadConfigResponse()
