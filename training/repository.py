"""The model repository: TF Serving's layout (``models/<name>/<int version>/``) plus manifests.

``models/models.config`` (a ``ModelServerConfig`` text proto) is the repository's index of
models, platforms and version labels. Its ``base_path`` values are relative to the config
file's folder, which the project's model server resolves. TF Serving insists on absolute
paths, so every write also derives ``models/tfserving.config``: the TensorFlow models only,
with ``base_path: "/models/<name>"`` as mounted in the docker stack.

Every read-modify-write of ``models.config`` holds an exclusive file lock
(``.models.config.lock``) and each write is fsynced before its atomic rename, so a retrain
and a promotion running at once cannot lose each other's update.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.protobuf import text_format

from core.contract import DEFAULT_LABEL
from core.digests import sha256_file
from core.errors import UserError
from core.settings import default_models_dir
from core.tfserving_protos.tensorflow_serving.config import model_server_config_pb2

CONFIG_NAME = "models.config"
CONFIG_LOCK_NAME = ".models.config.lock"
TFSERVING_CONFIG_NAME = "tfserving.config"
TFSERVING_MOUNT = "/models"
MANIFEST_NAME = "manifest.json"
JOBLIB_NAME = "model.joblib"
# A version's model card (``housing model-card``): documentation, not part of the artifact.
CARD_DIR = "card"

# model_platform values: TF Serving's own, and the project's name for joblib pipelines.
PLATFORM_TENSORFLOW = "tensorflow"
PLATFORM_SKLEARN = "sklearn"


class RepositoryError(UserError, RuntimeError):
    """The model repository is missing something or an artifact failed verification."""


class ChecksumMismatch(RepositoryError):
    """An artifact's SHA-256 differs from the one its manifest records."""


# A model name becomes a folder name: letters, digits, '_', '-', '.', not starting with a
# dot or dash (so never '..', an absolute path, or a hidden folder), at most 128 characters.
MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_model_name(name: object) -> str:
    """Return ``name`` if it is safe as a path segment, else raise RepositoryError."""
    if not isinstance(name, str) or not MODEL_NAME_PATTERN.fullmatch(name):
        raise RepositoryError(
            f"invalid model name {str(name)[:80]!r}: use letters, digits, '_', '-' and '.', "
            "starting with a letter or digit (at most 128 characters)"
        )
    return name


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def version_numbers(model_dir: Path) -> list[int]:
    """Integer version folders that hold a complete manifest, ascending."""
    if not model_dir.is_dir():
        return []
    found = []
    for child in model_dir.iterdir():
        if child.is_dir() and child.name.isdigit() and (child / MANIFEST_NAME).is_file():
            found.append(int(child.name))
    return sorted(found)


