"""HTTP routes: thin adapters from REST to the ``Predictor`` (REST contract in ARCHITECTURE.md)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from .errors import GatewayError, InvalidInput, PayloadTooLarge, UnsupportedMediaType
from .predictor import PredictionResult, Predictor, Selection
from .schemas import (
    ErrorBody,
    ModelInfo,
    ModelList,
    PredictRequest,
    PredictResponse,
    Readiness,
    VersionStatus,
)
from .settings import GatewaySettings

MAX_VERSION = 2**63 - 1
LABEL_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        400: "Malformed JSON or rejected by the model server",
        401: "Missing or invalid API key (when keys are configured)",
        404: "Unknown model, version or route",
        413: "Too many instances or too large a body",
        415: "Body is not application/json",
        422: "Invalid input; details name the instance index and field",
        429: "Model server overloaded (Retry-After)",
        503: "Model server unavailable (Retry-After)",
        504: "Model server timed out",
    }.items()
}

router = APIRouter()
ModelName = Annotated[str, Path(description="Model name from the routing table.")]
VersionQuery = Annotated[
    int | None, Query(ge=0, le=MAX_VERSION, description="Serve this exact version.")
]
LabelQuery = Annotated[
    str | None,
    Query(pattern=LABEL_PATTERN, description="Serve the version with this label, e.g. stable."),
]


def predictor_of(request: Request) -> Predictor:
    return request.app.state.predictor


def settings_of(request: Request) -> GatewaySettings:
    return request.app.state.settings


async def require_json(request: Request) -> None:
    """415 for a body that does not say it is JSON, before any parsing."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, got {content_type[:100]!r}"
        )


async def _predict(
    request: Request, model: str, body: PredictRequest, selection: Selection
) -> Response:
    settings = settings_of(request)
    count = len(body.instances)
    if count > settings.max_instances:
        raise PayloadTooLarge(
            f"{count} instances exceed the limit of {settings.max_instances} per request"
        )
    state = request.state
    state.model = model if model in settings.upstreams else "unknown"
    result: PredictionResult = await predictor_of(request).predict(
        model, body.instances, selection, state.request_id
    )
    state.version = result.version if result.version is not None else ""
    # The PredictResponse shape, written directly: validating values the gateway made itself
    # into one model per instance cost more than the rest of the answer.
    answer = {
        "predictions": [
            {"median_house_value": value, "out_of_range": flags}
            for value, flags in zip(result.values, result.out_of_range, strict=True)
        ],
        "model": {"name": result.model, "version": result.version},
    }
    return Response(json.dumps(answer, separators=(",", ":")), media_type="application/json")


def _selection(version: int | None, label: str | None) -> Selection:
    if version is not None and label is not None:
        raise InvalidInput("choose a version or a label, not both")
    return Selection(version=version, label=label)


PREDICT: dict[str, Any] = {
    "response_model": PredictResponse,
    "responses": ERRORS,
    "dependencies": [Depends(require_json)],
    "tags": ["predict"],
}


@router.post("/v1/models/{name}:predict", summary="Predict with a named model", **PREDICT)
async def predict_model(
    request: Request,
    name: ModelName,
    body: PredictRequest,
    version: VersionQuery = None,
    label: LabelQuery = None,
) -> Response:
    return await _predict(request, name, body, _selection(version, label))


@router.post(
    "/v1/models/{name}/versions/{version}:predict",
    summary="Predict with one version of a model",
    **PREDICT,
)
async def predict_version(
    request: Request,
    name: ModelName,
    version: Annotated[int, Path(ge=0, le=MAX_VERSION)],
    body: PredictRequest,
) -> Response:
    return await _predict(request, name, body, Selection(version=version))


@router.post(
    "/v1/models/{name}/labels/{label}:predict",
    summary="Predict with the version a label points to",
    **PREDICT,
)
async def predict_label(
    request: Request,
    name: ModelName,
    label: Annotated[str, Path(pattern=LABEL_PATTERN)],
    body: PredictRequest,
) -> Response:
    return await _predict(request, name, body, Selection(label=label))


@router.post("/v1/predict", summary="Predict with the default model", **PREDICT)
async def predict_default(
    request: Request,
    body: PredictRequest,
    version: VersionQuery = None,
    label: LabelQuery = None,
) -> Response:
    model = settings_of(request).default_model
    return await _predict(request, model, body, _selection(version, label))


async def _model_info(request: Request, name: str, tolerate: bool) -> ModelInfo:
    settings = settings_of(request)
    error = None
    versions = []
    try:
        versions = await predictor_of(request).model_status(name, request.state.request_id)
    except GatewayError as exc:
        if not tolerate:
            raise
        error = exc.message
    return ModelInfo(
        name=name,
        target=settings.upstreams[name],
        default=name == settings.default_model,
        versions=[VersionStatus(version=v.version, state=v.state, error=v.error) for v in versions],
        error=error,
    )


@router.get(
    "/v1/models", response_model=ModelList, responses=ERRORS, tags=["models"], summary="Models"
)
async def list_models(request: Request) -> ModelList:
    """Every routed model with its versions and their state (or why the upstream failed)."""
    names = sorted(settings_of(request).upstreams)
    return ModelList(models=[await _model_info(request, name, tolerate=True) for name in names])


@router.get(
    "/v1/models/{name}",
    response_model=ModelInfo,
    responses=ERRORS,
    tags=["models"],
    summary="Model",
)
async def get_model(request: Request, name: ModelName) -> ModelInfo:
    """One model's versions and their state, as its upstream reports them."""
    request.state.model = name if name in settings_of(request).upstreams else "unknown"
    return await _model_info(request, name, tolerate=False)


@router.get("/livez", tags=["health"], summary="Process is up")
async def livez() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Some routed model cannot serve"}},
    tags=["health"],
    summary="Every routed model is AVAILABLE upstream",
)
async def readyz(request: Request) -> JSONResponse:
    result = await predictor_of(request).readiness(request.state.request_id)
    body = Readiness(
        ready=result.ready, models=result.models, warnings=list(result.warnings)
    ).model_dump()
    if result.ready:
        return JSONResponse(body)
    settings = settings_of(request)
    return JSONResponse(
        body, status_code=503, headers={"Retry-After": str(settings.retry_after_seconds)}
    )


@router.get("/metrics", tags=["health"], summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics
    return Response(registry.render(), media_type=registry.content_type)
