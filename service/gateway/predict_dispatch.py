"""Predict requests served without FastAPI's per-request argument solving.

FastAPI declares and documents the predict routes (``routes.py``). Solving an endpoint's
arguments generically (dependencies, path, query and body fields, JSON decoding) was the
largest share of the framework's cost per prediction, so the middleware hands predictions
to ``PredictDispatch`` instead: it matches the same ``APIRoute`` objects, checks the
Content-Type, validates path, query and body with the same pydantic types, reports errors
as FastAPI would (``RequestValidationError``, one list for every field), and calls the
same endpoint function. Anything it does not match goes through FastAPI as before.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, get_type_hints
from urllib.parse import parse_qsl

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.routing import Match

from . import handlers, routes
from .errors import GatewayError
from .middleware import Receive, Scope, Send
from .schemas import PredictRequest

BODY = "body"
REQUEST = "request"


def _json_error(exc: json.JSONDecodeError) -> dict[str, Any]:
    """FastAPI's words for a body that is not JSON."""
    return {
        "type": "json_invalid",
        "loc": (BODY, exc.pos),
        "msg": "JSON decode error",
        "input": {},
        "ctx": {"error": exc.msg},
    }


class _Endpoint:
    """One predict route: which arguments come from the path and the query, and their types."""

    def __init__(self, route: APIRoute) -> None:
        self.route = route
        self.call: Callable[..., Any] = route.endpoint
        self.path: dict[str, TypeAdapter] = {}
        self.query: dict[str, TypeAdapter] = {}
        path_names = set(route.param_convertors)
        hints = get_type_hints(route.endpoint, include_extras=True)
        for name, annotation in hints.items():
            if name in (REQUEST, BODY, "return"):
                continue
            adapter = TypeAdapter(annotation)
            if name in path_names:
                self.path[name] = adapter
            else:
                self.query[name] = adapter

    def arguments(
        self, path_params: dict[str, Any], query_string: bytes, body: bytes
    ) -> dict[str, Any]:
        """The endpoint's keyword arguments, or ``RequestValidationError`` listing every
        invalid field (path, then query, then body, as FastAPI orders them)."""
        errors: list[dict[str, Any]] = []
        values: dict[str, Any] = {}

        def check(where: str, name: str, adapter: TypeAdapter, raw: Any) -> None:
            try:
                values[name] = adapter.validate_python(raw)
            except ValidationError as exc:
                for error in exc.errors(include_url=False):
                    errors.append({**error, "loc": (where, name, *error["loc"])})

        for name, adapter in self.path.items():
            check("path", name, adapter, path_params[name])
        query = dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))
        for name, adapter in self.query.items():
            check("query", name, adapter, query.get(name))
        if body and not errors:
            try:  # the common case in one step, with pydantic's own JSON parser
                values[BODY] = PredictRequest.model_validate_json(body)
                return values
            except ValidationError:
                pass  # a bad body: reported below exactly as FastAPI reports it
        if not body:
            errors.append(
                {"type": "missing", "loc": (BODY,), "msg": "Field required", "input": None}
            )
        else:
            try:
                document = json.loads(body)
            except json.JSONDecodeError as exc:
                raise RequestValidationError([_json_error(exc)]) from None
            except (ValueError, RecursionError):  # bad encoding, too deep, too many digits
                raise GatewayError(handlers.UNPARSABLE_BODY) from None
            try:
                values[BODY] = PredictRequest.model_validate(document, from_attributes=True)
            except ValidationError as exc:
                for error in exc.errors(include_url=False):
                    errors.append({**error, "loc": (BODY, *error["loc"])})
        if errors:
            raise RequestValidationError(errors)
        return values


class PredictDispatch:
    """The app's predict routes, matched and called directly (see the module docstring)."""

    def __init__(self, app_routes: list[Any]) -> None:
        """``app_routes``: every route the app serves, unprefixed (other kinds are skipped)."""
        self.endpoints = [
            _Endpoint(route)
            for route in app_routes
            if isinstance(route, APIRoute) and route.endpoint in PREDICT_ENDPOINTS
        ]

    def match(self, scope: Scope) -> tuple[_Endpoint, dict[str, Any]] | None:
        """The endpoint for a POST to a predict route and its path parameters, else None
        (FastAPI answers: 404, 405, or a route this does not know)."""
        if scope["method"] != "POST":
            return None
        for endpoint in self.endpoints:
            matched, child = endpoint.route.matches(scope)
            if matched is Match.FULL:
                return endpoint, child["path_params"]
        return None

    @staticmethod
    async def serve(
        matched: tuple[_Endpoint, dict[str, Any]],
        scope: Scope,
        body: bytes,
        receive: Receive,
        send: Send,
    ) -> None:
        """Run the endpoint and send its answer, errors as the app's handlers answer them
        (anything else propagates, to the server-error middleware, as through FastAPI)."""
        endpoint, path_params = matched
        scope["route"] = endpoint.route
        request = Request(scope, receive)
        try:
            await routes.require_json(request)
            arguments = endpoint.arguments(path_params, scope.get("query_string", b""), body)
            response = await endpoint.call(request=request, **arguments)
        except GatewayError as exc:
            response = await handlers.on_gateway_error(request, exc)
        except RequestValidationError as exc:
            response = await handlers.on_validation_error(request, exc)
        await response(scope, receive, send)


PREDICT_ENDPOINTS = {
    routes.predict_model,
    routes.predict_version,
    routes.predict_label,
    routes.predict_default,
}
