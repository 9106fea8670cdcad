"""The gateway's one error hierarchy and its one gRPC -> HTTP mapping table.

Every failure the gateway reports is a ``GatewayError`` with an HTTP status, a stable
machine-readable ``code`` and a human message; upstream gRPC failures become one through
``GRPC_TO_HTTP`` only, so the mapping cannot drift between call sites.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc


@dataclass(frozen=True)
class FieldError:
    """One invalid input: where (``loc``), which instance and field, and why."""

    loc: tuple[str | int, ...]
    message: str
    type: str
    instance: int | None = None
    field: str | None = None

    def as_dict(self) -> dict:
        return {
            "loc": list(self.loc),
            "instance": self.instance,
            "field": self.field,
            "message": self.message,
            "type": self.type,
        }


class GatewayError(Exception):
    """Base of every error the gateway answers with; never a 500."""

    status: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.details = details or []
        self.headers = headers or {}


class InvalidInput(GatewayError):
    status, code = 422, "invalid_input"


class Unauthorized(GatewayError):
    status, code = 401, "unauthorized"

    def __init__(self, message: str = "missing or invalid API key") -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="housing"'})


class ModelNotFound(GatewayError):
    status, code = 404, "model_not_found"


class PayloadTooLarge(GatewayError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(GatewayError):
    status, code = 415, "unsupported_media_type"


class NotReady(GatewayError):
    status, code = 503, "not_ready"


class ModelLoading(GatewayError):
    """The addressed version (or the version a label points to) is not loaded yet."""

    status, code = 503, "model_loading"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


@dataclass(frozen=True)
class HttpMapping:
    status: int
    code: str
    message: str
    retry_after: bool = False


# The one table. Messages are generic on purpose: the upstream's address and text go to the
# log (keyed by request id), never to clients. INVALID_ARGUMENT is the upstream rejecting a
# request the gateway let through (400; the gateway's own validation answers 422).
# RESOURCE_EXHAUSTED is an overloaded upstream (429, retry later). NOT_FOUND is 404 here; the
# predictor turns it into 503 ``model_loading`` when the version is still loading.
_UNAVAILABLE = "the model server is unavailable; retry later"
_FAILED = "the model server failed to answer"
GRPC_TO_HTTP: dict[grpc.StatusCode, HttpMapping] = {
    grpc.StatusCode.CANCELLED: HttpMapping(
        503, "upstream_cancelled", "the model server cancelled the call; retry later", True
    ),
    grpc.StatusCode.UNKNOWN: HttpMapping(502, "upstream_error", _FAILED),
    grpc.StatusCode.INVALID_ARGUMENT: HttpMapping(
        400, "upstream_invalid_argument", "the model server rejected the request as invalid"
    ),
    grpc.StatusCode.DEADLINE_EXCEEDED: HttpMapping(
        504, "upstream_timeout", "the model server did not answer within the deadline"
    ),
    grpc.StatusCode.NOT_FOUND: HttpMapping(
        404, "not_found", "the model server does not serve that model or version"
    ),
    grpc.StatusCode.ALREADY_EXISTS: HttpMapping(409, "conflict", "conflict at the model server"),
    grpc.StatusCode.PERMISSION_DENIED: HttpMapping(
        403, "forbidden", "the model server refused the request"
    ),
    grpc.StatusCode.RESOURCE_EXHAUSTED: HttpMapping(
        429, "upstream_overloaded", "the model server is overloaded; retry later", True
    ),
    grpc.StatusCode.FAILED_PRECONDITION: HttpMapping(
        503, "model_not_ready", "the model is not ready; retry later", True
    ),
    grpc.StatusCode.ABORTED: HttpMapping(
        503, "upstream_aborted", "the model server aborted the call; retry later", True
    ),
    grpc.StatusCode.OUT_OF_RANGE: HttpMapping(
        400, "out_of_range", "the model server found an input out of range"
    ),
    grpc.StatusCode.UNIMPLEMENTED: HttpMapping(
        501, "not_implemented", "the model server does not implement this call"
    ),
    grpc.StatusCode.INTERNAL: HttpMapping(502, "upstream_error", _FAILED),
    grpc.StatusCode.UNAVAILABLE: HttpMapping(503, "upstream_unavailable", _UNAVAILABLE, True),
    grpc.StatusCode.DATA_LOSS: HttpMapping(502, "upstream_error", _FAILED),
    grpc.StatusCode.UNAUTHENTICATED: HttpMapping(
        502, "upstream_unauthenticated", "the gateway could not authenticate to the model server"
    ),
}


class UpstreamError(GatewayError):
    """A failed upstream gRPC call, mapped through ``GRPC_TO_HTTP`` (generic message)."""

    def __init__(self, grpc_code: grpc.StatusCode, retry_after: int = 1) -> None:
        mapping = GRPC_TO_HTTP.get(grpc_code, HttpMapping(502, "upstream_error", _FAILED))
        headers = {"Retry-After": str(retry_after)} if mapping.retry_after else None
        super().__init__(mapping.message, status=mapping.status, code=mapping.code, headers=headers)
        self.grpc_code = grpc_code
