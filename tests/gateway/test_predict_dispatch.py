"""The middleware's predict dispatch answers exactly as FastAPI's own routing would.

Each request goes to two apps over the same fake upstream: one as built (predictions
dispatched by ``PredictDispatch``), one with the dispatch switched off (FastAPI solves the
endpoint's arguments). Status, headers that matter and body (request id aside) must agree.
"""

from __future__ import annotations

import json

import pytest

from .conftest import INSTANCE

GOOD = json.dumps({"instances": [INSTANCE]}).encode()
JSON = {"content-type": "application/json"}


def body(**changes) -> bytes:
    return json.dumps({"instances": [{**INSTANCE, **changes}]}).encode()


CASES = [
    # (path with query, headers, body)
    ("/v1/models/housing_sklearn:predict", JSON, GOOD),
    ("/v1/predict", JSON, GOOD),
    ("/v1/predict?version=1", JSON, GOOD),
    ("/v1/predict?label=stable", JSON, GOOD),
    ("/v1/predict?version=1&label=stable", JSON, GOOD),
    ("/v1/predict?version=-1", JSON, GOOD),
    ("/v1/predict?version=abc", JSON, body(latitude=95.0)),
    ("/v1/predict?version=", JSON, GOOD),
    ("/v1/predict?label=bad%20label", JSON, GOOD),
    ("/v1/predict?version=1&version=x", JSON, GOOD),
    ("/v1/models/housing_keras/versions/1:predict", JSON, GOOD),
    ("/v1/models/housing_keras/versions/x:predict", JSON, body(population=-1)),
    ("/v1/models/housing_keras/versions/99999999999999999999:predict", JSON, GOOD),
    ("/v1/models/housing_sklearn/labels/stable:predict", JSON, GOOD),
    ("/v1/models/housing_sklearn/labels/no%20way:predict", JSON, GOOD),
    ("/v1/models/unknown:predict", JSON, GOOD),
    ("/v1/models/housing_sklearn:predict", {"content-type": "text/plain"}, GOOD),
    ("/v1/models/housing_sklearn:predict", {"content-type": "application/merge+json"}, GOOD),
    ("/v1/models/housing_sklearn:predict", JSON, b""),
    ("/v1/models/housing_sklearn:predict", JSON, b"{"),
    ("/v1/models/housing_sklearn:predict", JSON, b"[" * 50_000),
    ("/v1/models/housing_sklearn:predict", JSON, b"\xff\xfe\x00"),
    ("/v1/models/housing_sklearn:predict", JSON, b'{"instances": []}'),
    ("/v1/models/housing_sklearn:predict", JSON, b'{"instances": "x"}'),
    ("/v1/models/housing_sklearn:predict", JSON, b"[1, 2]"),
    ("/v1/models/housing_sklearn:predict", JSON, GOOD.replace(b"-122.23", b"NaN")),
    ("/v1/models/housing_sklearn:predict", JSON, GOOD.replace(b"-122.23", b"9" * 5000)),
    ("/v1/models/housing_sklearn:predict", JSON, body(ocean_proximity="MOON", color="red")),
    ("/v1/models/housing_sklearn:predict", JSON, b'{"instances": [{}], "extra": 1}'),
    ("/v1/models/housing_sklearn:predict", JSON, b'{"instances": [{}], "parameters": {"a": 1}}'),
]


def comparable(response) -> tuple:
    try:
        content = response.json()
    except ValueError:
        content = response.text
    if isinstance(content, dict):
        content.pop("request_id", None)
    headers = {k: response.headers.get(k) for k in ("content-type", "retry-after")}
    return response.status_code, headers, content


@pytest.mark.parametrize(("path", "headers", "data"), CASES, ids=range(len(CASES)))
async def test_dispatch_answers_as_fastapi_does(make_client, path, headers, data):
    dispatched, routed = make_client(), make_client()
    for entry in routed.app.user_middleware:
        if "dispatch" in entry.kwargs:
            entry.kwargs["dispatch"] = None
    async with dispatched as fast, routed as slow:
        answers = [await c.post(path, content=data, headers=headers) for c in (fast, slow)]
    assert comparable(answers[0]) == comparable(answers[1])
    assert answers[0].status_code < 500


async def test_the_dispatch_serves_predictions(make_client, upstream):
    """Not vacuous: with the dispatch on, FastAPI's endpoint solving is not what answered."""
    client = make_client()
    (entry,) = [m for m in client.app.user_middleware if "dispatch" in m.kwargs]
    dispatch = entry.kwargs["dispatch"]
    served = []
    original = dispatch.serve

    async def counting(*args, **kwargs):
        served.append(args[0][0].route.path)
        await original(*args, **kwargs)

    dispatch.serve = counting
    async with client as c:
        response = await c.post("/v1/models/housing_keras:predict", content=GOOD, headers=JSON)
        assert response.status_code == 200
        assert (await c.get("/v1/models")).status_code == 200  # not a prediction: FastAPI
    assert served == ["/v1/models/{name}:predict"]
