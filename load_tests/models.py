"""Small, real models published into a models repository for load and fault runs.

A full-size model would make the tests slow; what the tests need is the real artifact
formats (a checksummed joblib pipeline, a SavedModel with the service's signature) going
through the real repository and server. Also the helpers that break a version on purpose.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.ensemble import RandomForestRegressor
from sklearn.pipeline import Pipeline, make_pipeline

from core.contract import FEATURES, KERAS_MODEL, NUMERIC_FEATURES, OUTPUT_NAME, SKLEARN_MODEL
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


def small_sklearn(train: pd.DataFrame, rows: int = 2_000, trees: int = 10) -> Pipeline:
    """The book's preprocessing + a small forest, fitted on a sample (a second or two)."""
    sample = train.sample(n=min(rows, len(train)), random_state=42)
    X, y = features_and_target(sample)
    model = make_pipeline(
        preprocessing(n_clusters=5, random_state=42),
        RandomForestRegressor(n_estimators=trees, max_depth=8, random_state=42, n_jobs=1),
    )
    return model.fit(X, y)


def publish_sklearn(repo: ModelRepository, model: Pipeline, name: str = SKLEARN_MODEL) -> int:
    def write(staging: Path) -> dict[str, Any]:
        return {"framework": "scikit-learn", "artifact": write_joblib_artifact(staging, model)}

    version, _ = repo.publish(name, PLATFORM_SKLEARN, write)
    return version


def publish_tiny_savedmodel(repo: ModelRepository, scale: float = 100_000.0) -> int:
    """A SavedModel with the ▶ signature: value = scale * median_income (any batch size)."""
    import tensorflow as tf

    specs = {n: tf.TensorSpec([None], tf.float32, name=n) for n in NUMERIC_FEATURES}
    specs["ocean_proximity"] = tf.TensorSpec([None], tf.string, name="ocean_proximity")

    class Tiny(tf.Module):
        @tf.function(input_signature=[specs])
        def serve(self, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
            return {OUTPUT_NAME: inputs["median_income"] * scale}

    tiny = Tiny()

    @tf.function(input_signature=[specs[n] for n in FEATURES])
    def serving_default(*args: tf.Tensor) -> dict[str, tf.Tensor]:
        return tiny.serve(dict(zip(FEATURES, args, strict=True)))

    def write(staging: Path) -> dict[str, Any]:
        tf.saved_model.save(tiny, str(staging), signatures={"serving_default": serving_default})
        return {
            "framework": "tensorflow",
            "artifact": {"path": ".", "sha256": tree_sha256(staging)},
        }

    version, _ = repo.publish(KERAS_MODEL, PLATFORM_TENSORFLOW, write)
    return version


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
