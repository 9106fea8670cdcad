"""The gateway as a real process (``housing serve gateway``, 2 workers) in front of the real
model server process, both on free loopback ports, with a real joblib model and SavedModel."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from core.contract import FEATURES
from core.process import ManagedProcess, http_ok
from load_tests import models as test_models
from load_tests import stack as launch
from service.prediction_log import read_window
from training.repository import ModelRepository

KERAS_SCALE = 40_000.0


@dataclass
class Stack:
    url: str
    model_server: ManagedProcess
    gateway: ManagedProcess
    log_path: Path
    sklearn: object


@pytest.fixture(scope="module")
def stack(tmp_path_factory, split) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("gw_int")
    repo = ModelRepository(root / "models")
    sklearn = test_models.small_sklearn(split.train, trees=0, seed=42)
    assert test_models.publish_sklearn(repo, sklearn) == 1
    assert test_models.publish_tiny_savedmodel(repo, KERAS_SCALE) == 1
    log_path = root / "predictions.sqlite3"
    with launch.model_server(repo.config_path, root / "model_server.log") as model_server:
        launch.serving(model_server)
        target = model_server.address("grpc")
        gateway = launch.gateway(
            {"housing_sklearn": target, "housing_keras": target},
            root / "gateway.log",
            env={"TF_CPP_MIN_LOG_LEVEL": "2", "HOUSING_MODELS_DIR": str(repo.root)},
            extra=["--workers", "2", "--prediction-log-path", str(log_path)],
        )
        with gateway:
            gateway.wait_ready(http_ok(f"{gateway.url()}/readyz"))
            yield Stack(gateway.url(), model_server, gateway, log_path, sklearn)


def rows(split, n: int) -> list[dict]:
    frame = split.test.head(n)
    out = []
    for record in frame[list(FEATURES)].to_dict("records"):
        value = record["total_bedrooms"]
        record["total_bedrooms"] = None if value != value else value
        out.append(record)
    return out


def test_sklearn_predictions_match_the_model(stack, split):
    instances = rows(split, 50)
    r = httpx.post(
        f"{stack.url}/v1/models/housing_sklearn:predict", json={"instances": instances}, timeout=30
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == {"name": "housing_sklearn", "version": 1}
    expected = stack.sklearn.predict(split.test.head(50)[list(FEATURES)])
    got = np.array([p["median_house_value"] for p in body["predictions"]])
    # float32 on the wire: relative agreement, not bit equality
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=50)


def test_keras_savedmodel_through_the_gateway(stack, split):
    instances = rows(split, 5)
    r = httpx.post(
        f"{stack.url}/v1/models/housing_keras:predict", json={"instances": instances}, timeout=30
    )
    assert r.status_code == 200, r.text
    expected = test_models.tiny_savedmodel_formula(split.test.head(5), KERAS_SCALE)
    got = [p["median_house_value"] for p in r.json()["predictions"]]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_routes_against_the_real_server(stack, split):
    one = {"instances": rows(split, 1)}
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        assert client.get("/livez").status_code == 200
        ready = client.get("/readyz").json()
        assert ready == {
            "ready": True,
            "models": {"housing_keras": "AVAILABLE", "housing_sklearn": "AVAILABLE"},
            "warnings": [],
        }
        models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
        assert models["housing_sklearn"]["versions"] == [
            {"version": 1, "state": "AVAILABLE", "error": None}
        ]
        assert client.get("/v1/models/housing_keras").json()["versions"][0]["state"] == "AVAILABLE"
        assert client.post("/v1/predict", json=one).json()["model"]["name"] == "housing_sklearn"
        assert (
            client.post("/v1/models/housing_sklearn/versions/1:predict", json=one).status_code
            == 200
        )
        missing = client.post("/v1/models/housing_sklearn/versions/7:predict", json=one)
        assert missing.status_code == 404, missing.text
        label = client.post("/v1/models/housing_sklearn/labels/nope:predict", json=one)
        assert label.status_code in (400, 404), label.text
        assert client.post("/v1/models/nope:predict", json=one).status_code == 404
        r = client.post("/v1/predict", json=one, headers={"x-request-id": "int-1"})
        assert r.headers["x-request-id"] == "int-1"
        metrics = client.get("/metrics").text
        assert "housing_gateway_requests_total" in metrics


def test_hostile_requests_leave_the_gateway_up(stack):
    hostile = [
        b'{"instances": [{"longitude": NaN}]}',
        b"[" * 50_000,
        b'{"instances": "x"}',
        b"\xff\xfe\x00",
        b'{"instances": [' + b'{"a": 1},' * 5000 + b"{}]}",
    ]
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        for body in hostile:
            r = client.post(
                "/v1/predict", content=body, headers={"content-type": "application/json"}
            )
            assert 400 <= r.status_code < 500, (body[:40], r.status_code, r.text[:200])
        big = client.post(
            "/v1/predict", content=b" " * 2_000_000, headers={"content-type": "application/json"}
        )
        assert big.status_code == 413
        assert client.get("/livez").status_code == 200


def test_acknowledged_predictions_are_in_the_log(stack, split):
    r = httpx.post(
        f"{stack.url}/v1/predict",
        json={"instances": rows(split, 3)},
        headers={"x-request-id": "logged-1"},
        timeout=30,
    )
    assert r.status_code == 200
    frame = read_window(stack.log_path)
    mine = frame[frame["request_id"] == "logged-1"]
    assert len(mine) == 3
    assert mine["prediction"].tolist() == [p["median_house_value"] for p in r.json()["predictions"]]


def test_model_server_down_is_503_then_gateway_still_answers(stack, split):
    """Last on purpose: stops the model server."""
    stack.model_server.stop()
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        r = client.post("/v1/predict", json={"instances": rows(split, 1)})
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"]
        time.sleep(1.1)  # past the readiness cache
        assert client.get("/readyz").status_code == 503
        assert client.get("/livez").status_code == 200
