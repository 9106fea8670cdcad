"""The model server's choice of serving form, and its fallbacks, on real compiled trees.

Two small models of the default type are trained and published with their compiled trees
(different seeds, so their libraries predict differently). Versions are then broken on
purpose: a library that disagrees with its pipeline but carries a matching checksum,
one whose checksum does not match, a corrupt one, a missing one. Each must fall back to the
feature plan (the pipeline's own estimator) and say so, in the log and in the metric.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.contract import FEATURES, SKLEARN_MODEL
from load_tests import stack
from load_tests.grpc_payloads import predict_request, wire_frame
from pipelines.train_sklearn import train_sklearn
from service.model_server.servables import SklearnServable
from tests.model_server.helpers import metric_value
from training.compiled import COMPILED_NAME, FORM_COMPILED, FORM_PLAN
from training.data import sha256_file
from training.repository import MANIFEST_NAME, ModelRepository, load_sklearn_model

pytestmark = pytest.mark.usefixtures("one_openmp_thread")
QUICK = {"max_iter": 15, "n_models": 2}


@pytest.fixture(scope="module")
def versions(tmp_path_factory, split) -> dict[int, Path]:
    """Versions 1 and 2 of the default model type, trained with different seeds."""
    models_dir = tmp_path_factory.mktemp("compiled_models")
    runs_dir = tmp_path_factory.mktemp("runs")
    paths = {}
    for version, seed in ((1, 42), (2, 7)):
        results = train_sklearn(
            models_dir,
            sample=1_500,
            n_jobs=1,
            runs_dir=runs_dir,
            params={**QUICK, "random_state": seed},
            split=split,
        )
        assert results["version"] == version
        paths[version] = Path(results["path"])
    return paths


def broken_copy(source: Path, target: Path, library: bytes, update_checksum: bool) -> Path:
    """A copy of a version folder with other bytes in its compiled trees."""
    shutil.copytree(source, target)
    (target / COMPILED_NAME).write_bytes(library)
    if update_checksum:
        manifest = json.loads((target / MANIFEST_NAME).read_text())
        manifest["compiled"]["sha256"] = sha256_file(target / COMPILED_NAME)
        (target / MANIFEST_NAME).write_text(json.dumps(manifest))
    return target


def served(servable: SklearnServable, split) -> tuple[np.ndarray, np.ndarray]:
    """(served, pipeline) predictions on 300 test rows."""
    frame = split.test[list(FEATURES)].iloc[:300]
    inputs = {name: frame[name].to_numpy() for name in FEATURES}
    inputs["ocean_proximity"] = frame["ocean_proximity"].astype(object).to_numpy()
    outputs = servable.predict("serving_default", inputs)["median_house_value"]
    return outputs, servable.model.predict(frame)


def assert_falls_back(path: Path, split, caplog, reason: str) -> None:
    caplog.set_level(logging.INFO, logger="housing.model_server")
    servable = SklearnServable(SKLEARN_MODEL, 9, path)
    assert servable.form == FORM_PLAN
    assert f"model {SKLEARN_MODEL} version 9 serves the plan form" in caplog.text
    assert reason in caplog.text
    actual, expected = served(servable, split)
    np.testing.assert_allclose(actual, expected, rtol=1e-6)


def test_the_untouched_versions_serve_compiled(versions, split):
    for path in versions.values():
        servable = SklearnServable(SKLEARN_MODEL, 1, path)
        assert servable.form == FORM_COMPILED
        actual, expected = served(servable, split)
        np.testing.assert_allclose(actual, expected, rtol=1e-5)


def test_a_disagreeing_library_falls_back_despite_its_checksum(versions, tmp_path, split, caplog):
    other = (versions[2] / COMPILED_NAME).read_bytes()
    path = broken_copy(versions[1], tmp_path / "9", other, update_checksum=True)
    # The swapped library really predicts differently from this version's pipeline.
    model = load_sklearn_model(versions[1])
    assert not np.allclose(
        load_sklearn_model(versions[2]).predict(split.test[list(FEATURES)].iloc[:50]),
        model.predict(split.test[list(FEATURES)].iloc[:50]),
        rtol=1e-5,
    )
    assert_falls_back(path, split, caplog, "compiled trees disagree with the pipeline")


def test_a_checksum_mismatch_falls_back(versions, tmp_path, split, caplog):
    library = bytearray((versions[1] / COMPILED_NAME).read_bytes())
    library[-1] ^= 0xFF
    path = broken_copy(versions[1], tmp_path / "9", bytes(library), update_checksum=False)
    assert_falls_back(path, split, caplog, "ChecksumMismatch")


def test_a_corrupt_library_with_its_checksum_falls_back(versions, tmp_path, split, caplog):
    path = broken_copy(versions[1], tmp_path / "9", b"not a shared library", update_checksum=True)
    assert_falls_back(path, split, caplog, "compiled trees unusable")


def test_a_missing_library_falls_back(versions, tmp_path, split, caplog):
    path = tmp_path / "9"
    shutil.copytree(versions[1], path)
    (path / COMPILED_NAME).unlink()
    assert_falls_back(path, split, caplog, "missing artifact")


def test_the_server_reports_the_form_of_each_version(versions, tmp_path, split):
    """A real server: version 1 intact (compiled), version 2 with a disagreeing library
    (plan); the metric says which form serves and both answer like their pipelines."""
    repo = ModelRepository(tmp_path / "models")
    shutil.copytree(versions[1], repo.version_dir(SKLEARN_MODEL, 1))
    broken_copy(
        versions[2],
        repo.version_dir(SKLEARN_MODEL, 2),
        (versions[1] / COMPILED_NAME).read_bytes(),
        update_checksum=True,
    )
    repo.register(SKLEARN_MODEL, "sklearn")
    config = repo.read_config()
    entry = repo.find_config(config, SKLEARN_MODEL)
    entry.model_version_policy.Clear()
    entry.model_version_policy.all.SetInParent()
    repo.write_config(config)
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true, path: "/metrics" }\n')
    server = stack.model_server(
        repo.config_path,
        tmp_path / "server.log",
        extra=[f"--monitoring_config_file={monitoring}"],
    )
    with server.start():
        stack.serving(server)
        import grpc
        import httpx
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        frame = split.test.iloc[:20]
        with grpc.insecure_channel(server.address("grpc")) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            for version in (1, 2):
                reply = stub.Predict(
                    predict_request(frame, SKLEARN_MODEL, version=version), timeout=30
                )
                values = np.asarray(reply.outputs["median_house_value"].float_val)
                expected = load_sklearn_model(versions[version]).predict(wire_frame(frame))
                np.testing.assert_allclose(values, expected, rtol=1e-5)
        text = httpx.get(f"{server.url('rest')}/metrics", timeout=10).text
        log_text = server.log_text()
    form = "model_server_version_form"
    assert metric_value(text, form, version="1", form=FORM_COMPILED) == 1
    assert metric_value(text, form, version="2", form=FORM_PLAN) == 1
    assert metric_value(text, form, version="2", form=FORM_COMPILED) == 0
    assert "version 2 serves the plan form: compiled trees disagree" in log_text
