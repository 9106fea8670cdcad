"""REST: TF Serving's HTTP API as a small ASGI app (served by uvicorn on the same loop).

Routes (as TF Serving): ``GET /v1/models/{name}[/versions/{v}|/labels/{l}]`` (status),
``.../metadata``, ``POST ...:predict`` with the row (``instances``) or columnar (``inputs``)
format, and the Prometheus path when monitoring is enabled. Errors are ``{"error": "..."}``
with TF Serving's HTTP code for the gRPC status, 413 for a body or row count over the
server's limits, and ``Retry-After`` when the server is too busy. Every malformed body
(not JSON, not UTF-8, nested too deeply, bad base64, numbers out of range) is a 4xx.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import reprlib
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

from core.contract import SIGNATURE_NAME
from service.model_server.errors import ServingError, invalid, too_large
from service.model_server.grpc_api import SIGNATURE_DEF_FIELD, metadata_response
from service.model_server.limits import RequestLimits, check_rows
from service.model_server.metrics import ServerMetrics
from service.model_server.predict import DataPlane
from service.model_server.tensors import NOT_DECODED, NUMPY_DTYPES, checked_values

ROUTE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>\d{1,18})|/labels/(?P<label>[^/:]+))?"
    r"(?P<action>:predict|:classify|:regress|/metadata)?$"
)
Columns = dict[str, np.ndarray]
log = logging.getLogger("housing.model_server")


def shown(value: Any) -> str:
    """A client's value in an error message: bounded in length and depth."""
    return reprlib.repr(value)


def column(name: str, values: list[Any], dtype: int, limits: RequestLimits) -> np.ndarray:
    """One input column in the signature's dtype; null is NaN for floating inputs."""
    np_dtype = NUMPY_DTYPES.get(dtype)
    if np_dtype is None:  # DT_STRING
        out = np.empty(len(values), dtype=object)
        for i, value in enumerate(values):
            out[i] = string_value(name, value)
        return checked_values(name, out, dtype, limits.max_string_bytes)
    if np_dtype.kind == "f":
        values = [math.nan if v is None else v for v in values]
    if any(isinstance(v, (str, bool, dict)) or v is None for v in flat(values)):
        bad = next(v for v in flat(values) if isinstance(v, (str, bool, dict)) or v is None)
        raise invalid(f"input '{name}': expected numbers of type {np_dtype.name}, got {shown(bad)}")
    # Parsed wide first, so checked_values can refuse what does not fit the signature's dtype.
    wide = np.float64 if np_dtype.kind == "f" else np.int64
    try:
        array = np.asarray(values, dtype=wide)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise invalid(
            f"input '{name}': expected numbers of type {np_dtype.name} in a rectangular "
            f"array ({type(exc).__name__})"
        ) from None
    return checked_values(name, array, dtype, limits.max_string_bytes)


