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


class RecordingWatch:
    """A ServerWatch that records what models.config said at each wait."""

    target = "recording"

    def __init__(self, repo: ModelRepository):
        self.repo = repo
        self.seen: list[tuple] = []

    def wait_available(self, model: str, version: int) -> None:
        self.seen.append(
            (("available", version), policy_versions(self.repo), self.repo.labels(model))
        )

    def wait_label(self, model: str, label: str, version: int) -> None:
        self.seen.append(
            (("label", label, version), policy_versions(self.repo), self.repo.labels(model))
        )


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
    watch = RecordingWatch(repo)
    promotion.promote(repo, MODEL, 1, label="canary", watch=watch)
    loading, labelled = watch.seen
    assert loading[0] == ("available", 1)
    assert 1 in loading[1] and "canary" not in loading[2]
    assert labelled[0] == ("label", "canary", 1) and labelled[2] == {"stable": 3, "canary": 1}
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


def test_a_canary_on_a_model_without_stable_first_pins_stable_to_the_served_version(repo):
    assert repo.labels(MODEL) == {} and repo.served_versions(MODEL) == {3}
    entry = promotion.promote(repo, MODEL, 2, label="canary")
    assert repo.labels(MODEL) == {"stable": 3, "canary": 2}
    assert policy_versions(repo) == {2, 3}
    pin, canary = promotion.read_audit(repo, MODEL)
    assert (pin["label"], pin["version"]) == ("stable", 3)
    assert (canary["label"], canary["version"]) == ("canary", 2) and canary == entry


def test_without_a_server_the_output_says_when_the_change_takes_effect(repo):
    entry = promotion.promote(repo, MODEL, 2)
    assert "next config poll" in entry["applied"] and "--server" in entry["applied"]


def test_default_version_follows_stable_else_the_highest_served(repo):
    assert repo.default_version(MODEL) == 3
    promotion.promote(repo, MODEL, 1)
    assert repo.default_version(MODEL) == 1


def test_a_version_another_promotion_is_loading_stays_in_the_policy(repo):
    """Two promotions interleaved: the other's first step (widen the policy so its version
    loads) is not undone by this one's second step."""
    promotion.promote(repo, MODEL, 3)

    class Interleaved(RecordingWatch):
        def wait_available(self, model: str, version: int) -> None:
            with repo.update_config() as config:  # another promotion's first step
                entry = repo.find_config(config, MODEL)
                entry.model_version_policy.specific.versions.append(1)

    promotion.promote(repo, MODEL, 2, label="canary", watch=Interleaved(repo))
    assert repo.labels(MODEL) == {"stable": 3, "canary": 2}
    assert policy_versions(repo) == {1, 2, 3}
