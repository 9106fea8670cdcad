"""The gRPC -> HTTP table, row by row, through a real upstream; retries, deadlines, loading."""

from __future__ import annotations

import logging

import grpc
import pytest

from core.process import free_port
from service.gateway.errors import GRPC_TO_HTTP
from tests.fake_upstream import LOADING

from .conftest import INSTANCE

BODY = {"instances": [INSTANCE]}
# An explicit version: no label fallback, so each code reaches the table as sent.
VERSION_URL = "/v1/models/housing_sklearn/versions/2:predict"


def test_every_grpc_error_code_has_a_row_and_none_is_500():
    codes = {c for c in grpc.StatusCode if c is not grpc.StatusCode.OK}
    assert set(GRPC_TO_HTTP) == codes
    assert all(m.status != 500 for m in GRPC_TO_HTTP.values())


@pytest.mark.parametrize("code", [c for c in grpc.StatusCode if c is not grpc.StatusCode.OK])
async def test_each_upstream_code_maps_through_the_table(client, behaviour, upstream, code):
    behaviour.predict_error = (code, f"secret detail {code.name}")
    r = await client.post(VERSION_URL, json=BODY)
    row = GRPC_TO_HTTP[code]
    assert r.status_code == row.status, r.text
    body = r.json()
    assert (body["error"], body["message"]) == (row.code, row.message)
    assert ("retry-after" in r.headers) == row.retry_after


@pytest.mark.parametrize("code", [c for c in grpc.StatusCode if c is not grpc.StatusCode.OK])
async def test_no_upstream_address_or_text_reaches_clients(
    client, behaviour, upstream, code, caplog
):
    caplog.set_level(logging.INFO, logger="service.gateway")  # refusals log at info
    behaviour.predict_error = (code, f"secret detail {code.name}")
    behaviour.status_error = (code, f"secret detail {code.name}")
    port = upstream.target.rsplit(":", 1)[1]
    headers = {"x-request-id": f"leak-{code.value[0]}"}
    for r in (
        await client.post("/v1/predict", json=BODY, headers=headers),
        await client.post(VERSION_URL, json=BODY, headers=headers),
        await client.get("/readyz", headers=headers),
    ):
        assert "secret" not in r.text and port not in r.text, r.text
    # ... the details are in the log, under the request id
    logged = [
        rec for rec in caplog.records if getattr(rec, "request_id", "") == headers["x-request-id"]
    ]
    assert any(getattr(rec, "details", "") == f"secret detail {code.name}" for rec in logged)
    assert any(getattr(rec, "target", "") == upstream.target for rec in logged)


@pytest.mark.parametrize(
    ("code", "details", "status"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, "bad tensor", 400),
        (grpc.StatusCode.UNAVAILABLE, "down", 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "slow", 504),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full", 429),
    ],
)
async def test_required_rows(client, behaviour, code, details, status):
    behaviour.predict_error = (code, details)
    r = await client.post("/v1/predict", json=BODY)
    assert r.status_code == status
    if status in (503, 429):
        assert r.headers["retry-after"] == "1"


async def test_a_version_the_server_does_not_know_is_404(client, behaviour):
    r = await client.post("/v1/models/housing_sklearn/versions/9:predict", json=BODY)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert "retry-after" not in r.headers


@pytest.mark.parametrize("state", ["START", "LOADING"])
async def test_a_version_still_loading_is_503_with_retry_after(client, behaviour, state):
    from core.tfserving_protos.tensorflow_serving.apis import get_model_status_pb2

    # The fake serves only AVAILABLE versions; status reports version 3 as loading.
    behaviour.models["housing_sklearn"][3] = get_model_status_pb2.ModelVersionStatus.State.Value(
        state
    )
    behaviour.predict_error = (grpc.StatusCode.NOT_FOUND, "Servable not found: Specific(m, 3)")
    r = await client.post("/v1/models/housing_sklearn/versions/3:predict", json=BODY)
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "model_loading"
    assert r.headers["retry-after"] == "1"


