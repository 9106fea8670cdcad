"""App factory: ``create_app(settings, predictor=None) -> FastAPI``.

Nothing happens at import time. Channels and the prediction log are opened in the
lifespan, i.e. in each worker after it started, and closed on shutdown.
``create_app_from_env`` is the zero-argument factory uvicorn workers call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from core.settings import default_models_dir
from core.tfserving import RetryPolicy
from service.monitoring.cards import card_router
from service.monitoring.monitor import DriftMonitor, MonitorSettings
from service.monitoring.routes import drift_router

from . import handlers, routes
from .metrics import GatewayMetrics
from .middleware import GatewayMiddleware
from .predict_dispatch import PredictDispatch
from .predictor import GatewayPredictor, Predictor
from .settings import GatewaySettings
from .upstream import TFServingUpstream

DESCRIPTION = """\
Predicts California district median house values (Géron, *Hands-On ML*, chapter 2) by
forwarding validated instances over gRPC to TF Serving or the project's model server.

* `POST /v1/models/{name}:predict` or `POST /v1/predict` with `{"instances": [...]}`.
* Select a version with `?version=N` or `/versions/N:predict`, a label with
  `?label=stable` or `/labels/stable:predict`.
* When API keys are configured, send `Authorization: Bearer <key>` or `X-API-Key: <key>`
  (`/livez` and `/readyz` stay open; `/metrics` also takes a scrape-only metrics key).
* Beyond its limit of concurrent predictions the gateway answers 503 with `Retry-After`.
* Every answer carries `X-Request-ID` (yours when you send a well-formed one).
"""
HEALTH_PATHS = {"/livez", "/readyz", "/metrics"}
DOC_PATHS = {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}


def default_predictor(settings: GatewaySettings, metrics: GatewayMetrics) -> GatewayPredictor:
    policy = RetryPolicy(
        attempt_seconds=settings.deadline_seconds,
        budget_seconds=settings.deadline_seconds,
        max_retries=settings.retries,
        backoff=settings.retry_backoff_seconds,
    )
    upstream = TFServingUpstream(
        settings.upstreams,
        policy,
        retry_after_seconds=settings.retry_after_seconds,
        metrics=metrics,
    )
    return GatewayPredictor(upstream, settings, metrics)


def models_dir_of(settings: GatewaySettings) -> Path:
    """The model repository the gateway reads (cards, drift references)."""
    return settings.models_dir or default_models_dir()


def drift_monitor(settings: GatewaySettings, metrics: GatewayMetrics) -> DriftMonitor | None:
    """The drift monitor over this gateway's prediction log, watching every routed model
    (the default first); none when the log is off."""
    log_file = settings.prediction_log_file
    if log_file is None:
        return None
    models = [settings.default_model, *sorted(set(settings.upstreams) - {settings.default_model})]
    options: dict = {
        "log_path": log_file,
        "models": models,
        "interval_seconds": settings.drift_interval_seconds,
        "models_dir": models_dir_of(settings),
    }
    return DriftMonitor(MonitorSettings(**options), registry=metrics.registry)


def create_app(
    settings: GatewaySettings | None = None, predictor: Predictor | None = None
) -> FastAPI:
    settings = settings or GatewaySettings()
    metrics = GatewayMetrics()
    active: Predictor = predictor or default_predictor(settings, metrics)
    monitor = drift_monitor(settings, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await active.start()
        if monitor is not None:
            monitor.start()
        try:
            yield
        finally:
            if monitor is not None:
                await asyncio.to_thread(monitor.stop)
            await active.close()

    app = FastAPI(
        title="California housing gateway",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # Observability is Prometheus (/metrics) and JSON logs; FastAPI's native OpenTelemetry
        # hooks would cost a provider check on every request for nothing.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.predictor = active
    app.state.metrics = metrics
    app.include_router(routes.router)
    app.include_router(card_router(models_dir_of(settings), settings.upstreams))
    if monitor is not None:
        app.include_router(drift_router(monitor))
    # Vertex AI's own paths (AIP_PREDICT_ROUTE, AIP_HEALTH_ROUTE), when it sets them
    predict_options = {"summary": "Vertex AI predict route (default model)", **routes.PREDICT}
    health_options = {"summary": "Vertex AI health route (readiness)", "tags": ["health"]}
    vertex: list[tuple[str | None, Callable[..., Any], str, dict[str, Any]]] = [
        (settings.aip_predict_route, routes.predict_default, "POST", predict_options),
        (settings.aip_health_route, routes.readyz, "GET", health_options),
    ]
    for path, endpoint, method, options in vertex:
        if path:
            app.add_api_route(path, endpoint, methods=[method], **options)
    handlers.install(app)

    open_paths = {"/livez", "/readyz", *DOC_PATHS}
    unmeasured = set(HEALTH_PATHS) | DOC_PATHS
    if settings.aip_health_route:
        open_paths.add(settings.aip_health_route)
        unmeasured.add(settings.aip_health_route)
    app.add_middleware(
        GatewayMiddleware,
        metrics=metrics,
        max_body_bytes=settings.max_body_bytes,
        api_keys=settings.api_key_bytes(),
        metrics_keys=settings.metrics_key_bytes(),
        open_paths=open_paths,
        unmeasured_paths=unmeasured,
        predict_paths={"/v1/predict", *filter(None, [settings.aip_predict_route])},
        max_in_flight_predictions=settings.max_in_flight_predictions,
        max_queued_predictions=settings.max_queued_predictions,
        retry_after_seconds=settings.retry_after_seconds,
        body_timeout_seconds=settings.body_timeout_seconds,
        dispatch=PredictDispatch([*routes.router.routes, *app.routes]),
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
            max_age=600,
        )
    return app


def create_app_from_env() -> FastAPI:
    """Zero-argument factory for uvicorn (``--factory``): settings from env and .env."""
    return create_app(GatewaySettings())
