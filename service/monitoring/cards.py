"""``GET /v1/models/{name}/card``: the model card of the version the servers serve.

Cards are files written by ``housing model-card`` (and at training time) into
``<models_dir>/<name>/<version>/card/``; this route only reads them. Without ``?version``
the version is the repository's default (the ``stable`` label, else the highest served
one), the same answer the model server gives, and ``X-Model-Version`` says which it was.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response

from training.repository import CARD_DIR, ModelRepository, RepositoryError

MAX_VERSION = 2**63 - 1
MEDIA_TYPES = {
    "html": ("card.html", "text/html; charset=utf-8"),
    "md": ("card.md", "text/markdown; charset=utf-8"),
    "json": ("card.json", "application/json"),
}


def _not_found(detail: str) -> JSONResponse:
    return JSONResponse(status_code=404, content={"detail": detail})


def card_router(models_dir: Path, model_names: Iterable[str]) -> APIRouter:
    """An APIRouter serving the cards of ``model_names`` (the gateway's routed models)."""
    router = APIRouter(tags=["models"])
    known = frozenset(model_names)

    @router.get(
        "/v1/models/{name}/card",
        summary="Model card of the served version (HTML, Markdown or JSON)",
        response_class=HTMLResponse,
        responses={404: {"description": "unknown model or version, or no card written yet"}},
    )
    def model_card(
        name: str,
        version: Annotated[
            int | None, Query(ge=1, le=MAX_VERSION, description="this version's card")
        ] = None,
        format: Annotated[  # noqa: A002 (the query parameter's public name)
            Literal["html", "md", "json"], Query(description="html (default), md or json")
        ] = "html",
    ) -> Response:
        if name not in known:
            return _not_found(f"unknown model {name!r}; models: {', '.join(sorted(known))}")
        repository = ModelRepository(models_dir)
        versions = repository.versions(name)
        if version is None:
            try:
                version = repository.default_version(name)
            except RepositoryError as exc:
                return _not_found(str(exc))
            if version is None:
                return _not_found(f"{name} has no served version in the model repository")
        elif version not in versions:
            return _not_found(f"{name} has no version {version}; versions: {versions}")
        filename, media_type = MEDIA_TYPES[format]
        path = repository.version_dir(name, version) / CARD_DIR / filename
        if not path.is_file():
            return _not_found(
                f"no model card for {name} version {version} yet: "
                f"run `housing model-card {name}:{version}`"
            )
        return Response(
            path.read_bytes(), media_type=media_type, headers={"X-Model-Version": str(version)}
        )

    return router
