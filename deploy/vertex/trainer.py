"""Entry point of the Vertex CustomJob / HyperparameterTuningJob container.

``python -m deploy.vertex.trainer --epochs=N [--arch=A] [--learning_rate=..] [--n_neurons=..]
[--n_hidden=..] [--optimizer=..]``: trains with ``pipelines.train_keras.train_keras`` into a
scratch model repository, reports the validation RMSE to the tuning service (cloudml-hypertune's
metric-file format, written directly), and copies the SavedModel version to ``AIP_MODEL_DIR``
(a ``gs://`` folder Vertex sets from the job's ``base_output_dir``).

On several machines (``vertex train --replica-count N``) Vertex sets ``TF_CONFIG`` (a chief
and workers); every process then trains under MultiWorkerMirroredStrategy and exports into
its own scratch folder (saving is collective), and only the chief reports the metric and
copies the model out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from core.contract import KERAS_MODEL
from training.repository import ModelRepository

DEFAULT_METRIC_FILE = "/tmp/hypertune/output.metrics"
VALIDATION_KEYS = ("val_rmse", "validation_rmse", "cv_rmse")


def report_metric(tag: str, value: float, step: int = 0) -> Path:
    """Write the metric the way ``hypertune.HyperTune`` does (JSON lines, values as strings).

    Vertex reads ``CLOUD_ML_HP_METRIC_FILE`` (default ``/tmp/hypertune/output.metrics``);
    the trial id comes from ``CLOUD_ML_TRIAL_ID``.
    """
    path = Path(os.environ.get("CLOUD_ML_HP_METRIC_FILE", DEFAULT_METRIC_FILE))
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {
        "timestamp": time.time(),
        "trial": str(os.environ.get("CLOUD_ML_TRIAL_ID", 0)),
        tag: str(float(value)),
        "global_step": str(int(step)),
    }
    with path.open("a") as handle:
        handle.write(json.dumps(entry, sort_keys=True) + "\n")
    return path


def validation_rmse(manifest: dict[str, Any]) -> float:
    metrics = manifest.get("metrics", {})
    for key in VALIDATION_KEYS:
        if key in metrics:
            return float(metrics[key])
    raise SystemExit(
        f"trainer: the manifest has no validation RMSE (looked for {', '.join(VALIDATION_KEYS)})"
    )


def export(version_dir: Path, destination: str) -> list[str]:
    """Copy the version folder to ``destination`` (``gs://`` via ADC, or a local folder)."""
    if destination.startswith("gs://"):
        from google.cloud.storage import Client as StorageClient

        from deploy.vertex.gcs import upload_folder

        return upload_folder(StorageClient(), version_dir, destination.rstrip("/"))
    shutil.copytree(version_dir, destination, dirs_exist_ok=True)
    return [str(p) for p in Path(destination).rglob("*") if p.is_file()]


# The tuning job's parameter names (the book's) -> the Keras trainer's ModelConfig fields.
TUNED_FIELDS = {
    "learning_rate": "learning_rate",
    "n_neurons": "units",
    "n_hidden": "hidden_layers",
    "optimizer": "optimizer",
}


def cluster_role(environ: dict[str, str] | None = None) -> tuple[bool, bool]:
    """(distributed, chief) from ``TF_CONFIG``: more than one chief/worker task makes a
    distributed run; the chief is the ``chief`` task, or worker 0 when there is none."""
    config = json.loads((environ or os.environ).get("TF_CONFIG") or "{}")
    cluster = config.get("cluster", {})
    tasks = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    task = config.get("task", {})
    kind, index = task.get("type", "chief"), int(task.get("index", 0))
    chief = kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster)
    return tasks > 1, chief


def train(models_dir: Path, args: argparse.Namespace, strategy: str = "auto") -> tuple[int, Path]:
    """Train with the job's settings into ``models_dir``; the version it published."""
    from pipelines.train_keras import train_keras

    overrides = {
        field: getattr(args, name)
        for name, field in TUNED_FIELDS.items()
        if getattr(args, name) is not None
    }
    extra = {"arch": args.arch} if args.arch else {}
    result = train_keras(
        models_dir,
        epochs=args.epochs,
        sample=args.sample,
        overrides=overrides,
        strategy=strategy,
        runs_dir=models_dir / "runs",
        **extra,
    )
    version = int(result["version"])
    return version, ModelRepository(models_dir).version_dir(KERAS_MODEL, version)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m deploy.vertex.trainer", description=__doc__)
    parser.add_argument("--epochs", type=int, default=100, help="training epochs")
    parser.add_argument("--arch", help="model architecture")
    parser.add_argument("--sample", type=int, help="train on this many rows (smoke runs)")
    parser.add_argument("--learning_rate", type=float, help="tuned: learning rate")
    parser.add_argument("--n_neurons", type=int, help="tuned: units per hidden layer")
    parser.add_argument("--n_hidden", type=int, help="tuned: hidden layers")
    parser.add_argument("--optimizer", choices=("sgd", "adam"), help="tuned: optimizer")
    parser.add_argument(
        "--model-dir",
        default=os.environ.get("AIP_MODEL_DIR"),
        help="where the SavedModel goes (default: $AIP_MODEL_DIR)",
    )
    parser.add_argument(
        "--metric-tag",
        default=os.environ.get("CLOUD_ML_HP_METRIC_TAG", "val_rmse"),
        help="hyperparameter metric tag (default: $CLOUD_ML_HP_METRIC_TAG or val_rmse)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    distributed, chief = cluster_role()
    strategy = "auto"
    if distributed:
        from training.keras_models import distribution_strategy

        strategy = "multi_worker"
        distribution_strategy(strategy)  # before any other TensorFlow op
    with tempfile.TemporaryDirectory(prefix="housing-vertex-") as scratch:
        version, folder = train(Path(scratch), args, strategy)
        manifest = ModelRepository(Path(scratch)).manifest(KERAS_MODEL, version)
        rmse = validation_rmse(manifest)
        if not chief:
            print(json.dumps({"role": "worker", args.metric_tag: rmse}))
            return 0
        metric_file = report_metric(args.metric_tag, rmse, step=args.epochs)
        exported = export(folder, args.model_dir) if args.model_dir else []
    print(
        json.dumps(
            {
                "role": "chief",
                "distributed": distributed,
                args.metric_tag: rmse,
                "metric_file": str(metric_file),
                "model_dir": args.model_dir,
                "files": len(exported),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
