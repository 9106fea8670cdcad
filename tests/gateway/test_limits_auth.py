"""Body and instance limits (413), the concurrency cap (503), API keys (401), CORS."""

from __future__ import annotations

import asyncio
import json

import pytest

from .conftest import INSTANCE


async def test_too_many_instances_is_413(make_client, behaviour):
    async with make_client(max_instances=3) as client:
        r = await client.post("/v1/predict", json={"instances": [INSTANCE] * 4})
        assert r.status_code == 413
        assert "4 instances exceed the limit of 3" in r.json()["message"]
        assert (
            await client.post("/v1/predict", json={"instances": [INSTANCE] * 3})
        ).status_code == 200


async def test_oversize_body_is_413_before_parsing(make_client, behaviour):
    async with make_client(max_body_bytes=2048) as client:
        body = json.dumps({"instances": [INSTANCE] * 20}).encode()
        assert len(body) > 2048
        r = await client.post(
            "/v1/predict", content=body, headers={"content-type": "application/json"}
        )
        assert r.status_code == 413
        assert "exceeds the limit of 2048 bytes" in r.json()["message"]
        # not even valid JSON: the size check comes first
        r = await client.post(
            "/v1/predict", content=b"x" * 5000, headers={"content-type": "application/json"}
        )
        assert r.status_code == 413


async def test_streamed_body_without_length_is_cut_at_the_limit(make_client, behaviour):
    async def chunks():
        for _ in range(10):
            yield b" " * 1000

    async with make_client(max_body_bytes=4096) as client:
        r = await client.post(
            "/v1/predict", content=chunks(), headers={"content-type": "application/json"}
        )
    assert r.status_code == 413


async def test_bad_content_length_is_400(client):
    r = await client.post(
        "/v1/predict",
        content=b"{}",
        headers={"content-type": "application/json", "content-length": "-1"},
    )
    assert r.status_code == 400


KEYS = ["s3cret-one", "s3cret-two"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": "Basic czNjcmV0LW9uZQ=="}, 401),
        ({"X-API-Key": "s3cret-on"}, 401),
        ({"Authorization": "Bearer s3cret-one"}, 200),
        ({"Authorization": "bearer s3cret-two"}, 200),
        ({"X-API-Key": "s3cret-two"}, 200),
    ],
)
async def test_api_keys(make_client, behaviour, headers, status):
    async with make_client(api_keys=KEYS) as client:
        r = await client.post("/v1/predict", json={"instances": [INSTANCE]}, headers=headers)
        assert r.status_code == status
        if status == 401:
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert r.json()["error"] == "unauthorized"
            assert not behaviour.calls


async def test_auth_covers_everything_but_health(make_client, behaviour):
    async with make_client(api_keys=KEYS) as client:
        for path in ["/v1/models", "/v1/models/housing_sklearn", "/metrics"]:
            assert (await client.get(path)).status_code == 401, path
        for path in ["/livez", "/readyz"]:
            assert (await client.get(path)).status_code == 200, path
        # auth is checked before the body is even read
        r = await client.post(
            "/v1/predict", content=b"not json", headers={"content-type": "text/plain"}
        )
        assert r.status_code == 401


async def test_metrics_take_a_scrape_only_key(make_client, behaviour):
    scrape = {"Authorization": "Bearer scrape-only"}
    async with make_client(api_keys=KEYS, metrics_keys=["scrape-only"]) as client:
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/metrics", headers=scrape)).status_code == 200
        assert (await client.get("/metrics", headers={"X-API-Key": KEYS[0]})).status_code == 200
        # the scrape key opens nothing else
        r = await client.post("/v1/predict", json={"instances": [INSTANCE]}, headers=scrape)
        assert r.status_code == 401
        assert (await client.get("/v1/models", headers=scrape)).status_code == 401
    assert not behaviour.calls


