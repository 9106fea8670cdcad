"""Move version labels the way TF Serving allows, with an audit trail.

TF Serving only accepts a label that points to a version it has loaded. So a label move is
two config writes: first widen the version policy so the target version gets loaded (and,
when a server address is given, wait until it reports AVAILABLE), then move the label and
narrow the policy to the labelled versions plus the previous ``stable`` one (kept warm so a
rollback is instant). Servers that poll ``models.config`` pick each write up without a restart
and move a label only once its version is AVAILABLE; with a server address, promote and
rollback return once that server serves the change.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from core.contract import DEFAULT_LABEL
from training.repository import ModelRepository, RepositoryError, utc_now

AUDIT_NAME = "audit.jsonl"
STABLE = DEFAULT_LABEL
CANARY = "canary"
CANDIDATE = "candidate"


def actor() -> str:
    """Who is acting: HOUSING_ACTOR (set it in schedulers), else the OS user."""
    from core.settings import shared

    return shared().actor or getpass.getuser()


def audit(repo: ModelRepository, action: str, model: str, **details: Any) -> dict[str, Any]:
    """Append one who/what/when line to ``models/audit.jsonl``."""
    entry = {
        "at": utc_now(),
        "actor": actor(),
        "host": socket.gethostname(),
        "action": action,
        "model": model,
        **details,
    }
    path = repo.root / AUDIT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return entry


def read_audit(repo: ModelRepository, model: str | None = None) -> list[dict[str, Any]]:
    path = repo.root / AUDIT_NAME
    if not path.is_file():
        return []
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in entries if model is None or e.get("model") == model]


def stable_history(repo: ModelRepository, model: str) -> list[int]:
    """Stable versions as a stack: each promotion to stable pushes, each rollback pops."""
    stack: list[int] = []
    for entry in read_audit(repo, model):
        if entry["action"] == "promote" and entry.get("label") == STABLE:
            if not stack and entry.get("previous") is not None:
                stack.append(int(entry["previous"]))
            if not stack or stack[-1] != int(entry["version"]):
                stack.append(int(entry["version"]))
        elif entry["action"] == "rollback" and stack:
            stack.pop()
    return stack


def _entry(config, repo: ModelRepository, model: str):
    entry = repo.find_config(config, model)
    if entry is None:
        raise RepositoryError(f"model {model!r} is not in {repo.config_path}")
    return entry


def _set_policy(entry, versions: set[int], labels: dict[str, int]) -> None:
    entry.model_version_policy.specific.versions[:] = sorted(versions)
    entry.version_labels.clear()
    for label, version in labels.items():
        entry.version_labels[label] = version


def pin_served(repo: ModelRepository, model: str) -> set[int]:
    """Freeze what is served as an explicit version list, so publishing a new version
    (a candidate) does not make a ``latest`` policy start serving it."""
    with repo.update_config() as config:
        served = repo.served_versions(model)
        entry = _entry(config, repo, model)
        _set_policy(entry, served, dict(entry.version_labels))
    return served


class ServerWatch(Protocol):
    """A running server to follow: wait until it has loaded a version, and until a label
    resolves to a version there. Both raise RepositoryError on timeout."""

    target: str

    def wait_available(self, model: str, version: int) -> None: ...

    def wait_label(self, model: str, label: str, version: int) -> None: ...


def move_label(
    repo: ModelRepository,
    model: str,
    label: str,
    version: int,
    watch: ServerWatch | None = None,
    keep: set[int] | None = None,
    retire: int | None = None,
) -> dict[str, int]:
    """Point ``label`` at ``version`` in two TF Serving-safe steps; return the new labels.

    Step 1 widens the policy so the version loads; step 2 moves the label and narrows the
    policy to the labelled versions plus ``keep`` (labels on ``retire`` are dropped). Each
    step is one locked read-modify-write; the lock is not held while waiting on a server.
    Servers keep a label on its old version until the new one is AVAILABLE, so even
    without ``watch`` no request is refused while the version loads.
    """
    with repo.update_config() as config:
        if version not in repo.versions(model):
            raise RepositoryError(f"{model} has no complete version {version}")
        entry = _entry(config, repo, model)
        widened = repo.served_versions(model) | {version}
        _set_policy(entry, widened, dict(entry.version_labels))
    if watch is not None:
        watch.wait_available(model, version)
    with repo.update_config() as config:
        entry = _entry(config, repo, model)
        labels = {k: v for k, v in entry.version_labels.items() if v != retire}
        labels[label] = version
        # Versions another promotion added to the policy meanwhile are loading for it: keep.
        meanwhile = repo.served_versions(model) - widened
        _set_policy(entry, set(labels.values()) | (keep or set()) | meanwhile, labels)
    if watch is not None:
        watch.wait_label(model, label, version)
    return labels


def promote(
    repo: ModelRepository,
    model: str,
    version: int,
    label: str = STABLE,
    watch: ServerWatch | None = None,
    reason: str = "",
) -> dict[str, Any]:
    """Move ``label`` to ``version``; the previous stable version stays loaded for rollback.

    A label other than ``stable`` on a model without ``stable`` first pins ``stable`` to
    the version served by default today, so a canary only ever gets its share.
    """
    before = repo.labels(model)
    current_stable = repo.default_version(model)
    if label != STABLE and STABLE not in before:
        if current_stable is None:
            raise RepositoryError(
                f"{model} serves no version to pin as {STABLE!r}; promote one to {STABLE} first"
            )
        promote(
            repo, model, current_stable, STABLE, watch, reason=f"pinned before adding {label!r}"
        )
        before = repo.labels(model)
    keep = {current_stable} if current_stable is not None else set()
    previous = current_stable if label == STABLE else before.get(label)
    return relabel(
        repo, "promote", model, label, version, previous, watch, {"reason": reason}, keep=keep
    )


def rollback(repo: ModelRepository, model: str, watch: ServerWatch | None = None) -> dict[str, Any]:
    """Point ``stable`` back at the version it had before the last promotion."""
    history = stable_history(repo, model)
    current = repo.labels(model).get(STABLE)
    if current is None or len(history) < 2:
        raise RepositoryError(f"{model} has no earlier stable version to roll back to")
    target = history[-2]
    if target not in repo.versions(model):
        raise RepositoryError(f"{model} version {target} is gone from the repository")
    # Labels still on the rolled-back version go with it, and it stops being served.
    return relabel(repo, "rollback", model, STABLE, target, current, watch, retire=current)


def relabel(
    repo: ModelRepository,
    action: str,
    model: str,
    label: str,
    version: int,
    previous: int | None,
    watch: ServerWatch | None,
    details: dict[str, Any] | None = None,
    **move: Any,
) -> dict[str, Any]:
    """:func:`move_label`, then its audit line: what moved, from where, the labels after it
    and when the servers apply it."""
    labels = move_label(repo, model, label, version, watch=watch, **move)
    return audit(
        repo,
        action,
        model,
        label=label,
        version=version,
        previous=previous,
        labels=labels,
        **(details or {}),
        **applied(watch),
    )


def applied(watch: ServerWatch | None) -> dict[str, str]:
    """Say plainly when the change takes effect on the running servers."""
    if watch is not None:
        return {"applied": f"served by {watch.target}"}
    return {
        "applied": "written to models.config: running model servers apply it at their next "
        "config poll (--model_config_file_poll_wait_seconds; 30 s in the local stack), "
        "moving the label once the version is AVAILABLE; give --server HOST:PORT to wait"
    }


class GrpcServerWatch:
    """Follow a running server (TF Serving or ours) over its gRPC API."""

    def __init__(self, target: str, timeout: float = 120.0, interval: float = 0.25):
        self.target = target
        self.timeout = timeout
        self.interval = interval

    def _poll(self, check: Callable[[Any, Any], bool], what: str) -> None:
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        deadline = time.monotonic() + self.timeout
        last = "no answer yet"
        with grpc.insecure_channel(self.target) as channel:
            stubs = (
                model_service_pb2_grpc.ModelServiceStub(channel),
                prediction_service_pb2_grpc.PredictionServiceStub(channel),
            )
            while time.monotonic() < deadline:
                try:
                    if check(*stubs):
                        return
                    last = "not yet"
                except grpc.RpcError as exc:
                    last = f"{exc.code().name}: {exc.details()}"
                time.sleep(self.interval)
        raise RepositoryError(
            f"{what} on {self.target} within {self.timeout:g}s (last: {last}); "
            "models.config is written, the servers apply it when they can"
        )

    def wait_available(self, model: str, version: int) -> None:
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = model
        request.model_spec.version.value = version
        available = get_model_status_pb2.ModelVersionStatus.AVAILABLE

        def check(models, _predictions) -> bool:
            status = models.GetModelStatus(request, timeout=5)
            return any(s.state == available for s in status.model_version_status)

        self._poll(check, f"{model} version {version} did not become AVAILABLE")

    def wait_label(self, model: str, label: str, version: int) -> None:
        """Until the label resolves to the version there (GetModelMetadata by label)."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = model
        request.model_spec.version_label = label

        def check(_models, predictions) -> bool:
            reply = predictions.GetModelMetadata(request, timeout=5)
            return bool(reply.model_spec.version.value == version)

        self._poll(check, f"label {label!r} of {model} did not move to version {version}")


def audit_path(repo: ModelRepository) -> Path:
    return repo.root / AUDIT_NAME
