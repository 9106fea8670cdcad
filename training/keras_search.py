"""Random search over the network's hyperparameters (layers, units, learning rate, optimizer).

Each trial trains on the fit rows and is scored by its validation RMSE in USD; the test
split is never seen. Preprocessing statistics do not depend on the searched
hyperparameters, so they are fitted once and shared by every trial.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import console
from training.keras_models import OPTIMIZERS, Fitting, ModelConfig, train_network
from training.keras_preprocessing import fit_stats

SPACE: dict[str, Any] = {
    "hidden_layers": [1, 2, 3, 4],
    "units": [32, 50, 64, 100, 128, 256],
    "learning_rate": (3e-4, 3e-3),  # log-uniform
    "optimizer": list(OPTIMIZERS),
}
SEARCH_PATIENCE = 5


def sample_config(rng: np.random.Generator, base: ModelConfig) -> ModelConfig:
    low, high = SPACE["learning_rate"]
    return replace(
        base,
        hidden_layers=int(rng.choice(SPACE["hidden_layers"])),
        units=int(rng.choice(SPACE["units"])),
        learning_rate=float(np.exp(rng.uniform(np.log(low), np.log(high)))),
        optimizer=str(rng.choice(SPACE["optimizer"])),
    )


def random_search(
    fit: pd.DataFrame,
    val: pd.DataFrame,
    trials: int,
    fitting: Fitting,
    arch: str = "mlp",
    out_dir: Path | None = None,
) -> dict[str, Any]:
    """Try ``trials`` random configurations; return every trial and the best configuration.

    The first trial is the default configuration, so a search never does worse than it.
    Results go to ``out_dir/search.json`` when ``out_dir`` is given.
    """
    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    rng = np.random.default_rng(fitting.seed)
    base = ModelConfig(arch=arch)
    stats = fit_stats(fit, base.preprocessing, seed=fitting.seed)
    results: list[dict[str, Any]] = []
    configs: list[ModelConfig] = []
    for trial in console.bar(range(trials), desc="search", unit="trial"):
        config = base if trial == 0 else sample_config(rng, base)
        started = time.perf_counter()
        trained = train_network(
            fit, val, config, fitting, verbose=0, patience=SEARCH_PATIENCE, stats=stats
        )
        results.append(
            {
                "trial": trial,
                "hidden_layers": config.hidden_layers,
                "units": config.units,
                "learning_rate": config.learning_rate,
                "optimizer": config.optimizer,
                "val_rmse": trained.val_rmse,
                "epochs_run": len(trained.history["loss"]),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
        configs.append(config)
    best = min(range(trials), key=lambda index: results[index]["val_rmse"])
    summary = {
        "arch": arch,
        "trials": results,
        "best": results[best],
        "space": {k: list(v) for k, v in SPACE.items()},
    }
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "search.json").write_text(json.dumps(summary, indent=2) + "\n")
    return {**summary, "best_config": configs[best]}
