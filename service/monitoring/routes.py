"""REST endpoints of the drift monitor, as a router the gateway includes.

``app.include_router(drift_router(monitor))`` adds, each taking ``?model=NAME`` (default:
the first watched model, the gateway's default):

- ``GET  /v1/monitoring/drift``        the latest drift.json (503 + Retry-After before the
  first report, with the reason: no traffic yet, too few rows, no reference);
- ``POST /v1/monitoring/drift:run``    run a report now, over ``?since=&until=`` (Unix
  seconds; default: the last window) and return it; 409 while another run is going on,
  503 with the reason when there is too little data;
- ``GET  /v1/monitoring/drift.html``   the latest Evidently HTML report;
- ``GET  /v1/monitoring/drift/history``             the newest reports, summarised;
- ``GET  /v1/monitoring/drift/history/{id}``        one kept report (``?format=html``).

With API keys configured every route needs one (the gateway's middleware).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, JSONResponse

from service.monitoring.monitor import DriftMonitor, MonitorBusy, MonitorError

RETRY_AFTER_SECONDS = "30"
MAX_HISTORY = 500
# Unix seconds between 2001 and 2286: a typo (milliseconds, a negative) is a 422.
Timestamp = Annotated[float | None, Query(ge=1e9, le=1e10, description="Unix seconds")]
ModelQuery = Annotated[
    str | None, Query(description="a watched model (default: the gateway's default model)")
]


def _answer(status: int, monitor: DriftMonitor, model: str, detail: str) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={"detail": detail, "monitor": monitor.status(model)},
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


def _not_ready(monitor: DriftMonitor, model: str, reason: str | None = None) -> JSONResponse:
    detail = (
        reason
        or monitor.last_error.get(model)
        or f"no drift report for {model} yet: the first run has not finished"
    )
    return _answer(503, monitor, model, detail)


def drift_router(monitor: DriftMonitor) -> APIRouter:
    """An APIRouter serving ``monitor``'s reports; include it in the gateway app."""
    router = APIRouter(prefix="/v1/monitoring", tags=["monitoring"])
    watched = monitor.models

    def resolve(model: str | None) -> str | JSONResponse:
        name = model or watched[0]
        if name not in watched:
            return JSONResponse(
                status_code=404,
                content={"detail": f"model {name!r} is not watched; models: {watched}"},
            )
        return name

    @router.get("/drift", summary="Latest data drift report (drift.json)")
    def latest_drift(model: ModelQuery = None) -> Any:
        name = resolve(model)
        if isinstance(name, JSONResponse):
            return name
        report = monitor.latest(name)
        return _not_ready(monitor, name) if report is None else report

    # Sync handler: FastAPI runs it in its thread pool, so the Evidently run (seconds of
    # CPU) does not block the event loop.
    @router.post("/drift:run", summary="Run a drift report now over a window and return it")
    def run_drift(
        model: ModelQuery = None, since: Timestamp = None, until: Timestamp = None
    ) -> Any:
        name = resolve(model)
        if isinstance(name, JSONResponse):
            return name
        if since is not None and until is not None and since >= until:
            return JSONResponse(status_code=422, content={"detail": "since must be before until"})
        try:
            return monitor.run_once(name, since=since, until=until)
        except MonitorBusy as exc:
            return _answer(409, monitor, name, str(exc))
        except MonitorError as exc:
            return _not_ready(monitor, name, str(exc))

    @router.get("/drift.html", response_class=HTMLResponse, summary="Latest Evidently report")
    def latest_drift_html(model: ModelQuery = None) -> Any:
        name = resolve(model)
        if isinstance(name, JSONResponse):
            return name
        page = monitor.latest_html(name)
        return _not_ready(monitor, name) if page is None else HTMLResponse(page)

    @router.get("/drift/history", summary="Kept drift reports, newest first")
    def drift_history(
        model: ModelQuery = None, limit: Annotated[int, Query(ge=1, le=MAX_HISTORY)] = 50
    ) -> Any:
        name = resolve(model)
        if isinstance(name, JSONResponse):
            return name
        return {"model": name, "reports": monitor.history.listing(name, limit)}

    @router.get("/drift/history/{report_id}", summary="One kept drift report (JSON or HTML)")
    def drift_report(
        report_id: str,
        model: ModelQuery = None,
        format: Literal["json", "html"] = "json",  # noqa: A002 (the query parameter's name)
    ) -> Any:
        name = resolve(model)
        if isinstance(name, JSONResponse):
            return name
        path = monitor.history.path(name, report_id, format)
        if path is None:
            return JSONResponse(
                status_code=404, content={"detail": f"no drift report {report_id!r} for {name}"}
            )
        if format == "html":
            return HTMLResponse(path.read_text())
        return JSONResponse(content=monitor.history.read(name, report_id))

    return router
