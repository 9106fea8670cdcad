"""Locust scenarios for the gateway: the traffic mix a production day would see.

User classes (each can also be run alone: ``locust -f load_tests/locustfile.py SingleUser``):

- ``SingleUser``: one-row predictions on the default route (``POST /v1/predict``), the bulk.
- ``BatchUser``: ``LOAD_BATCH_ROWS``-row (20) predictions on ``POST /v1/models/{name}:predict``.
- ``MixedModelsUser``: one or a few rows, spread over the targets in ``LOAD_TARGETS``
  (``name``, ``name@version`` or ``name#label``, comma-separated).
- ``InvalidUser``: a small, throttled share of bad requests from ``payloads/invalid.json``;
  a 4xx is the expected answer and counts as a success, anything else as a failure.

Rows come from ``payloads/instances.json`` (sampled from the book's test split). A 200 must
carry one prediction per instance, each a finite positive number, or it counts as failed.
Environment: ``LOAD_TARGETS``, ``LOAD_BATCH_ROWS``, ``LOAD_USER_RPS`` (per-user pace, 0 =
as fast as possible), ``LOAD_API_KEY`` (sent as ``X-API-Key`` when set).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import uuid
from pathlib import Path
from typing import Any

from locust import HttpUser, constant, constant_throughput, task

PAYLOADS = Path(__file__).resolve().parent / "payloads"
INSTANCES: list[dict[str, Any]] = json.loads((PAYLOADS / "instances.json").read_text())
INVALID: list[dict[str, Any]] = json.loads((PAYLOADS / "invalid.json").read_text())
DEFAULT_MODEL = "housing_sklearn"


def env_targets() -> list[str]:
    """``LOAD_TARGETS`` as predict paths: ``name`` uses the model's policy,
    ``name@3`` pins version 3, ``name#stable`` follows a label."""
    targets = []
    for item in os.environ.get("LOAD_TARGETS", DEFAULT_MODEL).split(","):
        item = item.strip()
        if "@" in item:
            name, version = item.split("@", 1)
            path = f"/v1/models/{name}/versions/{int(version)}:predict"
        elif "#" in item:
            name, label = item.split("#", 1)
            path = f"/v1/models/{name}/labels/{label}:predict"
        elif item:
            path = f"/v1/models/{item}:predict"
        else:
            continue
        targets.append(path)
    return targets or [f"/v1/models/{DEFAULT_MODEL}:predict"]


def pace() -> Any:
    rate = float(os.environ.get("LOAD_USER_RPS", "10"))
    return constant(0) if rate <= 0 else constant_throughput(rate)


BATCH_ROWS = int(os.environ.get("LOAD_BATCH_ROWS", "20"))
TARGETS = env_targets()


class PredictionUser(HttpUser):
    """Shared request/check logic; abstract so locust never spawns it directly."""

    abstract = True
    wait_time = pace()

    def on_start(self) -> None:
        self.rows = itertools.cycle(random.Random(id(self)).sample(INSTANCES, len(INSTANCES)))
        key = os.environ.get("LOAD_API_KEY")
        self.client.headers.update({"X-API-Key": key} if key else {})

    def take(self, n: int) -> list[dict[str, Any]]:
        return [next(self.rows) for _ in range(n)]

    def predict(self, path: str, body: dict[str, Any], name: str) -> None:
        expected = len(body["instances"])
        headers = {"x-request-id": uuid.uuid4().hex}
        with self.client.post(
            path, json=body, headers=headers, name=name, catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            try:
                predictions = response.json()["predictions"]
                values = [float(p["median_house_value"]) for p in predictions]
            except (ValueError, KeyError, TypeError) as exc:
                response.failure(f"malformed 200 body: {exc!r}")
                return
            if len(values) != expected:
                response.failure(f"{len(values)} predictions for {expected} instances")
            elif not all(math.isfinite(v) and v > 0 for v in values):
                response.failure(f"non-finite or non-positive prediction in {values[:3]}")
            else:
                response.success()


class SingleUser(PredictionUser):
    weight = 6

    @task
    def one_row(self) -> None:
        self.predict("/v1/predict", {"instances": self.take(1)}, "/v1/predict [1 row]")


class BatchUser(PredictionUser):
    weight = 2

    @task
    def batch(self) -> None:
        path = TARGETS[0]
        self.predict(path, {"instances": self.take(BATCH_ROWS)}, f"{path} [batch]")


class MixedModelsUser(PredictionUser):
    weight = 1

    @task
    def mixed(self) -> None:
        path = random.choice(TARGETS)
        self.predict(path, {"instances": self.take(random.choice((1, 1, 3, 8)))}, path)


class InvalidUser(HttpUser):
    """Bad requests at a low, fixed pace: they must be refused with a 4xx, never a 5xx."""

    weight = 1
    wait_time = constant_throughput(2)

    def on_start(self) -> None:
        key = os.environ.get("LOAD_API_KEY")
        self.client.headers.update({"X-API-Key": key} if key else {})

    @task
    def invalid(self) -> None:
        case = random.choice(INVALID)
        path = f"/v1/models/{case.get('model', DEFAULT_MODEL)}:predict"
        if "raw" in case:
            kwargs: dict[str, Any] = {
                "data": case["raw"],
                "headers": {"content-type": "application/json"},
            }
        else:
            kwargs = {"json": case["body"]}
        with self.client.post(
            path, name=f"[invalid] {case['why']}", catch_response=True, **kwargs
        ) as response:
            if 400 <= response.status_code < 500:
                response.success()
            else:
                response.failure(f"expected a 4xx for {case['why']}, got {response.status_code}")
