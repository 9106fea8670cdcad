"""REST: TF Serving's HTTP API as a small ASGI app (served by uvicorn on the same loop).

Routes (as TF Serving): ``GET /v1/models/{name}[/versions/{v}|/labels/{l}]`` (status),
``.../metadata``, ``POST ...:predict`` with the row (``instances``) or columnar (``inputs``)
format, and the Prometheus path when monitoring is enabled. Errors are ``{"error": "..."}``
with TF Serving's HTTP code for the gRPC status.
"""

from __future__ import annotations

import base64
import json
import math
import re
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

from core.contract import SIGNATURE_NAME
from service.model_server.errors import ServingError, invalid
from service.model_server.grpc_api import SIGNATURE_DEF_FIELD, metadata_response
from service.model_server.metrics import ServerMetrics
from service.model_server.predict import DataPlane, signature_of
from service.model_server.tensors import NUMPY_DTYPES

ROUTE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<action>:predict|:classify|:regress|/metadata)?$"
)
MAX_BODY_BYTES = 64 * 1024 * 1024
Columns = dict[str, np.ndarray]


def column(name: str, values: list[Any], dtype: int) -> np.ndarray:
    """One input column in the signature's dtype; null is NaN for floating inputs."""
    np_dtype = NUMPY_DTYPES.get(dtype)
    if np_dtype is None:  # DT_STRING
        out = np.empty(len(values), dtype=object)
        for i, value in enumerate(values):
            if isinstance(value, str):
                out[i] = value.encode()
            elif isinstance(value, dict) and set(value) == {"b64"}:
                out[i] = base64.b64decode(value["b64"])
            else:
                raise invalid(f"input '{name}': expected a string, got {json.dumps(value)}")
        return out
    if np_dtype.kind == "f":
        values = [math.nan if v is None else v for v in values]
    try:
        if any(isinstance(v, (str, bool, dict, list)) for v in values):
            raise TypeError
        return np.asarray(values, dtype=np_dtype)
    except (TypeError, ValueError, OverflowError):
        bad = next(
            (v for v in values if isinstance(v, (str, bool, dict, list)) or v is None), values
        )
        raise invalid(
            f"input '{name}': expected numbers of type {np_dtype.name}, got {json.dumps(bad)}"
        ) from None


def parse_predict_body(
    body: dict[str, Any], signature: meta_graph_pb2.SignatureDef
) -> tuple[Columns, bool]:
    """Columns from the row or columnar format; also whether the request used rows."""
    if "instances" in body and "inputs" in body:
        raise invalid("Not allowed to specify both 'inputs' and 'instances' keys")
    names = sorted(signature.inputs)
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise invalid("'instances' must be a non-empty JSON list")
        if all(isinstance(row, dict) for row in instances):
            keys = set(instances[0])
            for index, row in enumerate(instances):
                if set(row) != keys:
                    missing = sorted(keys.symmetric_difference(row))
                    raise invalid(
                        f"Failed to process element: {index} of 'instances' list. "
                        f"Its keys differ from the first element's in {missing}"
                    )
            raw = {key: [row[key] for row in instances] for key in keys}
        elif len(names) == 1:
            raw = {names[0]: instances}
        else:
            raise invalid(
                "Expected each element of 'instances' to be a JSON object with the "
                f"named inputs {names}"
            )
        return convert(raw, signature), True
    if "inputs" in body:
        inputs = body["inputs"]
        if isinstance(inputs, dict):
            raw = {
                key: value if isinstance(value, list) else [value] for key, value in inputs.items()
            }
        elif len(names) == 1:
            raw = {names[0]: inputs if isinstance(inputs, list) else [inputs]}
        else:
            raise invalid(f"'inputs' must be a JSON object with the named inputs {names}")
        return convert(raw, signature), False
    raise invalid("Missing 'inputs' or 'instances' key")


