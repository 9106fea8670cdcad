"""Every prediction route, version/label selection, chunking, request ids, model listing."""

from __future__ import annotations

import pytest

from tests.fake_upstream import AVAILABLE

from .conftest import INSTANCE


def value(income: float, version: int) -> float:
    return 100_000 * income + 1_000 * version


async def test_predict_named_model_returns_predictions_in_order(client, behaviour):
    instances = [{**INSTANCE, "median_income": x} for x in (1.0, 2.0, 3.0)]
    r = await client.post("/v1/models/housing_keras:predict", json={"instances": instances})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == {"name": "housing_keras", "version": 1}
    assert [p["median_house_value"] for p in body["predictions"]] == pytest.approx(
        [value(x, 1) for x in (1.0, 2.0, 3.0)]
    )
    call = behaviour.calls[-1]
    assert (call.model, call.rows) == ("housing_keras", 3)
    assert call.inputs["ocean_proximity"] == ["NEAR BAY"] * 3


async def test_default_route_asks_for_the_stable_label(client, behaviour):
    behaviour.labels["housing_sklearn"] = {"stable": 1}  # version 2 loaded, not promoted
    r = await client.post("/v1/predict", json={"instances": [INSTANCE]})
    assert r.status_code == 200
    assert r.json()["model"] == {"name": "housing_sklearn", "version": 1}
    assert behaviour.calls[-1].version is None and behaviour.calls[-1].label == "stable"


async def test_without_labels_the_latest_version_serves(client, behaviour):
    behaviour.labels.clear()
    for _ in range(2):
        r = await client.post("/v1/predict", json={"instances": [INSTANCE]})
        assert r.status_code == 200
        assert r.json()["model"] == {"name": "housing_sklearn", "version": 2}
    predicts = [c for c in behaviour.calls if c.method == "Predict"]
    # One refused label lookup, then the fallback is remembered.
    assert [c.label for c in predicts] == ["stable", None, None]


@pytest.mark.parametrize(
    ("path", "version", "label"),
    [
        ("/v1/models/housing_sklearn:predict?version=1", 1, None),
        ("/v1/models/housing_sklearn/versions/1:predict", 1, None),
        ("/v1/predict?version=1", 1, None),
        ("/v1/models/housing_sklearn:predict?label=stable", None, "stable"),
        ("/v1/models/housing_sklearn/labels/stable:predict", None, "stable"),
    ],
)
async def test_version_and_label_selection(client, behaviour, path, version, label):
    behaviour.labels["housing_sklearn"] = {"stable": 1}
    r = await client.post(path, json={"instances": [INSTANCE]})
    assert r.status_code == 200, r.text
    assert r.json()["model"]["version"] == 1
    call = behaviour.calls[-1]
    assert (call.version, call.label) == (version, label)


async def test_version_and_label_together_is_422(client):
    r = await client.post(
        "/v1/models/housing_sklearn:predict?version=1&label=stable", json={"instances": [INSTANCE]}
    )
    assert r.status_code == 422
    assert "not both" in r.json()["message"]


async def test_unknown_version_is_404_and_unknown_label_400(client, behaviour):
    r = await client.post(
        "/v1/models/housing_sklearn/versions/9:predict", json={"instances": [INSTANCE]}
    )
    assert r.status_code == 404
    assert r.json()["error"] == "not_found"
    r = await client.post(
        "/v1/models/housing_sklearn/labels/nope:predict", json={"instances": [INSTANCE]}
    )
    assert r.status_code == 400
    assert r.json()["error"] == "upstream_invalid_argument"


async def test_missing_total_bedrooms_is_sent_as_nan(client, behaviour):
    rows = [
        {**INSTANCE, "total_bedrooms": None},
        {k: v for k, v in INSTANCE.items() if k != "total_bedrooms"},
    ]
    r = await client.post("/v1/predict", json={"instances": rows})
    assert r.status_code == 200, r.text
    # the fake adds 1 when it sees a NaN bedroom count
    assert r.json()["predictions"][0]["median_house_value"] == pytest.approx(
        value(8.3252, 2) + 1, rel=1e-6
    )
    assert len(r.json()["predictions"]) == 2


async def test_out_of_range_inputs_are_served_and_flagged(client):
    odd = {**INSTANCE, "median_income": 40.0, "population": 100_000.0, "latitude": 60.0}
    r = await client.post("/v1/predict", json={"instances": [INSTANCE, odd]})
    assert r.status_code == 200
    first, second = r.json()["predictions"]
    assert first["out_of_range"] == []
    assert sorted(second["out_of_range"]) == ["latitude", "median_income", "population"]
    metrics = (await client.get("/metrics")).text
    assert (
        'housing_gateway_out_of_range_total{feature="median_income",model="housing_sklearn"} 1.0'
        in metrics
    )


