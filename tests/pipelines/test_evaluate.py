"""``housing evaluate`` without ``--version`` scores the version the service answers with."""

from __future__ import annotations

from core.cli import main
from core.contract import SKLEARN_MODEL
from load_tests import models
from pipelines import promotion
from training.repository import ModelRepository


def test_evaluate_defaults_to_stable_not_the_latest_version(split, tmp_path, capsys):
    repo = ModelRepository(tmp_path / "models")
    fitted = models.small_sklearn(split.train, rows=500, trees=2)
    for _ in range(2):
        models.publish_sklearn(repo, fitted)
    promotion.promote(repo, SKLEARN_MODEL, 1)
    argv = ["evaluate", "--models-dir", str(repo.root), "--permutation-repeats", "0"]
    assert main([*argv, "--runs-dir", str(tmp_path / "runs")]) == 0
    first_line = capsys.readouterr().out.splitlines()[0]
    assert first_line.startswith(f"{SKLEARN_MODEL} version 1 (the 'stable' label)")
