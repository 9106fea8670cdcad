"""Hostile and malformed requests: always a 4xx with a useful message, never a 5xx."""

from __future__ import annotations

import json

import pytest

from .conftest import INSTANCE


def with_(**changes) -> bytes:
    return json.dumps({"instances": [{**INSTANCE, **changes}]}).encode()


def raw(text: str) -> bytes:
    return text.encode()


NAN_BODY = json.dumps({"instances": [INSTANCE]}).replace("-122.23", "{}")
CASES = [
    # (name, body bytes, expected status, words the message must contain)
    ("nan", raw(NAN_BODY.replace("{}", "NaN")), 422, ["instances[0].longitude", "finite"]),
    ("infinity", raw(NAN_BODY.replace("{}", "Infinity")), 422, ["longitude", "finite"]),
    ("minus infinity", raw(NAN_BODY.replace("{}", "-Infinity")), 422, ["finite"]),
    ("1e999", raw(NAN_BODY.replace("{}", "1e999")), 422, ["finite"]),
    ("huge integer", raw(NAN_BODY.replace("{}", "1" + "0" * 400)), 422, ["longitude"]),
    ("very long integer", raw(NAN_BODY.replace("{}", "9" * 5000)), 400, ["JSON"]),
    ("string for number", with_(latitude="37.88"), 422, ["instances[0].latitude", "number"]),
    ("bool for number", with_(total_rooms=True), 422, ["total_rooms"]),
    ("negative count", with_(population=-1), 422, ["instances[0].population", "greater than"]),
    ("latitude off the globe", with_(latitude=95.0), 422, ["instances[0].latitude", "90"]),
    ("zero households", with_(households=0), 422, ["instances[0].households", "greater than 0"]),
    ("float32 overflow", with_(median_income=1e300), 422, ["instances[0].median_income"]),
    ("bad category", with_(ocean_proximity="MOON"), 422, ["ocean_proximity", "INLAND"]),
    ("category case", with_(ocean_proximity="inland"), 422, ["ocean_proximity"]),
    ("null required", with_(median_income=None), 422, ["median_income"]),
    ("nested junk", with_(longitude={"a": [1, {"b": 2}]}), 422, ["longitude"]),
    ("list for number", with_(households=[1, 2]), 422, ["households"]),
    ("unknown field", with_(color="red"), 422, ["instances[0].color", "not permitted"]),
    (
        "missing field",
        json.dumps(
            {"instances": [{k: v for k, v in INSTANCE.items() if k != "latitude"}]}
        ).encode(),
        422,
        ["instances[0].latitude", "required"],
    ),
    ("empty instances", raw('{"instances": []}'), 422, ["instances", "at least 1"]),
    ("instances not a list", raw('{"instances": {"a": 1}}'), 422, ["instances", "list"]),
    ("non-object instances", raw('{"instances": [1, "x", null, []]}'), 422, ["instances[3]"]),
    ("no instances key", raw('{"inputs": []}'), 422, ["instances"]),
    ("top-level list", raw("[1, 2, 3]"), 422, ["body"]),
    ("top-level string", raw('"hello"'), 422, ["body"]),
    ("empty body", b"", 422, ["body"]),
    ("not json", raw("instances=1"), 400, ["JSON"]),
    ("truncated json", raw('{"instances": [{"longitude": '), 400, ["JSON"]),
    ("deep nesting", raw("[" * 100_000 + "]" * 100_000), 400, []),
    ("invalid utf-8", b'{"instances": [\xff\xfe]}', 400, []),
    ("nul bytes", b'{"instances": [\x00]}', 400, []),
    (
        "second instance bad",
        json.dumps({"instances": [INSTANCE, {**INSTANCE, "latitude": "x"}]}).encode(),
        422,
        ["instances[1].latitude"],
    ),
]


@pytest.mark.parametrize(("name", "body", "status", "words"), CASES, ids=[c[0] for c in CASES])
async def test_hostile_bodies_get_a_useful_4xx(client, behaviour, name, body, status, words):
    r = await client.post("/v1/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, (name, r.status_code, r.text[:500])
    payload = r.json()
    assert payload["message"] and payload["error"]
    for word in words:
        assert word in payload["message"] or word in json.dumps(payload["details"]), (word, payload)
    assert len(r.content) < 20_000  # the input is never echoed back
    assert not [c for c in behaviour.calls if c.method == "Predict"]


async def test_422_details_name_instance_and_field(client):
    body = {"instances": [INSTANCE, {**INSTANCE, "households": -5, "ocean_proximity": "X"}]}
    r = await client.post("/v1/predict", json=body)
    assert r.status_code == 422
    details = {(d["instance"], d["field"]) for d in r.json()["details"]}
    assert details == {(1, "households"), (1, "ocean_proximity")}


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
async def test_wrong_content_type_is_415(client, content_type):
    headers = {"content-type": content_type} if content_type else {}
    r = await client.post("/v1/predict", content=with_(), headers=headers)
    if content_type is None:
        # httpx sends no content-type for raw bytes
        assert r.status_code == 415
    assert r.status_code == 415
    assert "application/json" in r.json()["message"]


async def test_json_with_charset_is_accepted(client):
    r = await client.post(
        "/v1/predict", content=with_(), headers={"content-type": "application/json; charset=utf-8"}
    )
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/predict", 405),
        ("PUT", "/v1/models/housing_sklearn:predict", 405),
        ("DELETE", "/v1/models/housing_sklearn", 405),
        ("POST", "/v1/models/..%2F..%2Fetc%2Fpasswd:predict", 404),
        ("POST", "/v1/models/%00:predict", 404),
        ("POST", "/v1/models/housing_sklearn/versions/-1:predict", 422),
        ("POST", "/v1/models/housing_sklearn/versions/abc:predict", 422),
        ("POST", "/v1/models/housing_sklearn/versions/99999999999999999999999:predict", 422),
        ("POST", "/v1/models/housing_sklearn/labels/..%2F:predict", 404),
        ("POST", "/v1/models/housing_sklearn:predict?version=x", 422),
        ("POST", "/v1/models/housing_sklearn:predict?label=%3Cscript%3E", 422),
        ("GET", "/v1/models/" + "a" * 10_000, 404),
        ("GET", "/does/not/exist", 404),
    ],
)
async def test_path_and_method_tricks(client, method, path, status):
    r = await client.request(
        method, path, content=with_(), headers={"content-type": "application/json"}
    )
    assert r.status_code == status, r.text[:300]
    assert r.json()["message"]
    assert len(r.content) < 5_000
