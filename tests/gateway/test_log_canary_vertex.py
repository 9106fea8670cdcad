"""Prediction log, canary split, Vertex AI contract, drift router."""

from __future__ import annotations

import asyncio
import sqlite3

import grpc

from service.gateway.predictor import canary_bucket
from service.gateway.settings import GatewaySettings
from service.prediction_log import read_window
from tests.fake_upstream import AVAILABLE

from .conftest import INSTANCE


async def test_served_predictions_are_in_the_log_when_acknowledged(
    make_client, behaviour, tmp_path
):
    path = tmp_path / "log.sqlite3"
    async with make_client(prediction_log_path=str(path)) as client:
        rows = [INSTANCE, {**INSTANCE, "total_bedrooms": None, "median_income": 2.5}]
        r = await client.post(
            "/v1/predict", json={"instances": rows}, headers={"x-request-id": "log-1"}
        )
        assert r.status_code == 200
        # acknowledged means committed: readable by another connection before shutdown
        frame = read_window(path)
    assert list(frame["request_id"]) == ["log-1", "log-1"]
    assert list(frame["model"]) == ["housing_sklearn"] * 2
    assert list(frame["version"]) == [2, 2]
    assert frame["median_income"].tolist() == [8.3252, 2.5]
    assert frame["total_bedrooms"].isna().tolist() == [False, True]
    assert frame["prediction"].tolist() == [
        p["median_house_value"] for p in r.json()["predictions"]
    ]


async def test_failed_predictions_are_not_logged(make_client, behaviour, tmp_path):
    path = tmp_path / "log.sqlite3"
    behaviour.predict_error = (grpc.StatusCode.UNAVAILABLE, "down")
    async with make_client(prediction_log_path=str(path), retries=0) as client:
        assert (await client.post("/v1/predict", json={"instances": [INSTANCE]})).status_code == 503
    assert len(read_window(path)) == 0


async def test_log_write_failures_are_counted_not_hidden(make_client, behaviour, tmp_path):
    path = tmp_path / "log.sqlite3"
    counted = "housing_gateway_prediction_log_failures_total 3.0"
    async with make_client(prediction_log_path=str(path)) as client:
        # From another connection, waiting for the log's writer thread: every later commit fails.
        blocker = sqlite3.connect(str(path), timeout=10)
        blocker.execute("DROP TABLE predictions")
        blocker.commit()
        blocker.close()
        r = await client.post("/v1/predict", json={"instances": [INSTANCE] * 3})
        assert r.status_code == 200  # the answer is right; the lost records are counted
        text = ""
        for _ in range(50):  # the writer thread counts the failure as it reports it
            text = (await client.get("/metrics")).text
            if counted in text:
                break
            await asyncio.sleep(0.1)
    assert counted in text


async def test_log_can_be_disabled(make_client, behaviour, tmp_path):
    async with make_client(prediction_log_path="") as client:
        assert client._transport.app.state.predictor.prediction_log is None
        assert (await client.post("/v1/predict", json={"instances": [INSTANCE]})).status_code == 200
        # no log, no drift monitor routes
        assert (await client.get("/v1/monitoring/drift")).status_code == 404


def test_canary_bucket_is_sticky_and_uniform():
    assert canary_bucket("abc") == canary_bucket("abc")
    buckets = [canary_bucket(f"req-{i}") for i in range(20_000)]
    share = sum(b < 10 for b in buckets) / len(buckets)
    assert 0.09 < share < 0.11


async def served_versions(client, prefix: str, requests: int) -> list[int]:
    """One prediction per request id ``{prefix}-{i}``; the version that answered each."""
    versions = []
    for i in range(requests):
        r = await client.post(
            "/v1/predict", json={"instances": [INSTANCE]}, headers={"x-request-id": f"{prefix}-{i}"}
        )
        assert r.status_code == 200, r.text
        versions.append(r.json()["model"]["version"])
    return versions


async def test_canary_split_sends_about_the_configured_share(make_client, behaviour):
    behaviour.labels["housing_sklearn"] = {"stable": 1, "canary": 2}
    n = 400
    async with make_client(canary_percent=25) as client:
        versions = await served_versions(client, "c", n)
        again = await served_versions(client, "c", 1)
        text = (await client.get("/metrics")).text
    share = versions.count(2) / n
    assert 0.20 < share < 0.30, share
    assert again == versions[:1]  # sticky by request id
    labels = [c.label for c in behaviour.calls if c.method == "Predict"]
    assert set(labels) == {"stable", "canary"}
    # metrics show both versions serving
    assert 'route="/v1/predict",version="2"' in text.replace('code="200",', "").replace(
        'model="housing_sklearn",', ""
    )
    assert 'housing_gateway_canary_routing_total{label="canary",model="housing_sklearn"}' in text


