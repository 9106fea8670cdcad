"""Helpers shared by the pipeline commands: common flags, run folders and results JSON files."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.paths import REPO_ROOT

DEFAULT_RUNS_DIR = REPO_ROOT / "runs"


def add_models_dir(parser: argparse.ArgumentParser) -> None:
    """``--models-dir``: the model repository, defaulting to the shared setting."""
    from core.settings import default_models_dir

    parser.add_argument(
        "--models-dir",
        type=Path,
        default=default_models_dir(),
        help="model repository (default: $HOUSING_MODELS_DIR or models/)",
    )


def add_runs_dir(parser: argparse.ArgumentParser, command: str) -> None:
    """``--runs-dir``: where a command's results JSON goes (default: a fresh run folder)."""
    parser.add_argument(
        "--runs-dir",
        type=Path,
        default=None,
        help=f"where the results JSON goes (default: runs/{command}/<timestamp>/)",
    )


def run_dir(command: str, runs_dir: Path = DEFAULT_RUNS_DIR) -> Path:
    """A fresh folder for one run of a command: runs/<command>/<UTC timestamp>/."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = runs_dir / command / stamp
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_results(path: Path, payload: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    return path


def audit_publish(result: dict[str, Any], command: str) -> None:
    """Every publish goes to ``models/audit.jsonl``, like promotions and retrains."""
    from pipelines.promotion import audit
    from training.repository import ModelRepository

    version_dir = Path(result["path"])
    audit(
        ModelRepository(version_dir.parents[1]),
        "publish",
        result["model"],
        version=result["version"],
        command=command,
    )
