"""Turn every exception into the one JSON error body (``schemas.ErrorBody``).

Validation errors name the instance index and the field; messages never echo the input
(it may be huge or hostile). Unexpected exceptions are logged with the request id.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .errors import FieldError, GatewayError, InvalidInput
from .schemas import ErrorBody, ErrorDetail

log = logging.getLogger("service.gateway")
MAX_DETAILS = 50
UNPARSABLE_BODY = "request body is not valid JSON (or nests or numbers beyond parser limits)"
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
}


def error_body(error: GatewayError, request_id: str | None) -> bytes:
    return (
        ErrorBody(
            error=error.code,
            message=error.message,
            details=[ErrorDetail(**d.as_dict()) for d in error.details[:MAX_DETAILS]],
            request_id=request_id,
        )
        .model_dump_json()
        .encode()
    )


def error_response(error: GatewayError, request_id: str | None) -> JSONResponse:
    response = JSONResponse(status_code=error.status, content=None, headers=error.headers)
    response.body = error_body(error, request_id)
    response.headers["content-length"] = str(len(response.body))
    return response


def field_errors(errors: Iterable[dict[str, Any]]) -> list[FieldError]:
    """Pydantic/FastAPI errors as FieldErrors: ``body.instances.3.latitude`` -> 3, latitude."""
    out = []
    for err in errors:
        loc = tuple(p if isinstance(p, int) else str(p)[:64] for p in err.get("loc", ()))
        instance = field = None
        if len(loc) >= 3 and loc[:2] == ("body", "instances") and isinstance(loc[2], int):
            instance = loc[2]
            field = str(loc[3]) if len(loc) > 3 else None
        elif loc and loc[0] in ("query", "path", "header") and len(loc) > 1:
            field = str(loc[1])
        elif len(loc) >= 2 and loc[0] == "body" and isinstance(loc[1], str):
            field = loc[1]
        out.append(
            FieldError(
                loc=loc,
                message=str(err.get("msg", "invalid value"))[:300],
                type=str(err.get("type", "value_error")),
                instance=instance,
                field=field,
            )
        )
    return out


def summarise(details: Sequence[FieldError]) -> str:
    if not details:
        return "invalid request"
    parts = []
    for d in details[:5]:
        if d.instance is not None:
            where = f"instances[{d.instance}]" + (f".{d.field}" if d.field else "")
        else:
            where = ".".join(str(p) for p in d.loc) or "body"
        parts.append(f"{where}: {d.message}")
    more = f" (and {len(details) - 5} more)" if len(details) > 5 else ""
    return "; ".join(parts) + more


def _request_id(request: Request) -> str | None:
    return request.scope.get("state", {}).get("request_id")


async def on_gateway_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatewayError)
    if exc.status >= 500:
        log.warning(
            exc.message,
            extra={"request_id": _request_id(request), "status": exc.status, "error": exc.code},
        )
    return error_response(exc, _request_id(request))


async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        error = InvalidInput("request body is not valid JSON", code="invalid_json")
        error.status = 400
        return error_response(error, _request_id(request))
    details = field_errors(errors)
    return error_response(InvalidInput(summarise(details), details=details), _request_id(request))


async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    if message == "There was an error parsing the body":  # FastAPI's words for it
        message = UNPARSABLE_BODY
    elif exc.status_code == 404 and message == "Not Found":
        message = f"no route for {request.method} {request.url.path[:200]}"
    error = GatewayError(
        message,
        status=exc.status_code,
        code=HTTP_CODES.get(exc.status_code, "error"),
        headers=dict(exc.headers or {}),
    )
    return error_response(error, _request_id(request))


def install(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, on_gateway_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
