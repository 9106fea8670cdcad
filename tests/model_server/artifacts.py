"""Small real artifacts for the model server's tests and benchmark.

A joblib pipeline (the book's preprocessing + LinearRegression on a 2,000-row sample) and a
real SavedModel with the ▶ signature, published into a models folder with
``ModelRepository.publish`` so manifests and ``models.config`` are the real thing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.contract import CATEGORICAL_FEATURE, FEATURES, NUMERIC_FEATURES, OUTPUT_NAME
from core.paths import REPO_ROOT
from load_tests.models import publish_sklearn  # noqa: F401 (the tests call artifacts.publish_sklearn)
from training.repository import (
    PLATFORM_TENSORFLOW,
    ModelRepository,
    tree_sha256,
)

SKLEARN = "housing_sklearn"
KERAS = "housing_keras"
SAMPLE_ROWS = 2_000


def fit_sklearn(train: pd.DataFrame, seed: int = 42):
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline

    from training.features import preprocessing

    sample = train.sample(n=SAMPLE_ROWS, random_state=seed)
    model = make_pipeline(preprocessing(), LinearRegression())
    model.fit(sample[list(FEATURES)], sample["median_house_value"])
    return model


def build_saved_model(folder: Path, scale: float) -> None:
    """A SavedModel with the exact signature: a fixed formula of the raw features."""
    import tensorflow as tf

    specs = {name: tf.TensorSpec([None], tf.float32, name=name) for name in NUMERIC_FEATURES}
    specs[CATEGORICAL_FEATURE] = tf.TensorSpec([None], tf.string, name=CATEGORICAL_FEATURE)

    class Formula(tf.Module):
        @tf.function(input_signature=[specs])
        def serve(self, features):
            bedrooms = features["total_bedrooms"]
            bedrooms = tf.where(tf.math.is_nan(bedrooms), tf.zeros_like(bedrooms), bedrooms)
            inland = tf.cast(tf.equal(features[CATEGORICAL_FEATURE], "INLAND"), tf.float32)
            value = (
                scale * features["median_income"]
                + 10.0 * bedrooms
                - 50_000.0 * inland
                + 100.0 * features["housing_median_age"]
            )
            return {OUTPUT_NAME: value}

    module = Formula()

    @tf.function(input_signature=list(specs.values()))
    def serving_default(*tensors):
        return module.serve(dict(zip(specs, tensors, strict=True)))

    tf.saved_model.save(module, str(folder), signatures={"serving_default": serving_default})


def saved_model_formula(frame: pd.DataFrame, scale: float) -> np.ndarray:
    """What ``build_saved_model`` computes, in numpy (float32 like the graph)."""
    f32 = {name: frame[name].to_numpy(np.float32) for name in NUMERIC_FEATURES}
    bedrooms = np.nan_to_num(f32["total_bedrooms"], nan=0.0)
    inland = (frame[CATEGORICAL_FEATURE] == "INLAND").to_numpy(np.float32)
    return (
        np.float32(scale) * f32["median_income"]
        + np.float32(10.0) * bedrooms
        - np.float32(50_000.0) * inland
        + np.float32(100.0) * f32["housing_median_age"]
    )


def publish_saved_model(repo: ModelRepository, scale: float, name: str = KERAS) -> int:
    def write(folder: Path) -> dict[str, Any]:
        build_saved_model(folder, scale)
        return {"framework": "tensorflow", "artifact": {"path": ".", "sha256": tree_sha256(folder)}}

    version, _ = repo.publish(name, PLATFORM_TENSORFLOW, write)
    return version


def copy_version_atomically(source: Path, model_dir: Path, version: int) -> Path:
    """Copy a version folder under a hidden name, then rename: pollers see all or nothing."""
    staging = model_dir / f".incoming-{version}"
    shutil.copytree(source, staging)
    target = model_dir / str(version)
    staging.rename(target)
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """The model server as a real process on free loopback ports."""

    def __init__(self, args: list[str], log_path: Path, rest: bool = True):
        self.port = free_port()
        self.rest_port = free_port() if rest else 0
        self.log_path = log_path
        command = [
            sys.executable,
            "-m",
            "service.model_server",
            "--host",
            "127.0.0.1",
            f"--port={self.port}",
            f"--rest_api_port={self.rest_port}",
            *args,
        ]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
        self.log = log_path.open("w")
        self.process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=self.log, stderr=subprocess.STDOUT, env=env
        )

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def wait_ready(self, timeout: float = 120.0) -> None:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"model server exited:\n{self.log_path.read_text()}")
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"model server not ready in {timeout}s:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
