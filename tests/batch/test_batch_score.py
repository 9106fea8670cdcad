"""``housing batch-score`` as a real process against the real model server process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from core.process import free_port
from load_tests import stack
from tests.batch.conftest import (
    batch_args,
    checkpoint,
    expected,
    resampled,
    run_batch,
    start_batch,
    wait_for_chunks,
)


def test_csv_to_parquet_keeps_order_count_ids_and_reports_bad_rows(
    model_server: Any, batch_models: Any, houses: pd.DataFrame, tmp_path: Path
) -> None:
    _, model = batch_models
    frame = houses.head(1500).astype(object)
    frame.loc[10, "total_rooms"] = "lots"
    frame.loc[700, "ocean_proximity"] = "ATLANTIS"
    frame.loc[1499, "population"] = -3
    source, output = tmp_path / "houses.csv", tmp_path / "scored.parquet"
    frame.to_csv(source, index=False)
    code, summary, err = run_batch(
        *batch_args(
            source,
            output,
            target=model_server.address("grpc"),
            batch_size=128,
            concurrency=4,
            id_column="house_id",
            summary=tmp_path / "summary.json",
        )
    )
    assert code == 0, err
    scored = pd.read_parquet(output)
    assert len(scored) == 1500
    assert scored["row"].tolist() == list(range(1, 1501))
    assert scored["house_id"].tolist() == frame["house_id"].tolist()
    bad = [10, 700, 1499]
    assert scored["predicted_median_house_value"].isna().to_numpy().nonzero()[0].tolist() == bad
    good = scored.drop(index=bad)
    want = expected(model, houses.head(1500).drop(index=bad))
    np.testing.assert_allclose(good["predicted_median_house_value"], want, rtol=1e-4, atol=1.0)

    errors = pd.read_csv(Path(str(output) + ".errors.csv"))
    assert errors["row"].tolist() == [11, 701, 1500]
    assert errors["id"].tolist() == frame.loc[bad, "house_id"].tolist()
    assert errors["reason"].tolist()[0] == "total_rooms: not a number ('lots')"
    assert "unknown category ('ATLANTIS')" in errors["reason"].tolist()[1]
    assert "negative count" in errors["reason"].tolist()[2]

    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == summary
    assert (summary["rows"], summary["rejected_rows"], summary["scored_rows"]) == (1500, 3, 1497)
    assert summary["seconds"] > 0 and summary["rows_per_second"] > 0
    assert not Path(str(output) + ".parts").exists()


def test_jsonl_to_csv_with_a_label(
    model_server: Any, batch_models: Any, houses: pd.DataFrame, tmp_path: Path
) -> None:
    _, model = batch_models
    rows = houses.head(300)
    source, output = tmp_path / "houses.jsonl", tmp_path / "scored.csv"
    with source.open("w") as handle:
        for record in rows.to_dict("records"):
            record["total_bedrooms"] = (
                None if pd.isna(record["total_bedrooms"]) else record["total_bedrooms"]
            )
            handle.write(json.dumps(record) + "\n")
    code, summary, err = run_batch(
        *batch_args(
            source, output, label="stable", target=model_server.address("grpc"), batch_size=64
        )
    )
    assert code == 0, err
    scored = pd.read_csv(output)
    assert scored["row"].tolist() == list(range(1, 301))
    np.testing.assert_allclose(
        scored["predicted_median_house_value"], expected(model, rows), rtol=1e-4, atol=1.0
    )
    assert summary["rejected_rows"] == 0


def test_bad_arguments_are_one_line_errors(model_server: Any, tmp_path: Path) -> None:
    code, _, err = run_batch(
        *batch_args(
            tmp_path / "absent.csv",
            tmp_path / "o.parquet",
            "m",
            target=model_server.address("grpc"),
        )
    )
    assert code == 2 and err.strip().splitlines()[-1].endswith("absent.csv: no such file")
    code, _, err = run_batch(*batch_args(Path("x.csv"), tmp_path / "o.json", "m"))
    assert code == 2 and "must end in .parquet or .csv" in err


def test_unknown_model_fails_with_the_upstream_reason(
    model_server: Any, houses: pd.DataFrame, tmp_path: Path
) -> None:
    source = tmp_path / "h.parquet"
    houses.head(10).to_parquet(source)
    code, _, err = run_batch(
        *batch_args(
            source, tmp_path / "o.parquet", "no_such_model", target=model_server.address("grpc")
        )
    )
    assert code == 2 and "NOT_FOUND" in err.strip().splitlines()[-1]


@pytest.fixture
def big_input(houses: pd.DataFrame, tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    return resampled(houses, 40_000, tmp_path / "big.parquet", seed=1)


def test_resume_after_sigkill_scores_every_row_exactly_once(
    model_server: Any, batch_models: Any, big_input: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    _, model = batch_models
    source, frame = big_input
    output = tmp_path / "scored.parquet"
    target = model_server.address("grpc")
    argv = batch_args(
        source, output, target=target, batch_size=100, concurrency=2, id_column="house_id"
    )
    process = start_batch(tmp_path, *argv)
    try:
        wait_for_chunks(process, output, 20, timeout=90)
    finally:
        process.kill()
    done_before = len(checkpoint(output)["completed"])
    assert process.returncode == -9 and 20 <= done_before < 400, "the kill missed the run"
    assert not output.exists()

    code, _, err = run_batch(*batch_args(source, output, target=target, batch_size=100))
    assert code == 2 and "--resume" in err  # refuses to silently restart over the parts

    code, summary, err = run_batch(*argv, "--resume")  # in-process: TF is already imported
    assert code == 0, err
    assert summary["resumed_chunks"] >= done_before
    assert summary["rows"] == 40_000 and summary["rows_this_run"] < 40_000
    scored = pd.read_parquet(output)
    assert scored["row"].tolist() == list(range(1, 40_001))  # no gaps, no duplicates
    assert scored["house_id"].tolist() == frame["house_id"].tolist()
    np.testing.assert_allclose(
        scored["predicted_median_house_value"], expected(model, frame), rtol=1e-4, atol=1.0
    )


def test_unavailable_upstream_is_retried_until_the_server_comes_up(
    batch_models: Any, houses: pd.DataFrame, tmp_path: Path
) -> None:
    root, model = batch_models
    source, output = tmp_path / "h.csv", tmp_path / "o.parquet"
    houses.head(500).to_csv(source, index=False)
    # The server needs seconds to start: until it binds, every call is refused (UNAVAILABLE).
    server = stack.model_server(root / "models.config", tmp_path / "server.log", rest_port=0)
    server.start()
    try:
        code, summary, err = run_batch(
            *batch_args(source, output, target=server.address("grpc"), batch_size=100, retries=12)
        )
    finally:
        server.stop()
    assert code == 0, err
    assert summary["retries"] >= 1 and summary["rows"] == 500
    np.testing.assert_allclose(
        pd.read_parquet(output)["predicted_median_house_value"],
        expected(model, houses.head(500)),
        rtol=1e-4,
        atol=1.0,
    )


def test_no_retries_means_unavailable_fails_in_one_line(
    houses: pd.DataFrame, tmp_path: Path
) -> None:
    source = tmp_path / "h.csv"
    houses.head(5).to_csv(source, index=False)
    code, _, err = run_batch(
        *batch_args(source, tmp_path / "o.parquet", retries=0, target=f"127.0.0.1:{free_port()}")
    )
    assert code == 2 and "UNAVAILABLE" in err and err.count("\n") == 1
