from pathlib import Path

import pytest

from pipelines import promotion
from training.repository import PLATFORM_SKLEARN, ModelRepository, RepositoryError

MODEL = "housing_sklearn"


def publish_dummy(repo: ModelRepository) -> int:
    def write(staging: Path) -> dict:
        (staging / "model.joblib").write_bytes(b"not a real model")
        return {"artifact": {"path": "model.joblib"}}

    version, _ = repo.publish(MODEL, PLATFORM_SKLEARN, write)
    return version


@pytest.fixture
def repo(tmp_path: Path) -> ModelRepository:
    repo = ModelRepository(tmp_path / "models")
    for _ in range(3):
        publish_dummy(repo)
    return repo


def policy_versions(repo: ModelRepository) -> set[int]:
    entry = repo.find_config(repo.read_config(), MODEL)
    return set(entry.model_version_policy.specific.versions)


def test_first_promotion_keeps_the_served_version_for_rollback(repo):
    assert repo.served_versions(MODEL) == {3}
    promotion.promote(repo, MODEL, 2)
    assert repo.labels(MODEL) == {"stable": 2}
    assert policy_versions(repo) == {2, 3}
    assert promotion.stable_history(repo, MODEL) == [3, 2]


def test_label_moves_only_after_the_version_is_loaded(repo):
    promotion.promote(repo, MODEL, 3)
    seen = {}

    def wait(model: str, version: int) -> None:
        seen["policy"] = policy_versions(repo)
        seen["labels"] = repo.labels(model)

    promotion.promote(repo, MODEL, 1, label="canary", wait=wait)
    assert 1 in seen["policy"] and "canary" not in seen["labels"]
    assert repo.labels(MODEL) == {"stable": 3, "canary": 1}
    assert policy_versions(repo) == {1, 3}


def test_rollback_restores_the_previous_stable_version(repo):
    promotion.promote(repo, MODEL, 2)
    promotion.promote(repo, MODEL, 3)
    entry = promotion.rollback(repo, MODEL)
    assert entry["version"] == 2 and entry["previous"] == 3
    assert repo.labels(MODEL) == {"stable": 2}
    assert 3 not in policy_versions(repo)
    assert promotion.stable_history(repo, MODEL) == [3, 2]


def test_rollback_without_history_is_a_clear_error(repo):
    with pytest.raises(RepositoryError, match="no earlier stable version"):
        promotion.rollback(repo, MODEL)


def test_promoting_a_missing_version_is_refused(repo):
    with pytest.raises(RepositoryError, match="no complete version 9"):
        promotion.promote(repo, MODEL, 9)


def test_audit_records_who_what_when(repo, monkeypatch):
    monkeypatch.setenv("HOUSING_ACTOR", "scheduler")
    promotion.promote(repo, MODEL, 2, reason="better RMSE")
    (entry,) = promotion.read_audit(repo, MODEL)
    assert entry["actor"] == "scheduler" and entry["action"] == "promote"
    assert entry["version"] == 2 and entry["reason"] == "better RMSE" and entry["at"]


def test_tfserving_view_carries_the_labels(repo):
    promotion.promote(repo, MODEL, 2)
    text = (repo.root / "models.config").read_text()
    assert 'key: "stable"' in text and "specific" in text


def test_promoting_the_served_version_adds_no_rollback_step(repo):
    promotion.promote(repo, MODEL, 3)
    assert promotion.stable_history(repo, MODEL) == [3]
    with pytest.raises(RepositoryError, match="no earlier stable version"):
        promotion.rollback(repo, MODEL)


def test_manifest_and_configs_are_world_readable(repo):
    import stat

    for path in (
        repo.root / "models.config",
        repo.root / "tfserving.config",
        repo.version_dir(MODEL, 1) / "manifest.json",
    ):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