def tree_sha256(directory: Path, exclude: tuple[str, ...] = (MANIFEST_NAME, CARD_DIR)) -> str:
    """One digest for a folder artifact (a SavedModel): relative paths and file digests.
    ``exclude`` names files or top-level folders left out (the manifest, the model card)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory).as_posix()
        if relative in exclude or relative.split("/", 1)[0] in exclude:
            continue
        digest.update(f"{relative}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def read_manifest(version_dir: Path) -> dict[str, Any]:
    path = version_dir / MANIFEST_NAME
    if not path.is_file():
        raise RepositoryError(f"no {MANIFEST_NAME} in {version_dir}")
    return json.loads(path.read_text())


def publish_file(tmp: Path, path: Path) -> None:
    """Give a temporary file ordinary permissions (servers may run as another user,
    e.g. in docker) and rename it over ``path`` atomically."""
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def write_json_atomic(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as fh:
        json.dump(payload, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
        tmp = Path(fh.name)
    publish_file(tmp, path)


def verify_artifact(
    version_dir: Path, artifact: str = JOBLIB_NAME, block: str = "artifact"
) -> Path:
    """Return the artifact path after checking its SHA-256 against the manifest's ``block``
    (``artifact``: the joblib pipeline; ``compiled``: its compiled trees)."""
    path = version_dir / artifact
    if not path.is_file():
        raise RepositoryError(f"missing artifact {path}")
    return verified(version_dir, block, path, sha256_file, "SHA-256")


def verify_saved_model(version_dir: Path) -> Path:
    """Return the SavedModel folder after checking its ``tree_sha256`` against the manifest."""
    return verified(version_dir, "artifact", version_dir, tree_sha256, "tree SHA-256")


def verified(
    version_dir: Path, block: str, path: Path, digest: Callable[[Path], str], kind: str
) -> Path:
    """``path``, once ``digest(path)`` matches the sha256 the manifest records in ``block``."""
    expected = (read_manifest(version_dir).get(block) or {}).get("sha256")
    if not expected:
        raise RepositoryError(f"manifest in {version_dir} records no {block} sha256")
    actual = digest(path)
    if actual != expected:
        raise ChecksumMismatch(
            f"refusing to load {path}: {kind} {actual} does not match manifest {expected}"
        )
    return path


def write_joblib_artifact(folder: Path, model: Any) -> dict[str, Any]:
    """joblib-dump a pipeline; return the manifest's ``artifact`` block that
    ``load_sklearn_model`` verifies (path, SHA-256, size)."""
    import joblib

    path = folder / JOBLIB_NAME
    joblib.dump(model, path)
    return {"path": JOBLIB_NAME, "sha256": sha256_file(path), "size_bytes": path.stat().st_size}


def load_sklearn_model(version_dir: Path) -> Any:
    """joblib-load a pipeline, only after its checksum matches the manifest."""
    import joblib

    return joblib.load(verify_artifact(version_dir, JOBLIB_NAME))


class ModelRepository:
    """Versions, manifests and the ``models.config`` index of one models folder."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else default_models_dir()

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    def model_dir(self, name: str) -> Path:
        return self.root / check_model_name(name)

    def version_dir(self, name: str, version: int) -> Path:
        return self.model_dir(name) / str(version)

    def versions(self, name: str) -> list[int]:
        return version_numbers(self.model_dir(name))

    def latest_version(self, name: str) -> int | None:
        versions = self.versions(name)
        return versions[-1] if versions else None

    def next_version(self, name: str) -> int:
        existing = [
            int(p.name) for p in self.model_dir(name).glob("*") if p.is_dir() and p.name.isdigit()
        ]
        return max(existing, default=0) + 1

    def manifest(self, name: str, version: int) -> dict[str, Any]:
        return read_manifest(self.version_dir(name, version))

    def publish(
        self,
        name: str,
        platform: str,
        write_artifacts: Callable[[Path], dict[str, Any]],
    ) -> tuple[int, Path]:
        """Write a new version atomically and register the model in ``models.config``.

        ``write_artifacts(staging_dir)`` writes the files and returns the manifest body.
        The staging folder is renamed to the version number only once complete, so a
        polling server never sees a half-written version.
        """
        model_dir = self.model_dir(name)
        model_dir.mkdir(parents=True, exist_ok=True)
        staging = model_dir / f".staging-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            manifest = write_artifacts(staging)
            while True:
                version = self.next_version(name)
                manifest = {
                    **manifest,
                    "model": name,
                    "version": version,
                    "platform": platform,
                    "created_at": manifest.get("created_at", utc_now()),
                }
                write_json_atomic(staging / MANIFEST_NAME, manifest)
                try:
                    staging.rename(self.version_dir(name, version))
                    break
                except OSError:
                    if not self.version_dir(name, version).exists():
                        raise
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self.register(name, platform)
        return version, self.version_dir(name, version)

    # ---- models.config ---------------------------------------------------------------

    def read_config(self) -> model_server_config_pb2.ModelServerConfig:
        return read_config_file(self.config_path)

    @contextmanager
    def config_lock(self) -> Iterator[None]:
        """Hold the repository's exclusive ``models.config`` lock (reentrant in a thread).

        Take it around a whole read-modify-write; other processes block until it ends.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        key = str((self.root / CONFIG_LOCK_NAME).resolve())
        with _LOCKS_GUARD:
            in_process = _LOCKS.setdefault(key, threading.RLock())
        with in_process:
            held = _HELD.get(key)
            if held is not None:  # this thread already holds it
                held[1] += 1
                try:
                    yield
                finally:
                    held[1] -= 1
                return
            fd = os.open(key, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                _HELD[key] = [fd, 1]
                try:
                    yield
                finally:
                    del _HELD[key]
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    @contextmanager
    def update_config(self) -> Iterator[model_server_config_pb2.ModelServerConfig]:
        """Read ``models.config`` under the lock, let the caller change it, write it back."""
        with self.config_lock():
            config = self.read_config()
            yield config
            self.write_config(config)

    def write_config(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        for entry in config.model_config_list.config:
            check_model_name(entry.name)
        with self.config_lock():
            write_config_file(self.config_path, config)
            write_config_file(self.root / TFSERVING_CONFIG_NAME, tfserving_view(config))

    def find_config(self, config, name: str):
        for entry in config.model_config_list.config:
            if entry.name == name:
                return entry
        return None

    def register(self, name: str, platform: str) -> None:
        """Add the model to ``models.config`` if absent (serving the latest version)."""
        check_model_name(name)
        with self.update_config() as config:
            if self.find_config(config, name) is None:
                entry = config.model_config_list.config.add()
                entry.name = name
                entry.base_path = name
                entry.model_platform = platform
                entry.model_version_policy.latest.num_versions = 1

    def labels(self, name: str) -> dict[str, int]:
        entry = self.find_config(self.read_config(), name)
        if entry is None:
            raise RepositoryError(f"model {name!r} is not in {self.config_path}")
        return dict(entry.version_labels)

    def served_versions(self, name: str) -> set[int]:
        """The versions the model's version policy makes a server load."""
        entry = self.find_config(self.read_config(), name)
        if entry is None:
            raise RepositoryError(f"model {name!r} is not in {self.config_path}")
        available = self.versions(name)
        policy = entry.model_version_policy
        which = policy.WhichOneof("policy_choice")
        if which == "specific":
            return set(policy.specific.versions) & set(available)
        if which == "all":
            return set(available)
        count = policy.latest.num_versions if which == "latest" else 1
        return set(available[-max(count, 1) :])

    def default_version(self, name: str) -> int | None:
        """The one answer to "which version?" when none is named: the ``stable`` label, else
        (a model without labels) the highest version its policy serves, as a server would."""
        return self.default_choice(name)[0]

    def default_choice(self, name: str) -> tuple[int | None, str]:
        """``default_version`` and why, in words to print or record next to it."""
        labels = self.labels(name)
        if DEFAULT_LABEL in labels:
            return int(labels[DEFAULT_LABEL]), f"the {DEFAULT_LABEL!r} label"
        served = self.served_versions(name)
        if not served:
            return None, "no version is served"
        return max(served), f"no {DEFAULT_LABEL!r} label: the highest version its policy serves"

    def set_label(self, name: str, label: str, version: int) -> None:
        if version not in self.versions(name):
            raise RepositoryError(f"{name} has no version {version}")
        with self.update_config() as config:
            entry = self.find_config(config, name)
            if entry is None:
                raise RepositoryError(f"model {name!r} is not in {self.config_path}")
            entry.version_labels[label] = version


