"""The ``housing train sklearn`` and ``housing evaluate`` command lines: flags and bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipelines.cli import build_parser, main


def housing(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_train_sklearn_help_documents_every_flag():
    result = housing("train", "sklearn", "--help")
    assert result.returncode == 0
    for flag in ("--search", "--model-type", "--models-dir", "--sample", "--n-jobs", "--runs-dir"):
        assert flag in result.stdout
    for choice in ("none", "grid", "random", "baselines", "compare"):
        assert choice in result.stdout


def test_evaluate_help_documents_every_flag():
    result = housing("evaluate", "--help")
    assert result.returncode == 0
    for flag in ("--model", "--version", "--models-dir", "--permutation-repeats", "--runs-dir"):
        assert flag in result.stdout


def test_parser_defaults():
    args = build_parser().parse_args(["train", "sklearn"])
    assert args.search == "none"
    assert args.model_type == "boosting"
    assert args.sample is None


def test_unknown_search_is_refused():
    result = housing("train", "sklearn", "--search", "bogus")
    assert result.returncode == 2
    assert "--search" in result.stderr


def test_too_small_sample_is_one_line_error(capsys, tmp_path):
    code = main(["train", "sklearn", "--sample", "5", "--models-dir", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("housing: error:") and "--sample" in err
    assert "\n" not in err


@pytest.mark.parametrize("version", [None, "7"])
def test_evaluate_without_a_model_is_one_line_error(capsys, tmp_path, version):
    argv = ["evaluate", "--models-dir", str(tmp_path)]
    if version:
        argv += ["--version", version]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("housing: error:") and "housing_sklearn" in err
