"""Models for the local stack: train the default ones a models folder lacks, or install the
version folder Vertex AI names (``AIP_STORAGE_URI``) from Google Cloud Storage."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from core.contract import KERAS_MODEL, SKLEARN_MODEL
from core.errors import UserError
from core.paths import REPO_ROOT
from core.process import housing_argv
from deploy.local.services import DEFAULT_MODELS


def has_model(models_dir: Path, name: str) -> bool:
    """A published version is an integer folder with a manifest (staging folders are not)."""
    model_dir = models_dir / name
    return model_dir.is_dir() and any(
        child.name.isdigit() and (child / "manifest.json").is_file()
        for child in model_dir.iterdir()
    )


def prepare(
    models_dir: Path,
    data_dir: Path | None,
    train: bool,
    models: tuple[str, ...] = (SKLEARN_MODEL, KERAS_MODEL),
) -> None:
    """Train the default models that ``models_dir`` lacks, after verifying the dataset.

    When every model is there, nothing needs the data, so a restart skips both steps.
    """
    missing = []
    for name, kind in DEFAULT_MODELS:
        if name not in models:
            continue
        if has_model(models_dir, name):
            print(f"stack: reusing {name} from {models_dir / name}", flush=True)
        elif not train:
            raise UserError(f"no {name} model in {models_dir}; train it: housing train {kind}")
        else:
            missing.append((name, kind))
    if not missing:
        return
    env = {**os.environ, "HOUSING_MODELS_DIR": str(models_dir)}
    fetch = [*housing_argv(), "data", "fetch"]
    if data_dir is not None:
        fetch += ["--data-dir", str(data_dir)]
    run_step(fetch, env)
    for name, kind in missing:
        print(f"stack: training {name} (housing train {kind}) ...", flush=True)
        run_step([*housing_argv(), "train", kind], env)


def fetch_storage_uri(uri: str, models_dir: Path) -> str:
    """Install the model version folder at ``uri`` (a ``gs://`` prefix) into ``models_dir``.

    On Vertex AI, ``AIP_STORAGE_URI`` holds a copy of the folder ``housing vertex upload``
    copied: one version with its manifest, which names the model, version and platform.
    The model server checks the artifact's SHA-256 against the manifest before loading it.
    """
    from google.cloud import storage

    from deploy.vertex.gcs import split_uri
    from training.repository import (
        ModelRepository,
        RepositoryError,
        check_model_name,
        read_manifest,
    )

    bucket, prefix = split_uri(uri)
    staging = models_dir / ".download"
    shutil.rmtree(staging, ignore_errors=True)
    count = 0
    for blob in storage.Client().list_blobs(bucket, prefix=f"{prefix}/" if prefix else None):
        relative = Path(blob.name[len(prefix) :].lstrip("/"))
        if not relative.parts or blob.name.endswith("/"):
            continue
        if ".." in relative.parts:
            raise UserError(f"refusing blob name {blob.name!r} under {uri}")
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(target))
        count += 1
    if count == 0:
        raise UserError(f"no files under {uri}")
    try:
        manifest = read_manifest(staging)
        name, version, platform = manifest["model"], int(manifest["version"]), manifest["platform"]
        check_model_name(name)  # it becomes a folder name below
        if version < 1:
            raise ValueError(f"version {version} is not a positive integer")
    except (OSError, ValueError, KeyError, TypeError, RepositoryError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(f"{uri} is not a model version folder with a manifest: {exc}") from None
    repo = ModelRepository(models_dir)
    destination = repo.version_dir(name, version)
    if destination.exists():
        shutil.rmtree(staging)
    else:
        destination.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(destination)
    repo.register(name, platform)
    print(f"stack: installed {name} version {version} from {uri}", flush=True)
    return str(name)


def run_step(argv: list[str], env: dict[str, str]) -> None:

    result = subprocess.run(argv, env=env, cwd=REPO_ROOT, check=False)
    if result.returncode != 0:
        shown = " ".join(argv[2:]).replace("core.cli", "housing")
        raise UserError(f"`{shown}` failed with exit status {result.returncode}")
