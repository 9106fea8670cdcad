"""Promotion under traffic through the real stack (model server + gateway processes):
``promote`` without ``--server`` answers every request 200 while the new version loads, and
a canary on a model without ``stable`` gets only its share of default traffic."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from core.cli import main
from core.contract import SKLEARN_MODEL
from core.process import ManagedProcess, http_ok
from load_tests import models, stack
from pipelines import promotion
from service.gateway.predictor import LABELS_MISSING_TTL
from tests.faults.conftest import ROW, Hammer
from training.repository import ModelRepository

READY_TIMEOUT = 120
CANARY_PERCENT = 20


PROMOTED = "housing_promoted"  # a second model on the same stack, with a stable label


@dataclass
class Stack:
    repo: ModelRepository
    server: ManagedProcess
    gateway: ManagedProcess

    def predict_url(self, model: str) -> str:
        return f"{self.gateway.url()}/v1/models/{model}:predict"

    @property
    def grpc_target(self) -> str:
        return self.server.address("grpc")


def two_versions(repo: ModelRepository, name: str, fitted) -> None:
    """Version 1 served (the ``latest`` policy), version 2 published but not served:
    what a retrain leaves before any promotion."""
    assert models.publish_sklearn(repo, fitted[0], name) == 1
    promotion.pin_served(repo, name)
    assert models.publish_sklearn(repo, fitted[1], name) == 2
    assert repo.served_versions(name) == {1}


@pytest.fixture(scope="module")
def live(split, tmp_path_factory) -> Iterator[Stack]:
    """One model server (config polled every 0.3 s) and one gateway with a canary split."""
    fitted = [models.small_sklearn(split.train, rows=1_000 + 500 * i, trees=5) for i in range(2)]
    logs = tmp_path_factory.mktemp("promotion-stack")
    repo = ModelRepository(logs / "models")
    two_versions(repo, SKLEARN_MODEL, fitted)
    two_versions(repo, PROMOTED, fitted)
    promotion.promote(repo, PROMOTED, 1)
    server = stack.model_server(
        repo.config_path,
        logs / "model-server.log",
        poll_seconds=0.3,
        extra=["--model_config_file_poll_wait_seconds", "0.3"],
    ).start()
    gateway = None
    try:
        stack.serving(server, READY_TIMEOUT)
        target = server.address("grpc")
        gateway = stack.gateway(
            {SKLEARN_MODEL: target, PROMOTED: target},
            logs / "gateway.log",
            extra=["--canary-percent", str(CANARY_PERCENT)],
        ).start()
        gateway.wait_ready(http_ok(f"{gateway.url()}/readyz"), READY_TIMEOUT)
        yield Stack(repo, server, gateway)
    finally:
        if gateway is not None:
            gateway.stop()
        server.stop()


def test_promote_without_server_under_load_answers_every_request(live, capsys):
    with Hammer(live.predict_url(PROMOTED), threads=3) as hammer:
        assert hammer.wait_for(lambda o: o.status == 200, 20, timeout=30)
        argv = ["pipeline", "promote", "--model", PROMOTED, "--version", "2"]
        assert main([*argv, "--models-dir", str(live.repo.root)]) == 0
        switched = hammer.wait_for(lambda o: o.version == 2, 20, timeout=60)
        done = hammer.count(lambda o: True)
        assert hammer.wait_for(lambda o: True, done + 10, timeout=30)
    outcomes = hammer.outcomes
    assert switched, f"responses never came from version 2 ({len(outcomes)} requests)"
    failed = [(o.status, o.request_id) for o in outcomes if o.status != 200]
    assert not failed, f"{len(failed)} of {len(outcomes)} requests failed: {failed[:5]}"
    first_new = min(o.started for o in outcomes if o.version == 2)
    assert not [o for o in outcomes if o.version == 1 and o.started > first_new + 2]
    assert "next config poll" in capsys.readouterr().out


def test_a_canary_on_a_model_without_stable_gets_only_its_share(live):
    with httpx.Client(timeout=30) as client:

        def versions(count: int) -> list[int]:
            served = []
            for _ in range(count):
                response = client.post(
                    live.predict_url(SKLEARN_MODEL),
                    json={"instances": [ROW]},
                    headers={"x-request-id": uuid.uuid4().hex},
                )
                assert response.status_code == 200, response.text
                served.append(response.json()["model"]["version"])
            return served

        assert set(versions(5)) == {1}  # no labels yet: the server's policy (version 1)
        watch = promotion.GrpcServerWatch(live.grpc_target, timeout=60)
        promotion.promote(live.repo, SKLEARN_MODEL, 2, "canary", watch=watch)
        assert live.repo.labels(SKLEARN_MODEL) == {"stable": 1, "canary": 2}
        time.sleep(LABELS_MISSING_TTL + 0.5)  # the gateway re-asks for missing labels
        served = versions(300)
    share = served.count(2) / len(served)
    assert set(served) == {1, 2}
    assert 0.10 < share < 0.30, f"canary share {share:.2f}, configured {CANARY_PERCENT}%"
