"""``housing train keras``: train a chapter 10 network, export it for TF Serving, publish it.

Validation rows are carved from the training split (never the test set); the test split
is used once, to evaluate the exported SavedModel as reloaded from disk.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import console
from core.errors import UserError
from pipelines.common import DEFAULT_RUNS_DIR, add_models_dir, audit_publish, run_dir, write_results

if TYPE_CHECKING:
    from training.data import Split

ARCHITECTURES = ("mlp", "wide_deep")
STRATEGIES = ("auto", "mirrored", "default", "multi_worker")
DEFAULT_ARCH = "mlp"
DEFAULT_EPOCHS = 60
DEFAULT_BATCH_SIZE = 64
VALIDATION_FRACTION = 0.1
MIN_SAMPLE = 200  # enough rows for the k-means centres, the neighbour folds and validation


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "keras",
        help="train a Keras network and export the next housing_keras SavedModel",
        description=(
            "Train the book's MLP or a Wide & Deep network on the training split (all "
            "preprocessing inside the graph), evaluate the exported SavedModel on the test "
            "split and publish it as the next housing_keras version."
        ),
    )
    parser.add_argument(
        "--arch",
        choices=ARCHITECTURES,
        default=DEFAULT_ARCH,
        help=f"network architecture (default: {DEFAULT_ARCH})",
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=DEFAULT_EPOCHS,
        help=f"maximum epochs; early stopping usually ends sooner (default: {DEFAULT_EPOCHS})",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=DEFAULT_BATCH_SIZE,
        help=f"minibatch size (default: {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="auto",
        help="distribution: auto = MirroredStrategy only when more than one GPU is visible, "
        "mirrored = always MirroredStrategy, default = TensorFlow's default, multi_worker = "
        "MultiWorkerMirroredStrategy over the machines in TF_CONFIG (default: auto)",
    )
    parser.add_argument(
        "--trials",
        type=positive_int,
        default=None,
        help="run a random hyperparameter search with this many trials first, "
        "then train and export the best configuration",
    )
    add_models_dir(parser)
    parser.add_argument(
        "--sample",
        type=positive_int,
        default=None,
        help="train on this many rows of the training split (quick runs); "
        "the evaluation always uses the full test split",
    )
    parser.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    parser.add_argument(
        "--runs-dir",
        type=Path,
        default=DEFAULT_RUNS_DIR,
        help="where the results JSON, checkpoints and TensorBoard logs go (default: ./runs)",
    )
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    result = train_keras(
        models_dir=args.models_dir,
        arch=args.arch,
        epochs=args.epochs,
        sample=args.sample,
        seed=args.seed,
        runs_dir=args.runs_dir,
        strategy=args.strategy,
        batch_size=args.batch_size,
        trials=args.trials,
        # Keras' own bar on a terminal, one line per epoch in logs, nothing under --quiet.
        verbose=0 if console.quiet() else "auto" if sys.stdout.isatty() else 2,
    )
    audit_publish(result, "housing train keras")
    metrics = result["metrics"]
    low, high = metrics["test_rmse_ci95_t"]
    print(
        f"published {result['model']} version {result['version']} at {result['path']}\n"
        f"test RMSE {metrics['test_rmse']:,.0f} USD (95% CI {low:,.0f}-{high:,.0f}), "
        f"validation RMSE {metrics['val_rmse']:,.0f}; results {result['results']}"
    )
    return 0


def train_keras(models_dir: Path | None, **options: Any) -> dict[str, Any]:
    """Train, export, evaluate the exported SavedModel, publish; return the results dict.

    ``options`` are ``run_training``'s keywords (arch, epochs, sample, seed, runs_dir,
    strategy, batch_size, trials, verbose, split, overrides). Keys of the result: model,
    version, path, metrics (the manifest's block), results (JSON path), search (when
    ``trials`` is given). ``split`` replaces the book's split (e.g. retraining on new data);
    its ``test`` part is then the evaluation set. ``overrides`` sets fields of
    ``ModelConfig`` (e.g. ``hidden_layers``, ``units``, ``learning_rate``, ``optimizer``: what
    a tuning job varies).
    """
    return run_training(models_dir, **options)[0]


def run_training(
    models_dir: Path | None,
    arch: str = DEFAULT_ARCH,
    epochs: int = DEFAULT_EPOCHS,
    sample: int | None = None,
    seed: int = 42,
    runs_dir: Path | None = None,
    strategy: str = "auto",
    batch_size: int = DEFAULT_BATCH_SIZE,
    trials: int | None = None,
    verbose: int | str = 0,
    split: Split | None = None,
    overrides: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], Any]:
    """``train_keras``, also returning the in-memory serving model that was exported."""
    if arch not in ARCHITECTURES:
        raise UserError(f"unknown --arch {arch!r}; expected one of {', '.join(ARCHITECTURES)}")
    if strategy not in STRATEGIES:
        raise UserError(f"unknown --strategy {strategy!r}; expected {', '.join(STRATEGIES)}")
    if sample is not None and sample < MIN_SAMPLE:
        raise UserError(f"--sample must be at least {MIN_SAMPLE} rows, got {sample}")
    from core.settings import default_models_dir
    from pipelines.model_card import write_card_after_training
    from training.data import load_split
    from training.keras_export import publish_keras
    from training.keras_models import Fitting, ModelConfig, train_network
    from training.keras_search import random_search

    started = time.perf_counter()
    out_dir = run_dir("train-keras", runs_dir) if runs_dir else run_dir("train-keras")
    split = split or load_split()
    train = split.train
    if sample is not None:
        train = train.sample(n=min(sample, len(train)), random_state=seed)
        split = replace(split, train=train)  # the manifest records the rows actually fitted
    val = train.sample(frac=VALIDATION_FRACTION, random_state=seed)
    fit = train.drop(index=val.index)

    unknown = sorted(set(overrides or {}) - set(ModelConfig.__dataclass_fields__))
    if unknown:
        raise UserError(f"unknown model settings {unknown}")
    config = ModelConfig(arch=arch, **(overrides or {}))
    fitting = Fitting(epochs=epochs, batch_size=batch_size, seed=seed, strategy=strategy)
    search: dict[str, Any] | None = None
    if trials:
        search = random_search(fit, val, trials, fitting, arch=arch, out_dir=out_dir / "search")
        config = search["best_config"]
    trained = train_network(fit, val, config, fitting, log_dir=out_dir, verbose=verbose)
    epochs_run = len(trained.history["loss"])
    manifest_extra = {
        "hyperparameters": {
            **config.as_dict(),
            "epochs": epochs,
            "epochs_run": epochs_run,
            "batch_size": batch_size,
            "seed": seed,
            "strategy": strategy,
            "train_rows": int(len(fit)),
            "validation_rows": int(len(val)),
            "target_transform": vars(trained.target),
        },
        "metrics": {
            "val_rmse": trained.val_rmse,
            "train_seconds": round(time.perf_counter() - started, 1),
        },
        "preprocessing": {
            "medians": trained.stats.medians,
            "neighbour_table_rows": int(len(trained.stats.log_price)),
            "kmeans_centres": len(trained.stats.centers),
        },
    }
    serving = trained.serving()
    version, path, manifest = publish_keras(
        models_dir or default_models_dir(), serving, split, manifest_extra
    )
    card = write_card_after_training(
        Path(models_dir or default_models_dir()), manifest["model"], version, split.test
    )
    result: dict[str, Any] = {
        "model": manifest["model"],
        "version": version,
        "path": str(path),
        "metrics": manifest["metrics"],
        "hyperparameters": manifest["hyperparameters"],
        "artifact": manifest["artifact"],
        "history": {k: [float(v) for v in vals] for k, vals in trained.history.items()},
        "seconds": round(time.perf_counter() - started, 1),
        "run_dir": str(out_dir),
        "card": None if card is None else str(card / "card.md"),
    }
    if search is not None:
        result["search"] = {k: v for k, v in search.items() if k != "best_config"}
        result["search"]["best_config"] = config.as_dict()
    result["results"] = str(write_results(out_dir / "results.json", result))
    return result, serving
