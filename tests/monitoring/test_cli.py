"""``housing monitor ...``: exit codes, outputs and one-line errors (in-process main())."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest

from core.cli import main
from pipelines.monitor import parse_log_spec
from service.prediction_log import read_window
from training.data import Split

from .conftest import fill_log


@pytest.fixture(scope="module")
def files(tmp_path_factory, split: Split, reference: pd.DataFrame, income_shifted) -> dict:
    root = tmp_path_factory.mktemp("cli")
    paths = {
        "reference": root / "reference.parquet",
        "calm": root / "calm.csv",
        "shifted": root / "shifted.csv",
        "broken": root / "broken.csv",
    }
    reference.to_parquet(paths["reference"])
    split.test.sample(800, random_state=3).to_csv(paths["calm"], index=False)
    income_shifted.to_csv(paths["shifted"], index=False)
    split.test.head(100).drop(columns=["ocean_proximity"]).to_csv(paths["broken"], index=False)
    return paths


def test_drift_files_no_drift(files, tmp_path: Path, capsys) -> None:
    out = tmp_path / "report"
    argv = ["monitor", "drift", "--reference", str(files["reference"])]
    code = main(
        [*argv, "--current", str(files["calm"]), "--output-dir", str(out), "--fail-on-drift"]
    )
    assert code == 0
    payload = json.loads((out / "drift.json").read_text())
    assert payload["dataset_drift"] is False and payload["current"]["rows"] == 800
    assert (out / "drift.html").stat().st_size > 10_000
    assert (out / "drift.png").read_bytes().startswith(b"\x89PNG")
    assert "dataset drift: no" in capsys.readouterr().out


def test_drift_figure_plots_the_reports_p_values(files, tmp_path: Path) -> None:
    import math

    from pipelines.monitor import p_value_figure

    argv = ["monitor", "drift", "--reference", str(files["reference"])]
    assert main([*argv, "--current", str(files["shifted"]), "--output-dir", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "drift.json").read_text())
    bars = p_value_figure(summary).axes[0].patches
    by_name = dict(zip(list(summary["columns"])[::-1], bars, strict=True))
    for name, column in summary["columns"].items():
        assert by_name[name].get_width() == pytest.approx(-math.log10(max(column["score"], 1e-300)))
        red = by_name[name].get_facecolor()[0] > 0.7
        assert red == column["drift_detected"], name


def test_drift_fail_on_drift_exit_code(files, models_dir: Path, tmp_path: Path) -> None:
    base = ["monitor", "drift", "--current", str(files["shifted"]), "--output-dir", str(tmp_path)]
    ref = ["--reference", "housing_sklearn:1", "--models-dir", str(models_dir)]
    assert main([*base, *ref, "--fail-on-drift"]) == 1
    assert json.loads((tmp_path / "drift.json").read_text())["reference"]["source"] == (
        "housing_sklearn:1"
    )
    latest = ["--reference", "housing_sklearn", "--models-dir", str(models_dir)]
    assert main([*base, *latest]) == 0  # drift without --fail-on-drift is still a success


@pytest.mark.parametrize(
    ("ref_spec", "current", "message"),
    [
        ("{reference}", "{broken}", "current data is missing column(s): ocean_proximity"),
        ("{reference}", "{tmp}/nope.csv", "current file not found"),
        ("housing_sklearn:9", "{calm}", "housing_sklearn has no version 9"),
        ("no_such_model", "{calm}", "neither a file nor a model"),
        ("{reference}", "log:{tmp}/log.sqlite3?since=1h", "prediction-log window is empty"),
        ("{reference}", "log:{tmp}/log.sqlite3?since=yesterday", "bad time 'yesterday'"),
        ("{reference}", "log:{tmp}/log.sqlite3?colour=red", "unknown option 'colour'"),
        ("{reference}", "log:{tmp}/missing.sqlite3", "prediction log not found"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    files, models_dir, tmp_path, capsys, split, ref_spec, current, message
) -> None:
    fill_log(tmp_path / "log.sqlite3", split.test.head(40), ts=time.time() - 7200)
    names = {k: str(v) for k, v in files.items()} | {"tmp": str(tmp_path)}
    argv = ["monitor", "drift", "--reference", ref_spec.format(**names)]
    argv += ["--current", current.format(**names), "--output-dir", str(tmp_path / "out")]
    assert main([*argv, "--models-dir", str(models_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("housing: error:") and message in err and "\n" not in err


def test_drift_from_a_log_window(files, tmp_path: Path, split: Split, income_shifted) -> None:
    log = tmp_path / "log.sqlite3"
    fill_log(log, split.test.head(300), ts=time.time() - 7200)  # old, calm
    fill_log(log, income_shifted)  # recent, shifted
    argv = ["monitor", "drift", "--reference", str(files["reference"]), "--fail-on-drift"]
    argv += ["--current", f"log:{log}?since=30m&limit=400", "--output-dir", str(tmp_path / "o")]
    assert main(argv) == 1
    assert json.loads((tmp_path / "o" / "drift.json").read_text())["current"]["rows"] == 400


def test_log_spec_parsing() -> None:
    path, options = parse_log_spec(
        "log:a/b.sqlite3?since=1h&until=2026-01-01T00:00:00&limit=9", 7200
    )
    assert path == Path("a/b.sqlite3")
    assert options["since"] == 3600 and options["limit"] == 9 and options["until"] > 1.7e9


def test_performance_joins_labels(tmp_path: Path, split: Split, capsys) -> None:
    log = tmp_path / "log.sqlite3"
    fill_log(log, split.test.head(120), ts=time.time() - 4000)
    fill_log(log, split.test.iloc[120:200])
    logged = read_window(log)
    truth = split.test.head(200)["median_house_value"].to_numpy()
    labels = pd.DataFrame({"request_id": logged["request_id"], "median_house_value": truth})
    labels.iloc[:150].to_csv(tmp_path / "labels.csv", index=False)
    argv = ["monitor", "performance", "--labels", str(tmp_path / "labels.csv"), "--log", str(log)]
    assert main([*argv, "--window", "1h", "--output", str(tmp_path / "perf.json")]) == 0
    report = json.loads((tmp_path / "perf.json").read_text())
    error = logged["prediction"].to_numpy()[:150] - truth[:150]
    assert report["joined_rows"] == 150
    (version,) = report["by_version"]
    assert version["rmse"] == pytest.approx(float((error**2).mean() ** 0.5))
    assert version["evidently"]["rmse"] == pytest.approx(version["rmse"], rel=1e-6)
    assert sum(w["rows"] for w in report["by_window"]) == 150
    assert "joined 150 of 150 labels" in capsys.readouterr().out
    (tmp_path / "bad.csv").write_text("request_id,price\nx,1\n")
    assert main(["monitor", "performance", "--labels", str(tmp_path / "bad.csv")]) == 2