def convert(raw: dict[str, list[Any]], signature: meta_graph_pb2.SignatureDef) -> Columns:
    # Unknown names pass through untyped so the shared validation reports them.
    return {
        name: column(name, values, signature.inputs[name].dtype)
        if name in signature.inputs
        else np.asarray(values, dtype=object)
        for name, values in raw.items()
    }


def predictions_json(outputs: Columns, rows: bool) -> dict[str, Any]:
    def plain(values: np.ndarray) -> list[Any]:
        if values.dtype == object:
            return [v.decode(errors="replace") if isinstance(v, bytes) else v for v in values]
        return values.tolist()

    columns = {name: plain(values) for name, values in outputs.items()}
    if rows:
        if len(columns) == 1:
            return {"predictions": next(iter(columns.values()))}
        count = len(next(iter(columns.values()))) if columns else 0
        return {"predictions": [{k: v[i] for k, v in columns.items()} for i in range(count)]}
    if len(columns) == 1:
        return {"outputs": next(iter(columns.values()))}
    return {"outputs": columns}


class RestApp:
    """ASGI callable; thin: parsing and JSON only, the work is in ``DataPlane``."""

    def __init__(self, predictor: DataPlane, metrics: ServerMetrics, prometheus_path: str | None):
        self.predictor = predictor
        self.metrics = metrics
        self.prometheus_path = prometheus_path

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        try:
            if path == self.prometheus_path and method == "GET":
                await respond(send, 200, self.metrics.render(), b"text/plain; version=0.0.4")
                return
            match = ROUTE.match(path)
            if match is None:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Malformed request: {method} {path}")
            payload = await self.route(match, method, receive)
            await respond_json(send, 200, payload)
        except ServingError as error:
            await respond_json(send, error.http_status, {"error": error.message})

    async def route(self, match: re.Match, method: str, receive) -> dict[str, Any]:
        name = match["name"]
        version = int(match["version"]) if match["version"] else None
        label = match["label"]
        action = match["action"]
        manager = self.predictor.manager
        if action is None and method == "GET":
            if label:
                state = manager.models.get(name)
                if state is None or label not in state.labels:
                    raise invalid(f"Unrecognized servable version label: {label}")
                version = state.labels[label]
            statuses = manager.status(name, version)
            return message_json(
                get_model_status_pb2.GetModelStatusResponse(model_version_status=statuses)
            )
        if action == "/metadata" and method == "GET":
            response = metadata_response(manager, name, version, label)
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            response.metadata[SIGNATURE_DEF_FIELD].Unpack(signature_map)
            return {
                "model_spec": message_json(response.model_spec),
                "metadata": {SIGNATURE_DEF_FIELD: message_json(signature_map)},
            }
        if action == ":predict" and method == "POST":
            body = await read_json(receive)
            signature_name = body.get("signature_name") or SIGNATURE_NAME
            if not isinstance(signature_name, str):
                raise invalid("'signature_name' must be a string")
            signature = signature_of(manager.resolve(name, version, label), signature_name)
            inputs, rows = parse_predict_body(body, signature)
            result = await self.predictor.predict(
                name, version, label, signature_name, inputs, [], "rest"
            )
            return predictions_json(result.outputs, rows)
        if action in (":classify", ":regress") and method == "POST":
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"{action[1:]} is not supported")
        raise ServingError(grpc.StatusCode.NOT_FOUND, f"Malformed request: {method} {match[0]}")


def message_json(message) -> dict[str, Any]:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


async def read_json(receive) -> dict[str, Any]:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise invalid(f"request body larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    try:
        body = json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid(f"JSON Parse error: {exc}") from None
    if not isinstance(body, dict):
        raise invalid("JSON Value: the request body must be a JSON object")
    return body


async def respond_json(send, status: int, payload: dict[str, Any]) -> None:
    await respond(send, status, json.dumps(payload).encode(), b"application/json")


async def respond(send, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