def flat(values: list[Any]) -> Iterator[Any]:
    """The leaves of nested lists (a row may hold a list for a multi-dimensional input)."""
    stack = [iter(values)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            yield value
        else:
            stack.pop()


def string_value(name: str, value: Any) -> bytes:
    if isinstance(value, str):
        try:
            return value.encode()
        except UnicodeEncodeError:
            raise invalid(f"input '{name}': {shown(value)} is not UTF-8 text") from None
    if isinstance(value, dict) and set(value) == {"b64"}:
        encoded = value["b64"]
        if not isinstance(encoded, str):
            raise invalid(f"input '{name}': 'b64' must be a base64 string, got {shown(encoded)}")
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise invalid(f"input '{name}': {shown(encoded)} is not valid base64") from None
    raise invalid(f"input '{name}': expected a string, got {shown(value)}")


def parse_predict_body(
    body: dict[str, Any], signature: meta_graph_pb2.SignatureDef, limits: RequestLimits
) -> Columns:
    """Columns from the row (``instances``) or columnar (``inputs``) format."""
    if "instances" in body and "inputs" in body:
        raise invalid("Not allowed to specify both 'inputs' and 'instances' keys")
    names = sorted(signature.inputs)
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise invalid("'instances' must be a non-empty JSON list")
        check_rows("instances", len(instances), limits.max_rows)
        if all(isinstance(row, dict) for row in instances):
            keys = set(instances[0])
            for index, row in enumerate(instances):
                if set(row) != keys:
                    missing = sorted(keys.symmetric_difference(row))
                    raise invalid(
                        f"Failed to process element: {index} of 'instances' list. "
                        f"Its keys differ from the first element's in {shown(missing)}"
                    )
            raw = {key: [row[key] for row in instances] for key in keys}
        elif len(names) == 1:
            raw = {names[0]: instances}
        else:
            raise invalid(
                "Expected each element of 'instances' to be a JSON object with the "
                f"named inputs {names}"
            )
        return convert(raw, signature, limits)
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
        return convert(raw, signature, limits)
    raise invalid("Missing 'inputs' or 'instances' key")


def convert(
    raw: dict[str, list[Any]], signature: meta_graph_pb2.SignatureDef, limits: RequestLimits
) -> Columns:
    """Typed columns; names the signature lacks are not converted (the names check
    reports them)."""
    columns: Columns = {}
    for name, values in raw.items():
        if name not in signature.inputs:
            columns[name] = NOT_DECODED
            continue
        check_rows(name, len(values), limits.max_rows)
        columns[name] = column(name, values, signature.inputs[name].dtype, limits)
    return columns


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

    def __init__(
        self,
        predictor: DataPlane,
        metrics: ServerMetrics,
        prometheus_path: str | None,
        limits: RequestLimits | None = None,
    ):
        self.predictor = predictor
        self.metrics = metrics
        self.prometheus_path = prometheus_path
        self.limits = limits or RequestLimits()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
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
            payload = await self.route(match, method, scope, receive)
            await respond_json(send, 200, payload)
        except ServingError as error:
            headers = []
            if error.retry_after is not None:
                headers.append((b"retry-after", str(error.retry_after).encode()))
            await respond_json(send, error.http_status, {"error": error.message}, headers)
        except Exception:  # a bug, not the client's fault: no internals in the answer
            log.exception("REST %s %s failed", method, path)
            await respond_json(send, 500, {"error": "Internal error"})

    async def route(self, match: re.Match, method: str, scope: Any, receive: Any) -> dict[str, Any]:
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
            body = await read_json(scope, receive, self.limits.max_request_bytes)
            signature_name = body.get("signature_name") or SIGNATURE_NAME
            if not isinstance(signature_name, str):
                raise invalid("'signature_name' must be a string")
            result = await self.predictor.predict(
                name,
                version,
                label,
                signature_name,
                lambda signature: parse_predict_body(body, signature, self.limits),
                [],
                "rest",
            )
            return predictions_json(result.outputs, "instances" in body)
        if action in (":classify", ":regress") and method == "POST":
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"{action[1:]} is not supported")
        raise ServingError(grpc.StatusCode.NOT_FOUND, f"Malformed request: {method} {match[0]}")


def message_json(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


async def read_json(scope: Any, receive: Any, max_bytes: int) -> dict[str, Any]:
    """The body as a JSON object; refused (413) as soon as it is known to be too large."""
    too_big = too_large(f"request body larger than {max_bytes} bytes")
    for key, value in scope.get("headers", []):
        if key == b"content-length" and value.isdigit() and int(value) > max_bytes:
            raise too_big
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise too_big
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    try:
        body = json.loads(b"".join(chunks))
    except RecursionError:
        raise invalid("JSON Parse error: the body is nested too deeply") from None
    except ValueError as exc:  # also UnicodeDecodeError: the body is not UTF-8
        raise invalid(f"JSON Parse error: {exc}") from None
    if not isinstance(body, dict):
        raise invalid("JSON Value: the request body must be a JSON object")
    return body


async def respond_json(
    send: Any,
    status: int,
    payload: dict[str, Any],
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await respond(send, status, json.dumps(payload).encode(), b"application/json", headers)


async def respond(
    send: Any,
    status: int,
    body: bytes,
    content_type: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
