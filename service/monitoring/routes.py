"""REST endpoints of the drift monitor, as a router the gateway includes.

``app.include_router(drift_router(monitor))`` adds:

- ``GET  /v1/monitoring/drift``       the latest drift.json (503 + Retry-After before the
  first report, with the reason: no traffic yet, too few rows, no reference);
- ``POST /v1/monitoring/drift:run``   run a report now and return it (503 with the reason
  when there is too little data);
- ``GET  /v1/monitoring/drift.html``  the latest Evidently HTML report (503 before the first).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse

from service.monitoring.monitor import DriftMonitor, MonitorError

RETRY_AFTER_SECONDS = "30"


def _not_ready(monitor: DriftMonitor, reason: str | None = None) -> JSONResponse:
    detail = reason or monitor.last_error or "no drift report yet: the first run has not finished"
    return JSONResponse(
        status_code=503,
        content={"detail": detail, "monitor": monitor.status()},
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


def drift_router(monitor: DriftMonitor) -> APIRouter:
    """An APIRouter serving ``monitor``'s latest report; include it in the gateway app."""
    router = APIRouter(prefix="/v1/monitoring", tags=["monitoring"])

    @router.get("/drift", summary="Latest data drift report (drift.json)")
    def latest_drift() -> Any:
        if monitor.latest is None:
            return _not_ready(monitor)
        return monitor.latest

    # Sync handler: FastAPI runs it in its thread pool, so the Evidently run (seconds of
    # CPU) does not block the event loop.
    @router.post("/drift:run", summary="Run a drift report now and return it")
    def run_drift() -> Any:
        try:
            return monitor.run_once()
        except MonitorError as exc:
            return _not_ready(monitor, str(exc))

    @router.get("/drift.html", response_class=HTMLResponse, summary="Latest Evidently report")
    def latest_drift_html() -> Any:
        if monitor.latest_html is None:
            return _not_ready(monitor)
        return HTMLResponse(monitor.latest_html)

    return router