async def test_request_id_is_returned_and_forwarded_upstream(client, behaviour):
    r = await client.post(
        "/v1/predict", json={"instances": [INSTANCE]}, headers={"X-Request-ID": "req-42"}
    )
    assert r.headers["x-request-id"] == "req-42"
    assert behaviour.calls[-1].request_id == "req-42"
    # a malformed id (not ASCII-safe for gRPC metadata) is replaced, never forwarded
    r = await client.post(
        "/v1/predict", json={"instances": [INSTANCE]}, headers={"X-Request-ID": "a b\tc"}
    )
    generated = r.headers["x-request-id"]
    assert r.status_code == 200 and generated != "a b\tc" and len(generated) == 32
    assert behaviour.calls[-1].request_id == generated


async def test_large_batches_are_split_into_chunks(make_client, behaviour):
    instances = [{**INSTANCE, "median_income": i / 100} for i in range(25)]
    async with make_client(chunk_size=10) as client:
        r = await client.post("/v1/predict", json={"instances": instances})
    assert r.status_code == 200
    assert sorted(c.rows for c in behaviour.calls if c.method == "Predict") == [5, 10, 10]
    got = [p["median_house_value"] for p in r.json()["predictions"]]
    assert got == pytest.approx([value(i / 100, 2) for i in range(25)], rel=1e-6)


async def test_chunks_answered_by_different_versions_are_pinned_to_one(make_client, behaviour):
    """A version switch mid-request must not mix versions in one answer."""

    def publish_version_3_before_second_call(b):
        if len([c for c in b.calls if c.method == "Predict"]) == 2:
            b.models["housing_sklearn"][3] = AVAILABLE  # later chunks see version 3
            b.labels["housing_sklearn"]["stable"] = 3

    behaviour.on_predict = publish_version_3_before_second_call
    async with make_client(chunk_size=2, max_concurrent_chunks=1) as client:
        r = await client.post("/v1/predict", json={"instances": [INSTANCE] * 4})
    assert r.status_code == 200
    assert r.json()["model"]["version"] == 2
    got = [p["median_house_value"] for p in r.json()["predictions"]]
    assert got == pytest.approx([value(8.3252, 2)] * 4)
    predicts = [c for c in behaviour.calls if c.method == "Predict"]
    assert [c.version for c in predicts] == [None, None, 2]  # odd chunk asked again, pinned


async def test_list_and_get_models(client, behaviour, upstream):
    r = await client.get("/v1/models")
    assert r.status_code == 200
    models = {m["name"]: m for m in r.json()["models"]}
    assert set(models) == {"housing_sklearn", "housing_keras"}
    assert models["housing_sklearn"]["default"] is True
    assert [v["version"] for v in models["housing_sklearn"]["versions"]] == [1, 2]
    assert models["housing_sklearn"]["target"] == upstream.target
    r = await client.get("/v1/models/housing_keras")
    assert r.status_code == 200
    assert r.json()["versions"] == [{"version": 1, "state": "AVAILABLE", "error": None}]


async def test_models_listing_reports_upstream_errors_per_model(client, behaviour):
    import grpc

    behaviour.status_error = (grpc.StatusCode.UNAVAILABLE, "down")
    r = await client.get("/v1/models")
    assert r.status_code == 200
    assert all(
        m["error"] == "the model server is unavailable; retry later" for m in r.json()["models"]
    )
    r = await client.get("/v1/models/housing_sklearn")
    assert r.status_code == 503 and r.headers["retry-after"] == "1"


async def test_unknown_model_is_404_without_upstream_call(client, behaviour):
    for path in ["/v1/models/nope:predict", "/v1/models/" + "x" * 5000 + ":predict"]:
        r = await client.post(path, json={"instances": [INSTANCE]})
        assert r.status_code == 404
        assert "unknown model" in r.json()["message"]
        assert len(r.text) < 1000
    r = await client.get("/v1/models/nope")
    assert r.status_code == 404
    assert not [c for c in behaviour.calls if c.method == "Predict"]


async def test_livez_and_openapi(client):
    assert (await client.get("/livez")).json() == {"status": "ok"}
    spec = (await client.get("/openapi.json")).json()
    for path in [
        "/v1/predict",
        "/v1/models/{name}:predict",
        "/v1/models",
        "/v1/models/{name}",
        "/v1/models/{name}/versions/{version}:predict",
        "/v1/models/{name}/labels/{label}:predict",
        "/livez",
        "/readyz",
        "/metrics",
    ]:
        assert path in spec["paths"], path
    example = spec["components"]["schemas"]["PredictRequest"]["examples"][0]
    assert example["instances"][0]["ocean_proximity"] == "NEAR BAY"
