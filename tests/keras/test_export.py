"""The exported SavedModel against the ▶ signature contract, read back with plain TensorFlow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from core.contract import CATEGORICAL_FEATURE, FEATURES, KERAS_MODEL, OUTPUT_NAME, TARGET
from training.evaluation import regression_report
from training.keras_export import KERAS_FILE, WARMUP_FILE, signature_predictor
from training.keras_preprocessing import to_tensors
from training.repository import ModelRepository, read_manifest, tree_sha256


def test_signature_matches_the_contract(signature):
    args, kwargs = signature.structured_input_signature
    assert args == ()
    assert set(kwargs) == set(FEATURES)
    for name, spec in kwargs.items():
        expected = tf.string if name == CATEGORICAL_FEATURE else tf.float32
        assert spec.dtype == expected, name
        assert spec.shape.as_list() == [None], name
    outputs = signature.structured_outputs
    assert list(outputs) == [OUTPUT_NAME]
    assert outputs[OUTPUT_NAME].dtype == tf.float32
    assert outputs[OUTPUT_NAME].shape.as_list() == [None]


def test_only_serving_default_is_exported(published):
    loaded = tf.saved_model.load(str(published.path))
    assert list(loaded.signatures) == ["serving_default"]


def test_saved_model_equals_the_in_memory_model(published, signature, split):
    rows = split.test.head(300)
    served = signature(**to_tensors(rows))[OUTPUT_NAME].numpy()
    in_memory = published.serving.predict(to_tensors(rows), verbose=0)[OUTPUT_NAME]
    np.testing.assert_allclose(served, np.ravel(in_memory), rtol=1e-4)
    assert served.std() > 0, "a constant prediction means the features are not wired"


def test_predictions_are_in_usd(signature, split):
    served = signature(**to_tensors(split.test.head(500)))[OUTPUT_NAME].numpy()
    assert 50_000 < float(np.median(served)) < 500_001


def test_missing_bedrooms_and_unknown_category_are_finite(signature, split):
    rows = split.test.head(4).copy()
    rows["total_bedrooms"] = np.nan
    rows[CATEGORICAL_FEATURE] = ["MARS", "", "inland", "<1H OCEAN"]
    out = signature(**to_tensors(rows))[OUTPUT_NAME].numpy()
    assert out.shape == (4,)
    assert np.isfinite(out).all()


def test_missing_bedrooms_means_the_training_median(published, signature, split):
    """NaN is imputed in the graph with the TRAINING median, as the sklearn pipeline does."""
    median = read_manifest(published.path)["preprocessing"]["medians"]["total_bedrooms"]
    train = split.train.sample(n=2_000, random_state=7)
    fit = train.drop(index=train.sample(frac=0.1, random_state=7).index)
    assert median == pytest.approx(fit["total_bedrooms"].median())
    rows = split.test.head(3).copy()
    with_nan = rows.assign(total_bedrooms=np.nan)
    with_median = rows.assign(total_bedrooms=median)
    np.testing.assert_allclose(
        signature(**to_tensors(with_nan))[OUTPUT_NAME].numpy(),
        signature(**to_tensors(with_median))[OUTPUT_NAME].numpy(),
        rtol=1e-5,
    )


@pytest.mark.parametrize("rows", [1, 1_000])
def test_batches_of_one_and_a_thousand(signature, split, rows):
    frame = split.test.head(rows)
    out = signature(**to_tensors(frame))[OUTPUT_NAME].numpy()
    assert out.shape == (rows,)
    assert np.isfinite(out).all()


def test_a_row_does_not_depend_on_its_batch(signature, split):
    frame = split.test.head(50)
    batch = signature(**to_tensors(frame))[OUTPUT_NAME].numpy()
    single = signature(**to_tensors(frame.iloc[[17]]))[OUTPUT_NAME].numpy()
    # float32 kernels round differently per batch shape (~1e-5); a real dependence is far larger
    np.testing.assert_allclose(single[0], batch[17], rtol=1e-3)


def test_warmup_file_holds_prediction_logs(published):
    path = published.path / WARMUP_FILE
    records = list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())
    assert records
    for record in records:
        log = prediction_log_pb2.PredictionLog.FromString(record)
        assert log.WhichOneof("log_type") == "predict_log"
        request = log.predict_log.request
        assert request.model_spec.name == KERAS_MODEL
        assert request.model_spec.signature_name == "serving_default"
        assert set(request.inputs) == set(FEATURES)
        sizes = {tf.make_ndarray(tensor).shape for tensor in request.inputs.values()}
        assert len(sizes) == 1 and len(next(iter(sizes))) == 1


def test_warmup_requests_run_through_the_signature(published, signature):
    for record in tf.data.TFRecordDataset(str(published.path / WARMUP_FILE)).as_numpy_iterator():
        request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
        tensors = {name: tf.constant(tf.make_ndarray(t)) for name, t in request.inputs.items()}
        assert np.isfinite(signature(**tensors)[OUTPUT_NAME].numpy()).all()


def test_manifest_metrics_equal_a_re_evaluation(published, split):
    manifest = read_manifest(published.path)
    predict = signature_predictor(published.path)
    report = regression_report(split.test[TARGET].to_numpy(), predict(split.test[list(FEATURES)]))
    for key, value in report.items():
        np.testing.assert_allclose(manifest["metrics"][key], value, rtol=1e-6, err_msg=key)
    assert manifest["metrics"]["test_rows"] == 4_128
    assert published.result["metrics"] == manifest["metrics"]


def test_manifest_artifact_and_repository(published):
    manifest = read_manifest(published.path)
    assert manifest["model"] == KERAS_MODEL
    assert manifest["platform"] == "tensorflow"
    assert manifest["artifact"]["path"] == "."
    assert manifest["artifact"]["sha256"] == tree_sha256(published.path)
    assert manifest["artifact"]["size_bytes"] > 0
    assert manifest["reference"] == {"path": "reference.parquet", "rows": 2_000}
    assert manifest["hyperparameters"]["arch"] == "wide_deep"
    repo = ModelRepository(published.models_dir)
    assert repo.versions(KERAS_MODEL) == [published.result["version"]]
    entry = repo.find_config(repo.read_config(), KERAS_MODEL)
    assert entry is not None and entry.model_platform == "tensorflow"


def test_reference_holds_the_models_predictions(published, signature):
    reference = pd.read_parquet(published.path / "reference.parquet")
    assert list(reference.columns) == [*FEATURES, TARGET, "prediction"]
    served = signature(**to_tensors(reference.head(20)))[OUTPUT_NAME].numpy()
    np.testing.assert_allclose(reference["prediction"].head(20), served, rtol=1e-5)


def test_keras_file_reloads_for_retraining(published, split):
    import keras

    model = keras.models.load_model(published.path / KERAS_FILE)
    rows = split.test.head(20)
    np.testing.assert_allclose(
        np.ravel(model.predict(to_tensors(rows), verbose=0)[OUTPUT_NAME]),
        np.ravel(published.serving.predict(to_tensors(rows), verbose=0)[OUTPUT_NAME]),
        rtol=1e-5,
    )


def test_results_json_and_training_artifacts(published):
    results = json.loads(Path(published.result["results"]).read_text())
    assert results["version"] == published.result["version"]
    assert results["metrics"] == published.result["metrics"]
    run = Path(published.result["run_dir"])
    assert run.parent.name == "train-keras"
    assert list(run.glob("tensorboard/**/events.out.tfevents.*"))
    assert (run / "checkpoint.keras").is_file()
