"""Which versions of which models are loaded: policies, labels, polling, zero-downtime swaps.

TF Serving's semantics: a model's version policy (``latest``, ``all``, ``specific``) picks
the *aspired* versions among the integer folders under its base path; aspired versions are
loaded and warmed up before versions that are no longer aspired are unloaded
(availability-preserving). A version that fails to load is reported (state END with the
error) and left out of the policy until its folder changes, so the previous one keeps serving.

Version labels move only to AVAILABLE versions: a config whose label names a version that
is still loading keeps the label on its previous version (which stays loaded) until the new
one is AVAILABLE, so a promotion never makes a labelled request fail. SavedModels are
checked against their manifest's ``tree_sha256`` before loading (joblib files are checked
by their loader). Configs sent over the network (``HandleReloadConfigRequest``) are
confined to the model repository: a ``base_path`` or version folder resolving outside it
is refused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import model_server_config_pb2

from service.model_server.batching import Batcher, Columns
from service.model_server.config import BatchingOptions
from service.model_server.errors import ServingError, invalid, not_found
from service.model_server.metrics import ServerMetrics
from service.model_server.servables import Servable, load_servable
from training.repository import (
    PLATFORM_TENSORFLOW,
    RepositoryError,
    check_model_name,
    resolve_base_path,
    verify_saved_model,
)

log = logging.getLogger("housing.model_server")
State = get_model_status_pb2.ModelVersionStatus.State
UNLOAD_DRAIN_SECONDS = 30.0


@dataclass
class VersionStatus:
    state: int
    error: str = ""
    fingerprint: tuple = ()


@dataclass
class LoadedVersion:
    """A servable plus what the request path needs: its batchers and in-flight count."""

    servable: Servable
    batchers: dict[str, Batcher] = field(default_factory=dict)
    inflight: int = 0


@dataclass
class ModelState:
    config: model_server_config_pb2.ModelConfig
    base_path: Path
    # Set for configs from the network: version folders must resolve inside it.
    confined_to: Path | None = None
    loaded: dict[int, LoadedVersion] = field(default_factory=dict)
    statuses: dict[int, VersionStatus] = field(default_factory=dict)
    # The labels as served: each points to an AVAILABLE version (see ``update_labels``).
    labels: dict[str, int] = field(default_factory=dict)

    def update_labels(self, name: str) -> None:
        """Follow the config's labels, but move a label only to a loaded version; until
        then it keeps its previous (still loaded) version."""
        served: dict[str, int] = {}
        for label, version in self.config.version_labels.items():
            if version in self.loaded:
                served[label] = version
            elif self.labels.get(label) in self.loaded:
                served[label] = self.labels[label]
        for label, version in served.items():
            if self.labels.get(label) != version:
                log.info("model %s label %s -> version %d", name, label, version)
        self.labels = served


def folder_fingerprint(path: Path) -> tuple:
    """Cheap change detector for a version folder: names, sizes and mtimes of its files."""
    try:
        return tuple(
            sorted(
                (str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
                for p in path.rglob("*")
                if p.is_file()
            )
        )
    except OSError:
        return ()


def versions_on_disk(base_path: Path, confined_to: Path | None = None) -> dict[int, Path]:
    """Integer version folders; with ``confined_to``, only those resolving inside it."""
    if not base_path.is_dir():
        return {}
    found = {}
    for child in base_path.iterdir():
        if not (child.name.isdigit() and child.is_dir()):
            continue
        if confined_to is not None and not child.resolve().is_relative_to(confined_to):
            log.warning("ignoring %s: it resolves outside %s", child, confined_to)
            continue
        found[int(child.name)] = child
    return found


def confined_base_path(root: Path, config_dir: Path, name: str, base_path: str) -> Path:
    """The base path, refused unless it resolves (symlinks, ``..``) inside ``root``."""
    path = resolve_base_path(config_dir / "models.config", base_path).resolve()
    if not path.is_relative_to(root):
        raise ServingError(
            grpc.StatusCode.PERMISSION_DENIED,
            f"model {name}: base_path {base_path!r} is outside the model repository "
            "(give a folder inside it, e.g. the model's name)",
        )
    return path


def aspired(policy: model_server_config_pb2.ModelConfig, candidates: list[int]) -> set[int]:
    choice = policy.model_version_policy.WhichOneof("policy_choice")
    if choice == "all":
        return set(candidates)
    if choice == "specific":
        return set(candidates) & set(policy.model_version_policy.specific.versions)
    count = policy.model_version_policy.latest.num_versions if choice == "latest" else 1
    return set(sorted(candidates)[-max(count, 1) :]) if candidates else set()


class ModelManager:
    """Owns the loaded versions; everything runs on the event loop, loads in a thread."""

    def __init__(
        self,
        metrics: ServerMetrics,
        executor: Executor,
        batching: BatchingOptions | None,
        loader: Callable[[str, int, Path, str], Servable] = load_servable,
    ):
        self.metrics = metrics
        self.executor = executor
        # Loads get their own thread so that a slow load never takes a model-call thread.
        self.loader_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loader")
        self.batching = batching
        self.loader = loader
        self.models: dict[str, ModelState] = {}
        self.lock = asyncio.Lock()
        self.config_dir = Path.cwd()
        # Where network-sent configs may point: set by the server (the config's folder).
        self.repository_root: Path | None = None

    # ---- configuration and polling ---------------------------------------------------

    def validate_config(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        names = [entry.name for entry in config.model_config_list.config]
        for entry in config.model_config_list.config:
            if not entry.name:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "a model config has no name")
            try:
                check_model_name(entry.name)
            except RepositoryError as exc:
                raise invalid(str(exc)) from None
            if names.count(entry.name) > 1:
                raise invalid(f"model name {entry.name!r} appears twice in the config")
            if not entry.base_path:
                raise invalid(f"model {entry.name}: base_path is empty")

    async def apply_config(
        self,
        config: model_server_config_pb2.ModelServerConfig,
        config_dir: Path | None = None,
        confine: bool = False,
    ) -> None:
        """Replace the set of models (as HandleReloadConfigRequest does), then load.

        ``confine``: the config came over the network; every base_path must resolve inside
        the model repository, checked before anything changes.
        """
        self.validate_config(config)
        root = self.repository_root.resolve() if confine and self.repository_root else None
        if confine and root is None:
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION, "this server has no model repository root"
            )
        async with self.lock:
            if config_dir is not None:
                self.config_dir = config_dir
            wanted = {entry.name: entry for entry in config.model_config_list.config}
            bases = {
                name: confined_base_path(root, self.config_dir, name, entry.base_path)
                if root is not None
                else resolve_base_path(self.config_dir / "models.config", entry.base_path)
                for name, entry in wanted.items()
            }
            for name in list(self.models):
                if name not in wanted:
                    removed = self.models.pop(name)
                    for version in list(removed.loaded):
                        await self._unload(removed, version)
            for name, entry in wanted.items():
                current = self.models.get(name)
                if current is None:
                    self.models[name] = ModelState(
                        config=entry, base_path=bases[name], confined_to=root
                    )
                else:
                    current.config = entry
                    current.base_path = bases[name]
                    current.confined_to = root
                    current.update_labels(name)
            await self._sync_all()

    async def poll(self) -> None:
        async with self.lock:
            await self._sync_all()

    async def _sync_all(self) -> None:
        for name in list(self.models):
            await self._sync(name, self.models[name])

    async def _sync(self, name: str, state: ModelState) -> None:
        loop = asyncio.get_running_loop()
        on_disk = await loop.run_in_executor(
            self.loader_thread, versions_on_disk, state.base_path, state.confined_to
        )
        # Fingerprints only where needed: a failed version is retried once its folder changes.
        fingerprints = {
            version: await loop.run_in_executor(self.loader_thread, folder_fingerprint, path)
            for version, path in on_disk.items()
            if version not in state.loaded
            and version in state.statuses
            and state.statuses[version].error
        }
        candidates = [
            version
            for version in on_disk
            if version not in fingerprints
            or state.statuses[version].fingerprint != fingerprints[version]
        ]
        target = aspired(state.config, candidates)
        for version in sorted(target - set(state.loaded)):
            await self._load(name, state, version, on_disk[version])
        state.update_labels(name)
        serving_target = any(v in state.loaded for v in target)
        # A version a label still points to (its new version failed to load) stays loaded.
        labelled = set(state.labels.values())
        for version in sorted(set(state.loaded) - target):
            if version not in on_disk or (serving_target and version not in labelled):
                await self._unload(state, version)
        state.update_labels(name)

    async def _load(self, name: str, state: ModelState, version: int, path: Path) -> None:
        loop = asyncio.get_running_loop()
        fingerprint = await loop.run_in_executor(self.loader_thread, folder_fingerprint, path)
        state.statuses[version] = VersionStatus(State.LOADING, fingerprint=fingerprint)
        platform = state.config.model_platform or "tensorflow"
        started = time.perf_counter()

        def load_and_warm() -> Servable:
            if platform == PLATFORM_TENSORFLOW:
                verify_saved_model(path)
            servable = self.loader(name, version, path, platform)
            servable.warmup()
            return servable

        try:
            servable = await loop.run_in_executor(self.loader_thread, load_and_warm)
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            log.error("model %s version %d failed to load: %s", name, version, message)
            state.statuses[version] = VersionStatus(State.END, message, fingerprint)
            self.metrics.loads.labels(name, "error").inc()
            return
        state.loaded[version] = LoadedVersion(servable)
        state.statuses[version] = VersionStatus(State.AVAILABLE, fingerprint=fingerprint)
        self.metrics.loads.labels(name, "ok").inc()
        self.metrics.load_seconds.labels(name).observe(time.perf_counter() - started)
        self.metrics.available.labels(name, str(version)).set(1)
        self.metrics.serving_form.labels(name, str(version), servable.form).set(1)
        log.info("model %s version %d is available", name, version)
        state.update_labels(name)

    async def _unload(self, state: ModelState, version: int) -> None:
        """Stop routing to the version, let in-flight requests finish, then drop it."""
        loaded = state.loaded.pop(version)
        name = loaded.servable.name
        state.statuses[version] = VersionStatus(State.UNLOADING)
        deadline = time.monotonic() + UNLOAD_DRAIN_SECONDS
        while loaded.inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for batcher in loaded.batchers.values():
            await batcher.close()
        state.statuses[version] = VersionStatus(State.END)
        self.metrics.available.labels(name, str(version)).set(0)
        self.metrics.serving_form.remove(name, str(version), loaded.servable.form)
        log.info("model %s version %d unloaded", name, version)

    async def close(self) -> None:
        async with self.lock:
            for state in self.models.values():
                for version in list(state.loaded):
                    await self._unload(state, version)
        self.loader_thread.shutdown(wait=False, cancel_futures=True)

    # ---- request routing -------------------------------------------------------------

    def resolve(self, name: str, version: int | None, label: str | None) -> LoadedVersion:
        """The loaded version a request addresses, with TF Serving's errors and wording."""
        state = self.models.get(name)
        if label:
            if state is None:
                raise not_found(f"Servable not found for request: Latest({name})")
            if label not in state.labels:
                raise invalid(f"Unrecognized servable version label: {label}")
            version = state.labels[label]
        if version is None:
            if state is None or not state.loaded:
                raise not_found(f"Servable not found for request: Latest({name})")
            return state.loaded[max(state.loaded)]
        if state is None or version not in state.loaded:
            raise not_found(f"Servable not found for request: Specific({name}, {version})")
        return state.loaded[version]

    def batcher(self, loaded: LoadedVersion, signature_name: str) -> Batcher | None:
        if self.batching is None:
            return None
        batcher = loaded.batchers.get(signature_name)
        if batcher is None:
            servable = loaded.servable
            labels = (servable.name, str(servable.version))
            merged = self.metrics.batch_requests.labels(*labels)
            batch_rows = self.metrics.batch_rows.labels(*labels)
            model_seconds = self.metrics.model_seconds.labels(*labels)

            def on_batch(requests: int, rows: int, seconds: float) -> None:
                merged.observe(requests)
                batch_rows.observe(rows)
                model_seconds.observe(seconds)

            def run(inputs: Columns) -> Columns:
                return servable.predict(signature_name, inputs)

            batcher = Batcher(
                run,
                self.batching,
                self.executor,
                on_batch,
                self.metrics.queued_rows.labels(*labels).set,
                holds_gil=servable.holds_gil,
            )
            loaded.batchers[signature_name] = batcher
        return batcher

    def status(
        self, name: str, version: int | None
    ) -> list[get_model_status_pb2.ModelVersionStatus]:
        state = self.models.get(name)
        if state is None or not state.statuses:
            raise not_found(f"Could not find any versions of model {name}")
        versions = sorted(state.statuses, reverse=True)
        if version is not None:
            if version not in state.statuses:
                raise not_found(f"Could not find version {version} of model {name}")
            versions = [version]
        result = []
        for v in versions:
            status = state.statuses[v]
            entry = get_model_status_pb2.ModelVersionStatus(version=v, state=status.state)
            entry.status.SetInParent()
            if status.error:
                entry.status.error_code = 2  # tensorflow.error.UNKNOWN: the load failed
                entry.status.error_message = status.error
            result.append(entry)
        return result