async def test_canary_falls_back_when_the_model_has_no_labels(make_client, behaviour):
    behaviour.labels["housing_sklearn"] = {}
    async with make_client(canary_percent=50) as client:
        assert await served_versions(client, "f", 4) == [2] * 4
    labels = [c.label for c in behaviour.calls if c.method == "Predict"]
    first = labels[: labels.index(None) + 1]
    assert first in (["stable", None], ["canary", "stable", None])
    assert labels[len(first) :] == [None] * 3  # remembered: no more label attempts


async def test_canary_share_goes_to_stable_when_there_is_no_canary_label(make_client, behaviour):
    """Never to the highest version (here 2, an unpromoted candidate)."""
    behaviour.labels["housing_sklearn"] = {"stable": 1}
    async with make_client(canary_percent=50) as client:
        assert await served_versions(client, "s", 20) == [1] * 20
    labels = [c.label for c in behaviour.calls if c.method == "Predict"]
    assert set(labels) == {"stable", "canary"} and labels.count("canary") == 1


async def test_explicit_version_bypasses_the_canary(make_client, behaviour):
    behaviour.labels["housing_sklearn"] = {"stable": 1, "canary": 2}
    async with make_client(canary_percent=100) as client:
        r = await client.post("/v1/predict?version=1", json={"instances": [INSTANCE]})
    assert r.json()["model"]["version"] == 1
    assert behaviour.calls[-1].label is None


def test_vertex_env_contract(monkeypatch, upstream):
    monkeypatch.setenv("AIP_HTTP_PORT", "8080")
    monkeypatch.setenv("AIP_PREDICT_ROUTE", "/v1/endpoints/1/deployedModels/2:predict")
    monkeypatch.setenv("AIP_HEALTH_ROUTE", "/health")
    monkeypatch.setenv("HOUSING_PORT", "9000")
    settings = GatewaySettings(_env_file=None)
    assert settings.listen_port == 8080
    assert settings.aip_predict_route == "/v1/endpoints/1/deployedModels/2:predict"


async def test_vertex_routes_serve_the_contract(make_client, behaviour):
    async with make_client(
        aip_predict_route="/vertex/predict", aip_health_route="/vertex/health", api_keys=["k"]
    ) as client:
        r = await client.post(
            "/vertex/predict",
            json={"instances": [INSTANCE], "parameters": {"anything": 1}},
            headers={"x-api-key": "k"},
        )
        assert r.status_code == 200
        assert r.json()["predictions"][0]["median_house_value"] > 0
        assert (await client.get("/vertex/health")).status_code == 200  # open, like /readyz
        behaviour.models["housing_sklearn"] = {1: 20}
        assert (await client.get("/vertex/health")).status_code == 503


async def test_drift_router_is_included(client):
    r = await client.get("/v1/monitoring/drift")
    assert r.status_code == 503  # no report yet: the monitor says why
    assert r.headers["retry-after"]


async def test_one_request_re_asks_for_a_missing_label(make_client, behaviour, monkeypatch):
    """When the memory of a missing label expires, one request probes it again; the others
    in flight keep to the fallback (no burst of failing calls and warnings every TTL), and
    once the label exists a probe finds it and default traffic follows it."""
    from service.gateway import predictor

    behaviour.labels["housing_sklearn"] = {}
    behaviour.models["housing_keras"] = {1: AVAILABLE, 2: AVAILABLE}
    behaviour.labels["housing_keras"] = {}
    keras = "/v1/models/housing_keras:predict"
    body = {"instances": [INSTANCE]}
    async with make_client() as client:
        monkeypatch.setattr(predictor, "LABELS_MISSING_TTL", 0.0)  # remembered, expired at once
        assert (await client.post("/v1/predict", json=body)).status_code == 200
        assert (await client.post(keras, json=body)).json()["model"]["version"] == 2
        monkeypatch.setattr(predictor, "LABELS_MISSING_TTL", 60.0)
        behaviour.calls.clear()
        burst = [client.post("/v1/predict", json=body) for _ in range(12)]
        assert all(r.status_code == 200 for r in await asyncio.gather(*burst))
        labels = [c.label for c in behaviour.calls if c.method == "Predict"]
        assert labels.count("stable") == 1 and labels.count(None) == 12, labels

        monkeypatch.setattr(predictor, "LABELS_MISSING_TTL", 0.0)
        behaviour.labels["housing_keras"] = {"stable": 1}  # promoted meanwhile
        behaviour.calls.clear()
        versions = [(await client.post(keras, json=body)).json()["model"]["version"] for _ in "abc"]
        assert versions == [1, 1, 1]
        assert [c.label for c in behaviour.calls if c.method == "Predict"] == ["stable"] * 3