# One in-process lock per repository (threads), plus the flock (processes); _HELD maps a
# lock file to [fd, depth] while a thread holds it, so nested takes do not deadlock.
_LOCKS_GUARD = threading.Lock()
_LOCKS: dict[str, threading.RLock] = {}
_HELD: dict[str, list[int]] = {}


def read_config_file(path: Path) -> model_server_config_pb2.ModelServerConfig:
    config = model_server_config_pb2.ModelServerConfig()
    if path.is_file():
        try:
            text_format.Parse(path.read_text(), config)
        except text_format.ParseError as exc:
            raise RepositoryError(f"{path} is not a valid ModelServerConfig: {exc}") from exc
    return config


def write_config_file(path: Path, config: model_server_config_pb2.ModelServerConfig) -> None:
    """Write, fsync, rename atomically, fsync the folder: a crash leaves old or new, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as fh:
        fh.write(text_format.MessageToString(config))
        fh.flush()
        os.fsync(fh.fileno())
        tmp = Path(fh.name)
    publish_file(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def tfserving_view(
    config: model_server_config_pb2.ModelServerConfig,
) -> model_server_config_pb2.ModelServerConfig:
    """Only the models TF Serving can host, with the absolute paths it requires."""
    view = model_server_config_pb2.ModelServerConfig()
    for entry in config.model_config_list.config:
        if entry.model_platform != PLATFORM_TENSORFLOW:
            continue
        copy = view.model_config_list.config.add()
        copy.CopyFrom(entry)
        if not copy.base_path.startswith("/"):
            copy.base_path = f"{TFSERVING_MOUNT}/{copy.base_path}"
    return view


def resolve_base_path(config_file: Path, base_path: str) -> Path:
    """Relative base paths are relative to the config file's folder."""
    path = Path(base_path)
    return path if path.is_absolute() else (config_file.parent / path).resolve()
