"""``housing train keras``: flags, bad input, strategies, and the search on a tiny sample."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.cli import build_parser, main


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "keras", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in (
        "--arch",
        "--epochs",
        "--strategy",
        "--trials",
        "--models-dir",
        "--sample",
        "--seed",
        "--runs-dir",
        "--batch-size",
    ):
        assert flag in text


def test_defaults_parse():
    args = build_parser().parse_args(["train", "keras"])
    assert args.arch == "mlp" and args.strategy == "auto" and args.trials is None


@pytest.mark.parametrize(
    "argv",
    [["--arch", "resnet"], ["--epochs", "0"], ["--strategy", "tpu"], ["--trials", "-1"]],
)
def test_bad_flags_exit_non_zero(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "keras", *argv])
    assert exit_info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_too_small_sample_is_a_one_line_error(tmp_path, capsys):
    code = main(
        [
            "train",
            "keras",
            "--sample",
            "10",
            "--models-dir",
            str(tmp_path / "m"),
            "--runs-dir",
            str(tmp_path / "r"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--sample" in err[0]
    assert not (tmp_path / "m").exists()


def test_cli_choices_match_the_library():
    """The CLI lists choices without importing TensorFlow; they must stay in step."""
    from pipelines import train_keras
    from training import keras_models

    assert train_keras.ARCHITECTURES == keras_models.ARCHITECTURES
    assert train_keras.STRATEGIES == keras_models.STRATEGIES


def test_auto_strategy_uses_the_default_on_one_device():
    import tensorflow as tf

    from training.keras_models import distribution_strategy

    if len(tf.config.list_logical_devices("GPU")) > 1:
        pytest.skip("several GPUs visible")
    assert not isinstance(distribution_strategy("auto"), tf.distribute.MirroredStrategy)
    assert isinstance(distribution_strategy("mirrored"), tf.distribute.MirroredStrategy)
    with pytest.raises(ValueError):
        distribution_strategy("tpu")


def test_search_reports_every_trial_and_exports_the_best(published):
    from training.keras_search import SPACE

    search = published.result["search"]
    assert [row["trial"] for row in search["trials"]] == [0, 1]
    for row in search["trials"]:
        assert row["hidden_layers"] in SPACE["hidden_layers"]
        assert row["optimizer"] in SPACE["optimizer"]
        assert row["val_rmse"] > 0
    assert search["best"]["val_rmse"] == min(r["val_rmse"] for r in search["trials"])
    exported = published.result["hyperparameters"]
    for key in ("hidden_layers", "units", "optimizer", "learning_rate"):
        assert exported[key] == search["best"][key]
    assert (Path(published.result["run_dir"]) / "search" / "search.json").is_file()
