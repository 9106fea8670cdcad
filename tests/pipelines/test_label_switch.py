"""A running model server follows promote and rollback with zero failed requests."""

import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest
from tensorflow_serving.apis import (
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from core.contract import SKLEARN_MODEL
from load_tests import models as test_models
from load_tests import stack
from load_tests.grpc_payloads import predict_request
from pipelines import promotion
from training.repository import ModelRepository

MODEL = SKLEARN_MODEL


class StableTraffic:
    """Sends Predict(label=stable) in a loop; records served versions and failures."""

    def __init__(self, target: str, rows):
        self.request = predict_request(rows, MODEL, label=promotion.STABLE)
        self.channel = grpc.insecure_channel(target)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.served: list[int] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                reply = self.stub.Predict(self.request, timeout=10)
                self.served.append(reply.model_spec.version.value)
            except grpc.RpcError as exc:
                self.failures.append(f"{exc.code().name}: {exc.details()}")

    def wait_for(self, version: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        start = len(self.served)
        while time.monotonic() < deadline:
            recent = self.served[start:]
            if recent[-5:] == [version] * 5:
                return
            time.sleep(0.1)
        raise AssertionError(f"never switched to {version}: {Counter(self.served[start:])}")

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(15)
        self.channel.close()


@pytest.fixture
def repo(tmp_path: Path, split) -> ModelRepository:
    repo = ModelRepository(tmp_path / "models")
    for seed in (1, 2):
        test_models.publish_sklearn(
            repo, test_models.small_sklearn(split.train, trees=0, seed=seed)
        )
    promotion.promote(repo, MODEL, 1)
    return repo


def test_promote_and_rollback_switch_a_running_server_without_errors(repo, split, tmp_path):
    server = stack.model_server(
        repo.config_path,
        tmp_path / "server.log",
        rest_port=0,
        poll_seconds=0.3,
        extra=["--model_config_file_poll_wait_seconds=0.3"],
    )
    with server:
        stack.serving(server)
        target = server.address("grpc")
        watch = promotion.GrpcServerWatch(target, timeout=60)
        with StableTraffic(target, split.test.head(3)) as traffic:
            traffic.wait_for(1)
            promotion.promote(repo, MODEL, 2, watch=watch)
            assert stable_now(traffic) == 2  # it returned once the server serves the change
            traffic.wait_for(2)
            promotion.rollback(repo, MODEL, watch=watch)
            assert stable_now(traffic) == 1
            traffic.wait_for(1)
        assert traffic.failures == []
        assert len(traffic.served) > 20

        # Without --enable_reload_config nobody can swap the models over the network.
        with grpc.insecure_channel(target) as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            request = model_management_pb2.ReloadConfigRequest(config=repo.read_config())
            with pytest.raises(grpc.RpcError) as caught:
                stub.HandleReloadConfigRequest(request, timeout=30)
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "--enable_reload_config" in caught.value.details()


def stable_now(traffic: StableTraffic) -> int:
    return traffic.stub.Predict(traffic.request, timeout=10).model_spec.version.value
