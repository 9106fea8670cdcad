"""Export a trained Keras model as the next ``housing_keras`` version: a TF Serving SavedModel.

The version folder holds the SavedModel (signature ``serving_default`` over the 9 raw
features, output ``median_house_value`` in USD), TF Serving's warm-up requests, the
``.keras`` file for retraining, ``reference.parquet`` and the manifest. Metrics come
from the EXPORTED graph, reloaded from disk, so they describe exactly what is served.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from core.contract import (
    CATEGORICAL_FEATURE,
    FEATURES,
    KERAS_MODEL,
    OUTPUT_NAME,
    SIGNATURE_NAME,
    TARGET,
)
from training.data import Split
from training.evaluation import regression_report
from training.keras_preprocessing import to_tensors
from training.provenance import data_info, library_versions
from training.reference import reference_sample, write_reference
from training.repository import PLATFORM_TENSORFLOW, ModelRepository, tree_sha256

WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
KERAS_FILE = "assets.extra/model.keras"
WARMUP_BATCH_SIZES = (1, 8, 64)
PREDICT_CHUNK = 8192


def input_signature() -> dict[str, tf.TensorSpec]:
    """The ▶ contract: one ``[batch]`` tensor per feature, named as the feature."""
    return {
        name: tf.TensorSpec(
            [None], tf.string if name == CATEGORICAL_FEATURE else tf.float32, name=name
        )
        for name in FEATURES
    }


def save_savedmodel(serving: keras.Model, directory: Path) -> None:
    """Write ``serving`` as a SavedModel whose only signature is ``serving_default``."""
    archive = keras.export.ExportArchive()
    archive.track(serving)

    def serve(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        usd = serving(features, training=False)[OUTPUT_NAME]
        return {OUTPUT_NAME: tf.reshape(tf.cast(usd, tf.float32), [-1])}

    archive.add_endpoint(SIGNATURE_NAME, serve, input_signature=[input_signature()])
    archive.write_out(str(directory), verbose=False)


def signature_predictor(directory: Path) -> Callable[[pd.DataFrame], np.ndarray]:
    """Load a SavedModel with plain TensorFlow; predict USD for a DataFrame in chunks."""
    signature = tf.saved_model.load(str(directory)).signatures[SIGNATURE_NAME]

    def predict(frame: pd.DataFrame) -> np.ndarray:
        parts = [
            signature(**to_tensors(frame.iloc[start : start + PREDICT_CHUNK]))[OUTPUT_NAME]
            for start in range(0, len(frame), PREDICT_CHUNK)
        ]
        return np.concatenate([part.numpy() for part in parts]).astype(float)

    return predict


def warmup_requests(frame: pd.DataFrame, model_name: str = KERAS_MODEL) -> list[bytes]:
    """Serialized ``PredictionLog``s (one PredictRequest per batch size) for TF Serving."""
    records = []
    for size in WARMUP_BATCH_SIZES:
        rows = frame.head(size)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = SIGNATURE_NAME
        for name, tensor in to_tensors(rows).items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(tensor.numpy(), tensor.dtype))
        log = prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request)
        )
        records.append(log.SerializeToString())
    return records


def write_warmup(directory: Path, frame: pd.DataFrame) -> Path:
    """TF Serving's warm-up file: a TFRecord of PredictionLogs under assets.extra/."""
    path = directory / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in warmup_requests(frame):
            writer.write(record)
    return path


def directory_size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def publish_keras(
    models_dir: Path,
    serving: keras.Model,
    split: Split,
    manifest_extra: dict[str, Any],
) -> tuple[int, Path, dict[str, Any]]:
    """Export, re-load and evaluate, and publish the next ``housing_keras`` version.

    Returns (version, version folder, manifest). ``manifest_extra`` supplies the trainer's
    keys (``hyperparameters``, extra ``metrics`` such as validation RMSE, ``training``).
    """

    def write_artifacts(staging: Path) -> dict[str, Any]:
        save_savedmodel(serving, staging)
        write_warmup(staging, split.train.sample(n=max(WARMUP_BATCH_SIZES), random_state=42))
        serving.save(staging / KERAS_FILE)

        started = time.perf_counter()
        predict = signature_predictor(staging)
        load_seconds = time.perf_counter() - started
        metrics = regression_report(
            split.test[TARGET].to_numpy(), predict(split.test[list(FEATURES)])
        )
        reference = write_reference(staging, reference_sample(split.train, predict))
        manifest = {
            "framework": f"keras {keras.__version__} / tensorflow {tf.__version__}",
            "artifact": {
                "path": ".",
                "format": "tensorflow SavedModel",
                "signature": SIGNATURE_NAME,
                "keras_file": KERAS_FILE,
                "warmup_file": WARMUP_FILE,
                "size_bytes": directory_size(staging),
                "load_seconds": round(load_seconds, 3),
                "sha256": tree_sha256(staging),
            },
            "data": data_info(split),
            "libraries": library_versions(),
            "reference": reference,
            **manifest_extra,
            "metrics": {**metrics, **manifest_extra.get("metrics", {})},
        }
        return manifest

    version, path = ModelRepository(models_dir).publish(
        KERAS_MODEL, PLATFORM_TENSORFLOW, write_artifacts
    )
    return version, path, ModelRepository(models_dir).manifest(KERAS_MODEL, version)
