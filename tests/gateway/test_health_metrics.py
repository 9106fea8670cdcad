"""Readiness from GetModelStatus, and the Prometheus metrics."""

from __future__ import annotations

import sqlite3

import grpc

from service.prediction_log import connect
from tests.fake_upstream import AVAILABLE, LOADING

from .conftest import INSTANCE


async def test_ready_when_every_routed_model_is_available(client, behaviour):
    r = await client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {
        "ready": True,
        "models": {"housing_keras": "AVAILABLE", "housing_sklearn": "AVAILABLE"},
        "warnings": [],
    }


async def test_readyz_warns_while_the_prediction_log_cannot_write(make_client, behaviour, tmp_path):
    path = tmp_path / "log.sqlite3"
    async with make_client(prediction_log_path=str(path)) as client:
        outsider = sqlite3.connect(str(path))
        outsider.execute("DROP TABLE predictions")  # every write fails from now on
        outsider.commit()
        r = await client.post("/v1/predict", json={"instances": [INSTANCE] * 2})
        assert r.status_code == 200  # predictions still answer
        r = await client.get("/readyz")
        assert r.status_code == 200  # the model can serve: still ready
        [warning] = r.json()["warnings"]
        assert "prediction log writes are failing" in warning and "2 records lost" in warning
        assert str(tmp_path) not in warning  # no internals in an open endpoint
        text = (await client.get("/metrics")).text
        assert sample(text, "housing_gateway_prediction_log_failures_total") == 2
        # the file is writable again: the next write succeeds and the warning goes
        connect(path).close()
        assert (await client.post("/v1/predict", json={"instances": [INSTANCE]})).status_code == 200
        assert (await client.get("/readyz")).json()["warnings"] == []


async def test_not_ready_while_a_model_is_loading(client, behaviour):
    behaviour.models["housing_keras"] = {1: LOADING}
    r = await client.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["ready"] is False
    assert body["models"]["housing_sklearn"] == "AVAILABLE"
    assert "v1 LOADING" in body["models"]["housing_keras"]


async def test_not_ready_when_a_model_is_missing_upstream(client, behaviour):
    del behaviour.models["housing_keras"]
    r = await client.get("/readyz")
    assert r.status_code == 503
    assert (
        r.json()["models"]["housing_keras"]
        == "the model server does not serve that model or version"
    )


async def test_not_ready_when_the_upstream_fails(client, behaviour):
    behaviour.status_error = (grpc.StatusCode.UNAVAILABLE, "no")
    r = await client.get("/readyz")
    assert r.status_code == 503 and r.headers["retry-after"]


async def test_readiness_is_cached_briefly(make_client, behaviour):
    async with make_client(ready_cache_seconds=30) as client:
        assert (await client.get("/readyz")).status_code == 200
        behaviour.models["housing_keras"] = {1: LOADING}
        assert (await client.get("/readyz")).status_code == 200  # cached
    status_calls = [c for c in behaviour.calls if c.method == "GetModelStatus"]
    assert len(status_calls) == 2  # one per model, once
    behaviour.models["housing_keras"] = {1: AVAILABLE}


def sample(text: str, name: str, **labels) -> float | None:
    for line in text.splitlines():
        named = line.startswith(name + "{") or line.startswith(name + " ")
        if named and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_request_metrics_by_route_template_model_version_code(client, behaviour):
    for _ in range(3):
        await client.post(
            "/v1/models/housing_keras:predict", json={"instances": [INSTANCE, INSTANCE]}
        )
    await client.post("/v1/models/nope:predict", json={"instances": [INSTANCE]})
    await client.post("/v1/predict", content=b"{", headers={"content-type": "application/json"})
    await client.get("/livez")
    await client.get("/readyz")
    text = (await client.get("/metrics")).text
    route = "/v1/models/{name}:predict"
    assert (
        sample(
            text,
            "housing_gateway_requests_total",
            route=route,
            model="housing_keras",
            version="1",
            code="200",
        )
        == 3
    )
    assert (
        sample(text, "housing_gateway_requests_total", route=route, model="unknown", code="404")
        == 1
    )
    assert sample(text, "housing_gateway_requests_total", route="/v1/predict", code="400") == 1
    assert (
        sample(text, "housing_gateway_request_duration_seconds_count", route=route, code="200") == 3
    )
    assert sample(text, "housing_gateway_instances_total", model="housing_keras", version="1") == 6
    assert (
        sample(
            text, "housing_gateway_predicted_value_usd_count", model="housing_keras", version="1"
        )
        == 6
    )
    assert (
        sample(
            text,
            "housing_gateway_upstream_duration_seconds_count",
            model="housing_keras",
            method="Predict",
            code="OK",
        )
        == 3
    )
    assert sample(text, "housing_gateway_in_flight_requests") == 0
    assert sample(text, "housing_gateway_prediction_log_failures_total") == 0
    # health, metrics and raw paths never become labels
    for excluded in ("/livez", "/readyz", "/metrics", "nope"):
        assert f'route="{excluded}"' not in text and f'model="{excluded}"' not in text


async def test_each_app_has_its_own_registry(make_client, behaviour):
    async with make_client() as one, make_client() as two:
        await one.post("/v1/predict", json={"instances": [INSTANCE]})
        text = (await two.get("/metrics")).text
    assert sample(text, "housing_gateway_requests_total", route="/v1/predict") is None
