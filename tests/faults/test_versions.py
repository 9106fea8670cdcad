"""Model versions changing under load: a good one switches over with zero failed requests;
a corrupt one (tampered joblib, truncated SavedModel) is refused while the previous version
keeps serving, and the failure shows in the status API and the metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sklearn.pipeline import Pipeline

from core.contract import KERAS_MODEL, SKLEARN_MODEL
from core.process import ManagedProcess
from load_tests import models
from training.repository import ModelRepository

from .conftest import ROW, Hammer, metric_value, start_gateway

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def gateway(shared_server: ManagedProcess, fault_logs: Path) -> Iterator[ManagedProcess]:
    proc = start_gateway(shared_server, fault_logs, (SKLEARN_MODEL, KERAS_MODEL))
    yield proc
    proc.stop()


def predict_url(gateway: ManagedProcess, model: str) -> str:
    return f"{gateway.url()}/v1/models/{model}:predict"


def serving_version(gateway: ManagedProcess, model: str) -> int:
    response = httpx.post(predict_url(gateway, model), json={"instances": [ROW]}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["model"]["version"]


def wait_version_error(gateway: ManagedProcess, model: str, version: int) -> str:
    """Poll the gateway's status API until ``version`` is reported with an error."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        info = httpx.get(f"{gateway.url()}/v1/models/{model}", timeout=10).json()
        for status in info.get("versions", []):
            if status["version"] == version and status.get("error"):
                return status["error"]
        time.sleep(0.2)
    raise AssertionError(f"{model} v{version} never reported a load error: {info}")


def test_new_version_under_load_has_zero_failed_requests(
    gateway: ManagedProcess, shared_repo: ModelRepository, small_model: Pipeline
) -> None:
    before = serving_version(gateway, SKLEARN_MODEL)
    with Hammer(predict_url(gateway, SKLEARN_MODEL), threads=4) as hammer:
        assert hammer.wait_for(lambda o: o.status == 200, 20, timeout=30)
        new = models.publish_sklearn(shared_repo, small_model)
        switched = hammer.wait_for(lambda o: o.version == new, 20, timeout=60)
    outcomes = hammer.outcomes
    assert new > before
    assert switched, f"responses never came from v{new}"
    failed = [(o.status, o.request_id) for o in outcomes if o.status != 200]
    assert not failed, f"{len(failed)} of {len(outcomes)} requests failed: {failed[:5]}"
    # Old then new, never back: the old version is unloaded only once the new one serves.
    first_new = min(o.started for o in outcomes if o.version == new)
    late_old = [o for o in outcomes if o.version == before and o.started > first_new + 2]
    assert not late_old


@pytest.mark.parametrize(
    ("model", "corrupt", "expected"),
    [
        (SKLEARN_MODEL, models.tamper_joblib, "sha-256"),
        (KERAS_MODEL, models.truncated_savedmodel, "sha-256"),
    ],
    ids=["tampered-joblib", "truncated-savedmodel"],
)
def test_corrupt_version_keeps_previous_serving(
    gateway: ManagedProcess,
    shared_server: ManagedProcess,
    shared_repo: ModelRepository,
    model: str,
    corrupt,
    expected: str,
) -> None:
    serving = serving_version(gateway, model)
    metrics_url = f"{shared_server.url('rest')}/monitoring/prometheus/metrics"
    errors_before = metric_value(
        httpx.get(metrics_url).text,
        "model_server_version_loads_total",
        model=model,
        outcome="error",
    )
    with Hammer(predict_url(gateway, model), threads=3) as hammer:
        bad = corrupt(shared_repo)
        error = wait_version_error(gateway, model, bad)
        done = hammer.count(lambda o: True)
        assert hammer.wait_for(lambda o: True, done + 20, timeout=30)
    outcomes = hammer.outcomes
    assert bad > serving
    assert expected in error.lower(), error
    wrong = [(o.status, o.version) for o in outcomes if (o.status, o.version) != (200, serving)]
    assert not wrong, f"{len(wrong)} of {len(outcomes)} not served by v{serving}: {wrong[:5]}"
    errors_after = metric_value(
        httpx.get(metrics_url).text,
        "model_server_version_loads_total",
        model=model,
        outcome="error",
    )
    assert errors_after >= errors_before + 1
    readyz = httpx.get(f"{gateway.url()}/readyz")
    assert readyz.status_code == 200, readyz.text
