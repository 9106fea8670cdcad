"""Small, real models published into a models repository for load and fault runs.

A full-size model would make the tests slow; what the tests need is the real artifact
formats (a checksummed joblib pipeline, a SavedModel with the service's signature) going
through the real repository and server. Also the helpers that break a version on purpose.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline, make_pipeline

from core.contract import (
    CATEGORICAL_FEATURE,
    FEATURES,
    KERAS_MODEL,
    NUMERIC_FEATURES,
    OUTPUT_NAME,
    SKLEARN_MODEL,
)
from training.data import features_and_target
from training.features import preprocessing
from training.repository import (
    JOBLIB_NAME,
    PLATFORM_SKLEARN,
    PLATFORM_TENSORFLOW,
    ModelRepository,
    tree_sha256,
    write_joblib_artifact,
)


def small_sklearn(
    train: pd.DataFrame, rows: int = 2_000, trees: int = 10, seed: int = 42
) -> Pipeline:
    """The book's preprocessing + a small forest (``trees=0``: a LinearRegression), fitted on
    a ``rows`` sample drawn with ``seed`` (a second or two). A linear head is smooth, so the
    float32 rounding of the wire moves its predictions by cents, not by a tree split."""
    sample = train.sample(n=min(rows, len(train)), random_state=seed)
    X, y = features_and_target(sample)
    regressor = (
        RandomForestRegressor(n_estimators=trees, max_depth=8, random_state=seed, n_jobs=1)
        if trees
        else LinearRegression()
    )
    return make_pipeline(preprocessing(n_clusters=5, random_state=42), regressor).fit(X, y)


def publish_sklearn(repo: ModelRepository, model: Pipeline, name: str = SKLEARN_MODEL) -> int:
    def write(staging: Path) -> dict[str, Any]:
        return {"framework": "scikit-learn", "artifact": write_joblib_artifact(staging, model)}

    version, _ = repo.publish(name, PLATFORM_SKLEARN, write)
    return version


def publish_tiny_savedmodel(
    repo: ModelRepository, scale: float = 100_000.0, name: str = KERAS_MODEL
) -> int:
    """A SavedModel with the ▶ signature computing :func:`tiny_savedmodel_formula`."""
    import tensorflow as tf

    specs = {n: tf.TensorSpec([None], tf.float32, name=n) for n in NUMERIC_FEATURES}
    specs[CATEGORICAL_FEATURE] = tf.TensorSpec([None], tf.string, name=CATEGORICAL_FEATURE)

    class Formula(tf.Module):
        @tf.function(input_signature=[specs])
        def serve(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
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

    @tf.function(input_signature=[specs[n] for n in FEATURES])
    def serving_default(*tensors: tf.Tensor) -> dict[str, tf.Tensor]:
        return module.serve(dict(zip(FEATURES, tensors, strict=True)))

    def write(staging: Path) -> dict[str, Any]:
        tf.saved_model.save(module, str(staging), signatures={"serving_default": serving_default})
        return {
            "framework": "tensorflow",
            "artifact": {"path": ".", "sha256": tree_sha256(staging)},
        }

    version, _ = repo.publish(name, PLATFORM_TENSORFLOW, write)
    return version


def tiny_savedmodel_formula(frame: pd.DataFrame, scale: float = 100_000.0) -> np.ndarray:
    """What :func:`publish_tiny_savedmodel` computes, in numpy (float32 like the graph)."""
    f32 = {name: frame[name].to_numpy(np.float32) for name in NUMERIC_FEATURES}
    bedrooms = np.nan_to_num(f32["total_bedrooms"], nan=0.0)
    inland = (frame[CATEGORICAL_FEATURE] == "INLAND").to_numpy(np.float32)
    return (
        np.float32(scale) * f32["median_income"]
        + np.float32(10.0) * bedrooms
        - np.float32(50_000.0) * inland
        + np.float32(100.0) * f32["housing_median_age"]
    )


def copy_version_atomically(source: Path, model_dir: Path, version: int) -> Path:
    """Copy a version folder under a hidden name, then rename: pollers see all or nothing."""
    staging = model_dir / f".incoming-{version}"
    shutil.copytree(source, staging)
    target = model_dir / str(version)
    staging.rename(target)
    return target


def tamper_joblib(repo: ModelRepository, name: str = SKLEARN_MODEL) -> int:
    """Publish a new version whose joblib bytes no longer match the manifest's SHA-256."""
    source = repo.version_dir(name, repo.versions(name)[-1])

    def write(staging: Path) -> dict[str, Any]:
        shutil.copy(source / JOBLIB_NAME, staging / JOBLIB_NAME)
        with (staging / JOBLIB_NAME).open("r+b") as fh:
            fh.seek(100)
            fh.write(b"tampered")
        return repo.manifest(name, int(source.name))

    version, _ = repo.publish(name, PLATFORM_SKLEARN, write)
    return version


def truncated_savedmodel(repo: ModelRepository) -> int:
    """Publish a new SavedModel version whose saved_model.pb is cut in half after its
    manifest recorded the tree SHA-256 (the server refuses it before loading)."""
    source = repo.version_dir(KERAS_MODEL, repo.versions(KERAS_MODEL)[-1])

    def write(staging: Path) -> dict[str, Any]:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        (staging / "manifest.json").unlink()
        pb = staging / "saved_model.pb"
        pb.write_bytes(pb.read_bytes()[: pb.stat().st_size // 2])
        return repo.manifest(KERAS_MODEL, int(source.name))

    version, _ = repo.publish(KERAS_MODEL, PLATFORM_TENSORFLOW, write)
    return version
