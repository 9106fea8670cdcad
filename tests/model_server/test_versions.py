"""Versions under load: new versions switch in without failures, broken ones are reported,
labels move only to AVAILABLE versions, config reloads (only for callers the reload policy
allows, only inside the model repository), and concurrent calls are merged into batches."""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import socket
import threading
import time
from pathlib import Path

import grpc
import httpx
import pytest
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from core.contract import KERAS_MODEL, SKLEARN_MODEL
from load_tests.grpc_payloads import predict_request
from load_tests.models import copy_version_atomically
from service.model_server.control import SECRET_METADATA
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


def reload(channel, config, secret: str | None, timeout: float = 120):
    metadata = [(SECRET_METADATA, secret)] if secret is not None else None
    request = model_management_pb2.ReloadConfigRequest(config=config)
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    return stub.HandleReloadConfigRequest(request, timeout=timeout, metadata=metadata)


def restore(channel, models, secret: str) -> None:
    config = read_config_file(models.repo.config_path)
    assert reload(channel, config, secret).status.error_code == 0


def refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def test_reload_config_adds_and_removes_models(channel, models, split, reload_secret):
    predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    config = read_config_file(models.repo.config_path)
    alias = config.model_config_list.config.add()
    alias.name = "alias"
    alias.base_path = str(models.root / KERAS_MODEL)
    alias.model_platform = "tensorflow"
    try:
        assert reload(channel, config, reload_secret).status.error_code == 0
        reply = predict.Predict(predict_request(split.test.head(2), "alias"), timeout=30)
        assert reply.model_spec.name == "alias" and reply.model_spec.version.value == 1

        duplicate = model_server_config_pb2.ModelServerConfig()
        duplicate.CopyFrom(config)
        duplicate.model_config_list.config.add().CopyFrom(alias)
        error = refused(lambda: reload(channel, duplicate, reload_secret, timeout=60))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        restore(channel, models, reload_secret)
    error = refused(
        lambda: predict.Predict(predict_request(split.test.head(2), "alias"), timeout=30)
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_reload_without_the_shared_secret_is_refused(channel, models, split):
    config = read_config_file(models.repo.config_path)
    config.model_config_list.config.add(
        name="intruder", base_path=SKLEARN_MODEL, model_platform="sklearn"
    )
    for secret in (None, "wrong-secret-of-enough-length"):
        error = refused(lambda secret=secret: reload(channel, config, secret, timeout=30))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert SECRET_METADATA in error.details()
    predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    error = refused(lambda: predict.Predict(predict_request(split.test.head(1), "intruder")))
    assert error.code() == grpc.StatusCode.NOT_FOUND


@pytest.fixture
def outside_version(models, tmp_path) -> Path:
    """A valid model folder outside the model repository (it would load if allowed)."""
    outside = tmp_path / "elsewhere"
    shutil.copytree(models.repo.version_dir(SKLEARN_MODEL, 1), outside / "1")
    return outside


def test_reload_pointing_outside_the_repository_is_refused(
    channel, models, split, reload_secret, outside_version
):
    link = models.root / "link_outside"
    link.symlink_to(outside_version, target_is_directory=True)
    try:
        for base_path in (
            str(outside_version),  # absolute, outside
            f"../{outside_version.parent.name}/{outside_version.name}",  # dot-dot
            str(models.root / ".." / "x"),
            link.name,  # a symlink inside the repository pointing outside
        ):
            config = read_config_file(models.repo.config_path)
            config.model_config_list.config.add(
                name="escape", base_path=base_path, model_platform="sklearn"
            )
            error = refused(lambda config=config: reload(channel, config, reload_secret))
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED, base_path
            assert "outside the model repository" in error.details()
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        error = refused(lambda: predict.Predict(predict_request(split.test.head(1), "escape")))
        assert error.code() == grpc.StatusCode.NOT_FOUND
    finally:
        link.unlink()


def test_a_version_folder_linking_outside_is_not_loaded(
    channel, models, split, reload_secret, outside_version
):
    inside = models.root / "linked_versions"
    inside.mkdir()
    (inside / "1").symlink_to(outside_version / "1", target_is_directory=True)
    config = read_config_file(models.repo.config_path)
    config.model_config_list.config.add(
        name="linked", base_path=inside.name, model_platform="sklearn"
    )
    try:
        assert reload(channel, config, reload_secret).status.error_code == 0
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        error = refused(lambda: predict.Predict(predict_request(split.test.head(1), "linked")))
        assert error.code() == grpc.StatusCode.NOT_FOUND
    finally:
        restore(channel, models, reload_secret)
        shutil.rmtree(inside)


def non_loopback_address() -> str | None:
    """This host's address on its default route (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if ipaddress.ip_address(address).is_loopback else address


def test_reload_from_a_non_loopback_peer_is_refused(servers, models):
    """The single-model server binds every interface and allows reloads from loopback only."""
    single = servers["single"]
    address = non_loopback_address()
    if address is None:
        pytest.skip("this host has no non-loopback IPv4 address to connect from")
    config = model_server_config_pb2.ModelServerConfig()
    config.model_config_list.config.add(
        name=SKLEARN_MODEL,
        base_path=str(models.root / SKLEARN_MODEL),
        model_platform="sklearn",
    )
    with grpc.insecure_channel(f"{address}:{single.ports['grpc']}") as remote:
        error = refused(lambda: reload(remote, config, None, timeout=30))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "only from loopback" in error.details()
    with grpc.insecure_channel(single.address("grpc")) as local:
        assert reload(local, config, None).status.error_code == 0


def label_version(channel, model: str, label: str) -> int:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = model
    request.model_spec.version_label = label
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    return stub.GetModelMetadata(request, timeout=30).model_spec.version.value


def test_a_label_moves_only_once_its_version_is_available(channel, models, reload_secret):
    """A config naming a version that is not loaded yet keeps the label where it was; so does
    one naming a version that fails to load, and its old version stays loaded."""
    name = "housing_labelled"
    folder = models.root / name
    shutil.copytree(models.repo.version_dir(SKLEARN_MODEL, 1), folder / "1")

    def config_with(stable: int):
        config = read_config_file(models.repo.config_path)
        entry = config.model_config_list.config.add(
            name=name, base_path=name, model_platform="sklearn"
        )
        entry.model_version_policy.specific.versions.append(stable)
        entry.version_labels["stable"] = stable
        return config

    try:
        assert reload(channel, config_with(1), reload_secret).status.error_code == 0
        assert label_version(channel, name, "stable") == 1
        assert reload(channel, config_with(2), reload_secret).status.error_code == 0
        time.sleep(1.0)  # several file polls: version 2 does not exist yet
        assert label_version(channel, name, "stable") == 1
        copy_version_atomically(models.repo.version_dir(SKLEARN_MODEL, 2), folder, 2)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and label_version(channel, name, "stable") != 2:
            time.sleep(0.1)
        assert label_version(channel, name, "stable") == 2

        tampered = folder / ".incoming-3"
        shutil.copytree(folder / "2", tampered)
        (tampered / JOBLIB_NAME).write_bytes(b"not the pickle the manifest describes")
        tampered.rename(folder / "3")
        assert reload(channel, config_with(3), reload_secret).status.error_code == 0
        status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec={"name": name}), timeout=30
        )
        states = {s.version: s for s in status.model_version_status}
        assert states[3].state == END and "SHA-256" in states[3].status.error_message
        assert states[2].state == AVAILABLE
        assert label_version(channel, name, "stable") == 2
    finally:
        restore(channel, models, reload_secret)
        shutil.rmtree(folder)


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