async def test_predictions_beyond_the_concurrency_cap_get_503_and_retry_after(
    make_client, behaviour
):
    behaviour.delay = 0.5  # a slow upstream: every prediction holds its slot for 0.5 s
    settings = {"max_in_flight_predictions": 2, "max_queued_predictions": 1}
    async with make_client(retry_after_seconds=3, **settings) as client:

        async def predict():
            return await client.post("/v1/predict", json={"instances": [INSTANCE]})

        tasks = [asyncio.create_task(predict()) for _ in range(6)]
        await asyncio.sleep(0.2)
        assert (await client.get("/livez")).status_code == 200  # health is never capped
        answers = await asyncio.gather(*tasks)
        assert sorted(r.status_code for r in answers) == [200, 200, 200, 503, 503, 503]
        for r in answers:
            if r.status_code == 503:
                assert r.headers["retry-after"] == "3"
                assert r.json()["error"] == "overloaded"
        # refused requests never reached the model server; the slots are free again
        assert len([c for c in behaviour.calls if c.method == "Predict"]) == 3
        behaviour.delay = 0
        assert (await predict()).status_code == 200
        text = (await client.get("/metrics")).text
    assert "housing_gateway_overload_rejections_total 3.0" in text


async def test_no_queue_means_immediate_refusal(make_client, behaviour):
    behaviour.delay = 0.5
    async with make_client(max_in_flight_predictions=1, max_queued_predictions=0) as client:
        answers = await asyncio.gather(
            *(client.post("/v1/predict", json={"instances": [INSTANCE]}) for _ in range(3))
        )
    assert sorted(r.status_code for r in answers) == [200, 503, 503]


def trickle(pause: float, parts: int = 4):
    """A valid JSON body sent in ``parts`` chunks, ``pause`` seconds apart."""
    body = json.dumps({"instances": [INSTANCE]}).encode()
    size = len(body) // parts + 1

    async def chunks():
        for start in range(0, len(body), size):
            await asyncio.sleep(pause)
            yield body[start : start + size]

    return chunks()


async def test_a_body_that_does_not_arrive_in_time_is_408(make_client, behaviour):
    async with make_client(body_timeout_seconds=0.3) as client:
        r = await client.post(
            "/v1/predict", content=trickle(0.2), headers={"content-type": "application/json"}
        )
        assert r.status_code == 408
        assert r.json()["error"] == "request_timeout"
        assert not behaviour.calls
        # a body that arrives in time is served
        r = await client.post(
            "/v1/predict", content=trickle(0.01), headers={"content-type": "application/json"}
        )
        assert r.status_code == 200


async def test_slow_senders_do_not_hold_prediction_slots(make_client, behaviour):
    settings = {"max_in_flight_predictions": 1, "max_queued_predictions": 0}
    async with make_client(**settings) as client:
        slow = asyncio.create_task(
            client.post(
                "/v1/predict", content=trickle(0.3), headers={"content-type": "application/json"}
            )
        )
        await asyncio.sleep(0.1)  # the slow body is still arriving
        fast = await client.post("/v1/predict", json={"instances": [INSTANCE]})
        assert fast.status_code == 200
        assert (await slow).status_code == 200


async def test_auth_off_by_default(client):
    assert (await client.get("/v1/models")).status_code == 200


async def test_cors_is_strict_by_default(client):
    r = await client.options(
        "/v1/predict",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in r.headers
    r = await client.post(
        "/v1/predict", json={"instances": [INSTANCE]}, headers={"Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in r.headers


async def test_cors_allows_only_configured_origins(make_client, behaviour):
    async with make_client(cors_origins=["https://app.example"], api_keys=KEYS) as client:
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        }
        ok = await client.options(
            "/v1/predict", headers={"Origin": "https://app.example", **preflight}
        )
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        bad = await client.options(
            "/v1/predict", headers={"Origin": "https://evil.example", **preflight}
        )
        assert bad.headers.get("access-control-allow-origin") != "https://evil.example"
