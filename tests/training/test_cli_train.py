"""The ``housing train sklearn`` and ``housing evaluate`` command lines: flags and bad input."""

from __future__ import annotations

import pytest

from core.cli import build_parser, main


def help_text(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_train_sklearn_help_documents_every_flag(capsys):
    text = help_text(capsys, "train", "sklearn")
    for flag in ("--search", "--model-type", "--models-dir", "--sample", "--n-jobs", "--runs-dir"):
        assert flag in text
    for choice in ("none", "grid", "random", "baselines", "compare"):
        assert choice in text


def test_evaluate_help_documents_every_flag(capsys):
    text = help_text(capsys, "evaluate")
    for flag in ("--model", "--version", "--models-dir", "--permutation-repeats", "--runs-dir"):
        assert flag in text


def test_parser_defaults():
    args = build_parser().parse_args(["train", "sklearn"])
    assert args.search == "none"
    assert args.model_type == "boosting"
    assert args.sample is None


def test_unknown_search_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "sklearn", "--search", "bogus"])
    assert exit_info.value.code == 2
    assert "--search" in capsys.readouterr().err


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
