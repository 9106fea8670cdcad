"""Move version labels the way TF Serving allows, with an audit trail.

TF Serving only accepts a label that points to a version it has loaded. So a label move is
two config writes: first widen the version policy so the target version gets loaded (and,
when a server address is given, wait until it reports AVAILABLE), then move the label and
narrow the policy to the labelled versions plus the previous ``stable`` one (kept warm so a
rollback is instant). Servers that poll ``models.config`` pick each write up without a restart.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.contract import DEFAULT_LABEL
from training.repository import ModelRepository, RepositoryError, utc_now

AUDIT_NAME = "audit.jsonl"
STABLE = DEFAULT_LABEL
CANARY = "canary"
CANDIDATE = "candidate"

# Waits until the given version of the model is loaded; raises RepositoryError on timeout.
LoadWaiter = Callable[[str, int], None]


def actor() -> str:
    """Who is acting: HOUSING_ACTOR (set it in schedulers), else the OS user."""
    return os.environ.get("HOUSING_ACTOR") or getpass.getuser()


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


def _entry(repo: ModelRepository, model: str):
    entry = repo.find_config(repo.read_config(), model)
    if entry is None:
        raise RepositoryError(f"model {model!r} is not in {repo.config_path}")
    return entry


def _write_policy(
    repo: ModelRepository, model: str, versions: set[int], labels: dict[str, int]
) -> None:
    config = repo.read_config()
    entry = repo.find_config(config, model)
    entry.model_version_policy.specific.versions[:] = sorted(versions)
    entry.version_labels.clear()
    for label, version in labels.items():
        entry.version_labels[label] = version
    repo.write_config(config)


def pin_served(repo: ModelRepository, model: str) -> set[int]:
    """Freeze what is served as an explicit version list, so publishing a new version
    (a candidate) does not make a ``latest`` policy start serving it."""
    served = repo.served_versions(model)
    _write_policy(repo, model, served, dict(_entry(repo, model).version_labels))
    return served


def move_label(
    repo: ModelRepository,
    model: str,
    label: str,
    version: int,
    wait: LoadWaiter | None = None,
    keep: set[int] | None = None,
) -> dict[str, int]:
    """Point ``label`` at ``version`` in two TF Serving-safe steps; return the new labels."""
    if version not in repo.versions(model):
        raise RepositoryError(f"{model} has no complete version {version}")
    labels = dict(_entry(repo, model).version_labels)
    loaded = repo.served_versions(model)
    if version not in loaded:
        _write_policy(repo, model, loaded | {version}, labels)
        if wait is not None:
            wait(model, version)
    labels[label] = version
    serve = set(labels.values()) | (keep or set())
    _write_policy(repo, model, serve | {version}, labels)
    return labels


def promote(
    repo: ModelRepository,
    model: str,
    version: int,
    label: str = STABLE,
    wait: LoadWaiter | None = None,
    reason: str = "",
) -> dict[str, Any]:
    """Move ``label`` to ``version``; the previous stable version stays loaded for rollback."""
    before = dict(_entry(repo, model).version_labels)
    served = repo.served_versions(model)
    # Without a stable label, what the server serves by default (the highest loaded
    # version) is the de-facto stable one: keep it loaded and remember it for rollback.
    current_stable = before.get(STABLE, max(served) if served else None)
    keep = {current_stable} if current_stable is not None else set()
    previous = current_stable if label == STABLE else before.get(label)
    labels = move_label(repo, model, label, version, wait=wait, keep=keep)
    return audit(
        repo,
        "promote",
        model,
        label=label,
        version=version,
        previous=previous,
        labels=labels,
        reason=reason,
    )


def rollback(repo: ModelRepository, model: str, wait: LoadWaiter | None = None) -> dict[str, Any]:
    """Point ``stable`` back at the version it had before the last promotion."""
    history = stable_history(repo, model)
    current = dict(_entry(repo, model).version_labels).get(STABLE)
    if current is None or len(history) < 2:
        raise RepositoryError(f"{model} has no earlier stable version to roll back to")
    target = history[-2]
    if target not in repo.versions(model):
        raise RepositoryError(f"{model} version {target} is gone from the repository")
    labels = move_label(repo, model, STABLE, target, wait=wait)
    # Drop the rolled-back version from serving unless another label still needs it.
    remaining = {k: v for k, v in labels.items() if v != current}
    _write_policy(repo, model, set(remaining.values()), remaining)
    return audit(
        repo,
        "rollback",
        model,
        label=STABLE,
        version=target,
        previous=current,
        labels=remaining,
    )


def grpc_load_waiter(target: str, timeout: float = 60.0) -> LoadWaiter:
    """Wait on a running server (TF Serving or ours) until the version is AVAILABLE."""

    def wait(model: str, version: int) -> None:
        import grpc
        from tensorflow_serving.apis import (
            get_model_status_pb2,
            model_service_pb2_grpc,
        )

        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = model
        request.model_spec.version.value = version
        available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(target) as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            while time.monotonic() < deadline:
                try:
                    status = stub.GetModelStatus(request, timeout=5)
                    if any(s.state == available for s in status.model_version_status):
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.5)
        raise RepositoryError(
            f"{model} version {version} did not become AVAILABLE on {target} within {timeout}s"
        )

    return wait


def audit_path(repo: ModelRepository) -> Path:
    return repo.root / AUDIT_NAME
