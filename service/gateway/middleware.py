"""One pure-ASGI middleware for what every request shares, kept off the per-route code.

Request id (accepted when well-formed, else generated; always returned), API-key check,
body-size limit (Content-Length checked before anything is read, streamed bodies
counted), the per-worker cap on concurrent predictions, in-flight gauge, request metrics
by route template, and one JSON access log line. Pure ASGI rather than
``BaseHTTPMiddleware``: no extra task or copy per request.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException

from .auth import is_authorized, presented_key
from .errors import GatewayError, PayloadTooLarge, Unauthorized
from .handlers import error_body
from .metrics import GatewayMetrics

if TYPE_CHECKING:
    from .predict_dispatch import PredictDispatch

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")
access_log = logging.getLogger("service.gateway.access")
METRICS_PATH = "/metrics"


def new_request_id() -> str:
    """32 random hex digits. Ids correlate log lines, they guard nothing, so Python's
    generator serves (a uuid4 reads the OS's, one system call per request)."""
    return f"{random.getrandbits(128):032x}"


class AdmissionGate:
    """At most ``limit`` holders at once and at most ``queue`` waiting for a slot; anyone
    else is refused at once, so overload becomes a fast 503 instead of a growing backlog."""

    def __init__(self, limit: int, queue: int) -> None:
        self.queue = queue
        self.waiting = 0
        self._slots = asyncio.Semaphore(limit)

    async def enter(self) -> bool:
        """Take a slot (waiting only if there is room in the queue); False when refused."""
        if not self._slots.locked():
            await self._slots.acquire()
            return True
        if self.waiting >= self.queue:
            return False
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        return True

    def leave(self) -> None:
        self._slots.release()


def replay(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` that hands out a body already read, then the client's later messages."""
    pending = deque(messages)

    async def replayed() -> Message:
        return pending.popleft() if pending else await receive()

    return replayed


class GatewayMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: GatewayMetrics,
        max_body_bytes: int,
        api_keys: list[bytes],
        metrics_keys: list[bytes],
        open_paths: set[str],
        unmeasured_paths: set[str],
        predict_paths: set[str],
        max_in_flight_predictions: int,
        max_queued_predictions: int,
        retry_after_seconds: int,
        body_timeout_seconds: float,
        dispatch: PredictDispatch | None = None,
    ) -> None:
        self.app = app
        self.dispatch = dispatch
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.api_keys = api_keys
        # Prometheus may scrape with a scrape-only key; API keys open /metrics too.
        self.scrape_keys = [*api_keys, *metrics_keys]
        self.open_paths = open_paths
        self.unmeasured_paths = unmeasured_paths
        self.predict_paths = predict_paths
        self.gate = AdmissionGate(max_in_flight_predictions, max_queued_predictions)
        self.retry_after = str(retry_after_seconds)
        self.body_timeout_seconds = body_timeout_seconds

    def is_prediction(self, path: str) -> bool:
        return path.endswith(":predict") or path in self.predict_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id")
        request_id = given.decode() if given and REQUEST_ID.match(given) else new_request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        rid_header = (b"x-request-id", request_id.encode())
        status = [500]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        path = scope["path"]
        measured = path not in self.unmeasured_paths
        started = time.perf_counter()
        if measured:
            self.metrics.in_flight.inc()
        try:
            error = self._precheck(path, headers)
            if error is not None:
                await self._answer(error, request_id, send_with_id)
            elif self.is_prediction(path):
                await self._admitted(scope, receive, send_with_id, request_id)
            else:
                await self.app(scope, self._limited(receive), send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            if measured:
                self.metrics.in_flight.dec()
                route = scope.get("route")
                template = getattr(route, "path", "unmatched")
                labels = (
                    template,
                    str(state.get("model", "")),
                    str(state.get("version", "")),
                    str(status[0]),
                )
                self.metrics.requests.labels(*labels).inc()
                self.metrics.latency.labels(*labels).observe(elapsed)
                access_log.info(
                    "request",
                    extra={
                        "request_id": request_id,
                        "method": scope["method"],
                        "route": template,
                        "status": status[0],
                        "model": state.get("model"),
                        "version": state.get("version"),
                        "duration_ms": round(elapsed * 1000, 3),
                    },
                )

    async def _admitted(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        """A prediction: its whole body first (bounded in size and time), then a slot from
        the gate, or a 503. Reading first keeps slow senders from holding slots."""
        try:
            async with asyncio.timeout(self.body_timeout_seconds):
                body = await self._read_body(receive)
        except TimeoutError:
            timeout = GatewayError(
                f"request body not received within {self.body_timeout_seconds:g} s",
                status=408,
                code="request_timeout",
            )
            await self._answer(timeout, request_id, send)
            return
        except PayloadTooLarge as too_large:
            await self._answer(too_large, request_id, send)
            return
        if body is None:
            return  # the client went away
        if not await self.gate.enter():
            self.metrics.overload_rejections.inc()
            overloaded = GatewayError(
                "the gateway is at its limit of concurrent predictions; retry later",
                status=503,
                code="overloaded",
                headers={"Retry-After": self.retry_after},
            )
            await self._answer(overloaded, request_id, send)
            return
        try:
            dispatch = self.dispatch
            matched = dispatch.match(scope) if dispatch is not None else None
            if dispatch is not None and matched is not None:
                data = b"".join(message.get("body", b"") for message in body)
                await dispatch.serve(matched, scope, data, receive, send)
            else:
                await self.app(scope, replay(body, receive), send)
        finally:
            self.gate.leave()

    async def _read_body(self, receive: Receive) -> list[Message] | None:
        """Every body message (None if the client disconnects); PayloadTooLarge past the
        limit, so a body without Content-Length is cut off too."""
        messages: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            seen += len(message.get("body", b""))
            if seen > self.max_body_bytes:
                raise PayloadTooLarge(
                    f"request body exceeds the limit of {self.max_body_bytes} bytes"
                )
            messages.append(message)
            if not message.get("more_body", False):
                return messages

    def _precheck(self, path: str, headers: dict[bytes, bytes]) -> GatewayError | None:
        keys = self.scrape_keys if path == METRICS_PATH else self.api_keys
        if path not in self.open_paths and not is_authorized(keys, presented_key(headers)):
            return Unauthorized()
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return GatewayError("Content-Length must be a non-negative integer")
            if int(length) > self.max_body_bytes:
                return PayloadTooLarge(
                    f"request body of {int(length)} bytes exceeds the limit of "
                    f"{self.max_body_bytes} bytes"
                )
        return None

    def _limited(self, receive: Receive) -> Receive:
        """``receive`` that stops a streamed (chunked) body once it passes the limit."""
        seen = 0
        limit = self.max_body_bytes

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, f"request body exceeds the limit of {limit} bytes")
            return message

        return limited

    @staticmethod
    async def _answer(error: GatewayError, request_id: str, send: Send) -> None:
        body = error_body(error, request_id)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *((k.lower().encode(), v.encode()) for k, v in error.headers.items()),
        ]
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
