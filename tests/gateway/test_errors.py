"""The gRPC -> HTTP table, row by row, through a real upstream; retries and deadlines."""

from __future__ import annotations

import grpc
import pytest

from core.process import free_port
from service.gateway.errors import GRPC_TO_HTTP

from .conftest import INSTANCE

BODY = {"instances": [INSTANCE]}


def test_every_grpc_error_code_has_a_row_and_none_is_500():
    codes = {c for c in grpc.StatusCode if c is not grpc.StatusCode.OK}
    assert set(GRPC_TO_HTTP) == codes
    assert all(m.status != 500 for m in GRPC_TO_HTTP.values())


@pytest.mark.parametrize("code", [c for c in grpc.StatusCode if c is not grpc.StatusCode.OK])
async def test_each_upstream_code_maps_through_the_table(client, behaviour, code):
    behaviour.predict_error = (code, f"fake {code.name}")
    r = await client.post("/v1/predict", json=BODY)
    row = GRPC_TO_HTTP[code]
    assert r.status_code == row.status, r.text
    body = r.json()
    assert body["error"] == row.code
    assert code.name in body["message"] and f"fake {code.name}" in body["message"]
    assert ("retry-after" in r.headers) == row.retry_after


@pytest.mark.parametrize(
    ("code", "details", "status"),
    [
        (grpc.StatusCode.NOT_FOUND, "Servable not found", 404),
        (grpc.StatusCode.INVALID_ARGUMENT, "bad tensor", 400),
        (grpc.StatusCode.UNAVAILABLE, "down", 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "slow", 504),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full", 429),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "Received message larger than max (5 vs. 4)", 413),
    ],
)
async def test_required_rows(client, behaviour, code, details, status):
    behaviour.predict_error = (code, details)
    r = await client.post("/v1/predict", json=BODY)
    assert r.status_code == status
    if status in (503, 429):
        assert r.headers["retry-after"] == "1"


async def test_unavailable_is_retried_then_served(client, behaviour):
    behaviour.fail_unavailable = 2
    r = await client.post("/v1/predict", json=BODY)
    assert r.status_code == 200
    assert len([c for c in behaviour.calls if c.method == "Predict"]) == 3


async def test_unavailable_beyond_the_retries_is_503(make_client, behaviour):
    behaviour.fail_unavailable = 5
    async with make_client(retries=1) as client:
        r = await client.post("/v1/predict", json=BODY)
    assert r.status_code == 503
    assert len([c for c in behaviour.calls if c.method == "Predict"]) == 2


async def test_other_codes_are_not_retried(client, behaviour):
    behaviour.predict_error = (grpc.StatusCode.INTERNAL, "boom")
    r = await client.post("/v1/predict", json=BODY)
    assert r.status_code == 502
    assert len([c for c in behaviour.calls if c.method == "Predict"]) == 1


async def test_slow_upstream_hits_the_deadline_504(make_client, behaviour):
    behaviour.delay = 1.0
    async with make_client(deadline_seconds=0.2) as client:
        r = await client.post("/v1/predict", json=BODY)
    assert r.status_code == 504
    assert r.json()["error"] == "upstream_timeout"


async def test_unreachable_upstream_is_503_with_retry_after(make_client, behaviour):
    dead = f"127.0.0.1:{free_port()}"
    async with make_client(upstreams={"housing_sklearn": dead}, retries=1) as client:
        r = await client.post("/v1/predict", json=BODY)
        assert r.status_code == 503
        assert r.headers["retry-after"] == "1"
        ready = await client.get("/readyz")
        assert ready.status_code == 503


async def test_upstream_answer_without_the_output_is_502(client, behaviour):
    behaviour.output_name = "something_else"
    r = await client.post("/v1/predict", json=BODY)
    assert r.status_code == 502
    assert r.json()["error"] == "bad_upstream_response"


async def test_error_bodies_carry_the_request_id(client, behaviour):
    behaviour.predict_error = (grpc.StatusCode.UNAVAILABLE, "down")
    r = await client.post("/v1/predict", json=BODY, headers={"x-request-id": "trace-1"})
    assert r.json()["request_id"] == "trace-1" == r.headers["x-request-id"]


async def test_non_finite_model_output_is_a_4xx_naming_the_instances(client, behaviour):
    behaviour.output_value = float("nan")
    r = await client.post("/v1/predict", json={"instances": [INSTANCE, INSTANCE]})
    assert r.status_code == 422
    assert "instances[0], instances[1]" in r.json()["message"]