async def test_a_label_pointing_at_an_unloaded_version_is_503_not_404(client, behaviour):
    behaviour.labels["housing_sklearn"]["stable"] = 3
    behaviour.models["housing_sklearn"][3] = LOADING
    behaviour.predict_error = (grpc.StatusCode.NOT_FOUND, "Servable not found: Specific(m, 3)")
    for url in ("/v1/predict", "/v1/models/housing_sklearn/labels/stable:predict"):
        r = await client.post(url, json=BODY)
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "model_loading" and r.headers["retry-after"] == "1"


async def test_a_model_without_labels_falls_back_to_the_servers_policy(client, behaviour):
    behaviour.labels["housing_sklearn"] = {}
    r = await client.post("/v1/predict", json=BODY)
    assert r.status_code == 200 and r.json()["model"]["version"] == 2
    asked = [(c.label, c.version) for c in behaviour.calls if c.method == "Predict"]
    assert asked == [("stable", None), (None, None)]
    await client.post("/v1/predict", json=BODY)  # remembered: straight to the policy
    asked = [(c.label, c.version) for c in behaviour.calls if c.method == "Predict"]
    assert asked[2:] == [(None, None)]


async def test_a_missing_canary_falls_back_to_stable_not_the_latest(make_client, behaviour):
    behaviour.labels["housing_sklearn"] = {"stable": 1}
    async with make_client(canary_percent=100) as client:
        r = await client.post("/v1/predict", json=BODY)
    assert r.status_code == 200 and r.json()["model"]["version"] == 1
    asked = [c.label for c in behaviour.calls if c.method == "Predict"]
    assert asked == ["canary", "stable"]


async def test_one_deadline_bounds_fallback_and_retries(make_client, behaviour):
    """Each attempt could take the whole deadline; together they still end within one."""
    behaviour.labels["housing_sklearn"] = {}
    behaviour.delay = 0.4
    async with make_client(deadline_seconds=0.6) as client:
        r = await client.post("/v1/predict", json=BODY)
    assert r.status_code == 504
    asked = [c.label for c in behaviour.calls if c.method == "Predict"]
    assert asked == ["stable", None]  # the fallback ran on what was left, then the budget ended


@pytest.mark.parametrize(
    ("upstream_does", "settings", "status", "attempts"),
    [
        ({"fail_unavailable": 2}, {}, 200, 3),
        ({"fail_unavailable": 5}, {"retries": 1}, 503, 2),
        ({"predict_error": (grpc.StatusCode.INTERNAL, "boom")}, {}, 502, 1),
    ],
    ids=["unavailable_is_retried_then_served", "unavailable_beyond_the_retries_is_503",
         "other_codes_are_not_retried"],
)  # fmt: skip
async def test_retries(make_client, behaviour, upstream_does, settings, status, attempts):
    for name, value in upstream_does.items():
        setattr(behaviour, name, value)
    async with make_client(**settings) as client:
        r = await client.post("/v1/predict", json=BODY)
    assert r.status_code == status
    assert len([c for c in behaviour.calls if c.method == "Predict"]) == attempts


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


@pytest.mark.parametrize(
    ("code", "level"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, logging.INFO),  # refused: the client's (or a label)
        (grpc.StatusCode.INTERNAL, logging.WARNING),  # the server failed: the operator's
    ],
)
async def test_upstream_failures_log_at_the_level_of_whose_problem_it_is(
    client, behaviour, code, level, caplog
):
    caplog.set_level(logging.INFO, logger="service.gateway")
    behaviour.predict_error = (code, "detail")
    headers = {"x-request-id": f"level-{code.value[0]}"}
    await client.post(VERSION_URL, json=BODY, headers=headers)
    levels = {
        rec.levelno
        for rec in caplog.records
        if rec.getMessage() == "upstream call failed" and rec.request_id == headers["x-request-id"]
    }
    assert levels == {level}
