"""The gateway's model servers: one ``core.tfserving`` client per target, errors made HTTP.

Clients open their channels in ``start()`` (inside the app's lifespan, so after any fork).
A failed call becomes an ``UpstreamError`` through the one gRPC -> HTTP table; its message
to the client is generic, and the details (target, gRPC code and text) go to the log under
the request id, so no address or server text leaks to clients.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from core.tfserving import (
    BadResponse,
    Deadline,
    Prediction,
    RetryPolicy,
    TFServingClient,
    TFServingError,
    VersionState,
)

from .errors import GatewayError, UpstreamError
from .metrics import GatewayMetrics

log = logging.getLogger("service.gateway")


def upstream_error(
    exc: TFServingError, model: str, request_id: str, retry_after: int
) -> GatewayError:
    """The client's view of a failed call; the details are logged, not answered. A warning
    when the server side failed (5xx); an info line when the request was refused (4xx, e.g.
    an unknown label the gateway then falls back from), which is no operator's problem."""
    error: GatewayError
    if isinstance(exc, BadResponse):
        error = GatewayError(
            "the model server's answer does not follow the prediction signature",
            status=502,
            code="bad_upstream_response",
        )
    else:
        error = UpstreamError(exc.code, retry_after)
    log.log(
        logging.WARNING if error.status >= 500 else logging.INFO,
        "upstream call failed",
        extra={
            "request_id": request_id,
            "model": model,
            "target": exc.target,
            "grpc_code": exc.code.name,
            "details": exc.details[:500],
            "attempts": exc.attempts,
        },
    )
    return error


class TFServingUpstream:
    """The model servers over TF Serving's gRPC API: the routing table, one client per
    target. Tests put a real gRPC server behind it (``tests/fake_upstream.py``), not a fake
    of this class, so it is the predictor's only upstream."""

    def __init__(
        self,
        routes: Mapping[str, str],
        policy: RetryPolicy,
        *,
        retry_after_seconds: int = 1,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.routes = dict(routes)
        self.retry_after = retry_after_seconds
        observe = None
        if metrics is not None:
            histogram = metrics.upstream_latency

            def observe(model: str, method: str, code: str, seconds: float) -> None:
                histogram.labels(model, method, code).observe(seconds)

        self.clients = {
            target: TFServingClient(target, policy, observe=observe)
            for target in sorted(set(self.routes.values()))
        }

    async def start(self) -> None:
        for client in self.clients.values():
            await client.start()

    async def close(self) -> None:
        await asyncio.gather(*(client.close() for client in self.clients.values()))

    async def predict(
        self,
        model: str,
        columns: Mapping[str, Sequence[Any]],
        *,
        version: int | None,
        label: str | None,
        request_id: str,
        deadline: Deadline,
    ) -> Prediction:
        client = self.clients[self.routes[model]]
        try:
            return await client.predict(
                model,
                columns,
                version=version,
                label=label,
                request_id=request_id,
                deadline=deadline,
            )
        except TFServingError as exc:
            raise upstream_error(exc, model, request_id, self.retry_after) from None

    async def model_status(
        self, model: str, request_id: str, deadline: Deadline | None = None
    ) -> list[VersionState]:
        client = self.clients[self.routes[model]]
        try:
            return await client.model_status(model, request_id=request_id, deadline=deadline)
        except TFServingError as exc:
            raise upstream_error(exc, model, request_id, self.retry_after) from None
