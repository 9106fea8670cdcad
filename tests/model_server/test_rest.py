"""TF Serving's REST API: row and columnar formats, status, metadata, errors, metrics."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pandas as pd
import pytest

from core.contract import FEATURES, KERAS_MODEL, SKLEARN_MODEL
from load_tests.grpc_payloads import wire_frame
from load_tests.models import tiny_savedmodel_formula
from tests.model_server.conftest import KERAS_SCALE, METRICS_PATH
from tests.model_server.helpers import instances, metric_value

SKLEARN, KERAS = SKLEARN_MODEL, KERAS_MODEL


@pytest.fixture(scope="module")
def rows(split) -> pd.DataFrame:
    test = split.test
    return pd.concat([test.head(4), test[test["total_bedrooms"].isna()].head(2)]).reset_index(
        drop=True
    )


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url("rest"), timeout=30) as client:
        yield client


def test_book_chapter_19_rest_request(http, rows):
    """The book's REST call: signature_name + instances, predictions in order."""
    request_json = json.dumps({"signature_name": "serving_default", "instances": instances(rows)})
    response = http.post(f"/v1/models/{KERAS}:predict", content=request_json)
    response.raise_for_status()
    y_pred = np.array(response.json()["predictions"])
    np.testing.assert_allclose(y_pred, tiny_savedmodel_formula(rows, KERAS_SCALE), rtol=1e-6)


@pytest.mark.parametrize("path", ["/versions/1", "/labels/stable"])
def test_row_format_by_version_and_label(http, models, rows, path):
    response = http.post(f"/v1/models/{SKLEARN}{path}:predict", json={"instances": instances(rows)})
    assert response.status_code == 200, response.text
    expected = models.sklearn_models[1].predict(wire_frame(rows))
    np.testing.assert_allclose(response.json()["predictions"], expected, rtol=1e-5)


def test_columnar_format(http, models, rows):
    columns = {name: [r[name] for r in instances(rows)] for name in FEATURES}
    response = http.post(f"/v1/models/{SKLEARN}:predict", json={"inputs": columns})
    assert response.status_code == 200, response.text
    expected = models.sklearn_models[2].predict(wire_frame(rows))
    np.testing.assert_allclose(response.json()["outputs"], expected, rtol=1e-5)


def test_status_and_metadata(http):
    status = http.get(f"/v1/models/{SKLEARN}").json()
    assert {(s["version"], s["state"]) for s in status["model_version_status"]} == {
        ("1", "AVAILABLE"),
        ("2", "AVAILABLE"),
    }
    assert status["model_version_status"][0]["status"]["error_code"] == "OK"
    one = http.get(f"/v1/models/{SKLEARN}/labels/canary").json()
    assert [s["version"] for s in one["model_version_status"]] == ["2"]
    metadata = http.get(f"/v1/models/{KERAS}/versions/1/metadata").json()
    assert metadata["model_spec"]["version"] == "1"
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert set(signature["inputs"]) == set(FEATURES)
    assert signature["inputs"]["ocean_proximity"]["dtype"] == "DT_STRING"


def test_errors_have_tf_serving_codes_and_bodies(http, rows):
    good = instances(rows)
    bad_type = [dict(good[0], median_income="high")]
    missing = [{k: v for k, v in good[0].items() if k != "latitude"}]
    cases = [
        ("post", "/v1/models/nope:predict", {"instances": good}, 404, "nope"),
        ("post", f"/v1/models/{SKLEARN}/versions/7:predict", {"instances": good}, 404, "7"),
        ("post", f"/v1/models/{SKLEARN}/labels/gold:predict", {"instances": good}, 400, "gold"),
        ("post", f"/v1/models/{SKLEARN}:predict", {"instances": bad_type}, 400, "median_income"),
        ("post", f"/v1/models/{SKLEARN}:predict", {"instances": missing}, 400, "latitude"),
        ("post", f"/v1/models/{SKLEARN}:predict", {"rows": good}, 400, "instances"),
        ("get", "/v1/models/nope", None, 404, "nope"),
        ("get", "/v2/anything", None, 404, "Malformed request"),
    ]
    for method, path, body, code, text in cases:
        response = http.request(method.upper(), path, json=body)
        assert response.status_code == code, (path, response.text)
        assert text in response.json()["error"], response.text
    broken = http.post(f"/v1/models/{SKLEARN}:predict", content=b"{not json")
    assert broken.status_code == 400 and "error" in broken.json()


def test_prometheus_metrics_per_version(http, rows):
    http.post(f"/v1/models/{SKLEARN}/versions/1:predict", json={"instances": instances(rows)})
    text = http.get(METRICS_PATH).text
    assert (
        metric_value(
            text,
            "model_server_requests_total",
            model=SKLEARN,
            version="1",
            transport="rest",
            code="OK",
        )
        >= 1
    )
    assert (
        metric_value(
            text, "model_server_request_duration_seconds_count", model=SKLEARN, version="1"
        )
        >= 1
    )
    assert "model_server_request_duration_seconds_bucket" in text


async def test_full_queue_gives_503_with_retry_after(server, split):
    """Queue holds 64 rows (32 × 2): a burst of 30-row requests must overflow it."""
    body = {"instances": instances(split.test.head(30))}
    async with httpx.AsyncClient(base_url=server.url("rest"), timeout=60) as client:
        responses = await asyncio.gather(
            *(client.post(f"/v1/models/{SKLEARN}/versions/1:predict", json=body) for _ in range(40))
        )
    statuses = [r.status_code for r in responses]
    assert set(statuses) == {200, 503}, statuses
    for response in responses:
        if response.status_code == 503:
            assert response.headers["retry-after"] == "1"
            assert "queue" in response.json()["error"]
