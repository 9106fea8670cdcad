"""Versions under load: new versions switch in without failures, broken ones are reported,
config reloads, and concurrent calls are merged into batches (seen in the metrics)."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time

import grpc
import httpx
import pytest
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from core.contract import KERAS_MODEL, SKLEARN_MODEL
from load_tests.grpc_payloads import predict_request
from load_tests.models import copy_version_atomically
from tests.model_server.conftest import LIVE, METRICS_PATH
from tests.model_server.helpers import metric_value
from training.repository import JOBLIB_NAME, read_config_file

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END


class Traffic(threading.Thread):
    """Continuous Predicts on the live model; records served versions and failures."""

    def __init__(self, target: str, request):
        super().__init__(daemon=True)
        self.target, self.request = target, request
        self.versions: list[int] = []
        self.failures: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        with grpc.insecure_channel(self.target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            while not self.stopping.is_set():
                try:
                    self.versions.append(
                        stub.Predict(self.request, timeout=30).model_spec.version.value
                    )
                except grpc.RpcError as error:
                    self.failures.append(f"{error.code()}: {error.details()}")

    def wait_for(self, version: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (not self.versions or self.versions[-1] != version):
            time.sleep(0.05)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)


def live_status(channel) -> dict[int, get_model_status_pb2.ModelVersionStatus]:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = LIVE
    response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=30)
    return {s.version: s for s in response.model_version_status}


def test_new_version_switches_without_failures_and_broken_one_is_reported(
    server, channel, models, split
):
    live_dir = models.root / LIVE
    traffic = Traffic(server.address("grpc"), predict_request(split.test.head(3), LIVE))
    traffic.start()
    try:
        traffic.wait_for(1)
        copy_version_atomically(models.repo.version_dir(SKLEARN_MODEL, 2), live_dir, 2)
        traffic.wait_for(2)
        assert traffic.versions and traffic.versions[-1] == 2, "version 2 never served"
        time.sleep(0.5)

        # A tampered version 3: its joblib no longer matches the manifest's SHA-256.
        staging = live_dir / ".incoming-3"
        shutil.copytree(models.repo.version_dir(SKLEARN_MODEL, 2), staging)
        broken = staging / JOBLIB_NAME
        broken.write_bytes(broken.read_bytes()[:1000])
        staging.rename(live_dir / "3")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and live_status(channel).get(3, None) is None:
            time.sleep(0.1)
        while time.monotonic() < deadline and live_status(channel)[3].state != END:
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        traffic.stop()
    assert traffic.failures == []
    switch = traffic.versions.index(2)
    assert set(traffic.versions[:switch]) == {1} and set(traffic.versions[switch:]) == {2}
    statuses = live_status(channel)
    assert statuses[3].state == END
    assert "SHA-256" in statuses[3].status.error_message
    assert statuses[2].state == AVAILABLE
    assert statuses[1].state == END and not statuses[1].status.error_message


def test_reload_config_adds_and_removes_models(channel, models, split):
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    config = read_config_file(models.repo.config_path)
    alias = config.model_config_list.config.add()
    alias.name = "alias"
    alias.base_path = str(models.root / KERAS_MODEL)
    alias.model_platform = "tensorflow"
    request = model_management_pb2.ReloadConfigRequest(config=config)
    try:
        response = stub.HandleReloadConfigRequest(request, timeout=120)
        assert response.status.error_code == 0
        reply = predict.Predict(predict_request(split.test.head(2), "alias"), timeout=30)
        assert reply.model_spec.name == "alias" and reply.model_spec.version.value == 1

        duplicate = model_management_pb2.ReloadConfigRequest(config=config)
        duplicate.config.model_config_list.config.add().CopyFrom(alias)
        with pytest.raises(grpc.RpcError) as caught:
            stub.HandleReloadConfigRequest(duplicate, timeout=60)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        original = model_management_pb2.ReloadConfigRequest(
            config=read_config_file(models.repo.config_path)
        )
        assert stub.HandleReloadConfigRequest(original, timeout=120).status.error_code == 0
    with pytest.raises(grpc.RpcError) as caught:
        predict.Predict(predict_request(split.test.head(2), "alias"), timeout=30)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_concurrent_calls_are_merged_into_batches(server, split):
    def batches() -> tuple[float, float]:
        text = httpx.get(server.url("rest") + METRICS_PATH, timeout=30).text
        labels = {"model": KERAS_MODEL, "version": "1"}
        return (
            metric_value(text, "model_server_batch_requests_count", **labels),
            metric_value(text, "model_server_batch_requests_sum", **labels),
        )

    calls_before, requests_before = batches()
    async with grpc.aio.insecure_channel(server.address("grpc")) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_request(split.test.head(1), KERAS_MODEL)
        replies = await asyncio.gather(*(stub.Predict(request, timeout=30) for _ in range(24)))
    assert len(replies) == 24
    calls, requests = batches()
    assert requests - requests_before == 24
    assert calls - calls_before < 24, "no two requests shared a model call"
