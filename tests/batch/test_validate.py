"""Row validation and the streaming readers (no server needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from core.contract import FEATURES
from core.errors import UserError
from pipelines.batch import reader
from pipelines.batch.validate import validate

GOOD = {
    "longitude": "-122.23",
    "latitude": "37.88",
    "housing_median_age": "41",
    "total_rooms": "880",
    "total_bedrooms": "129",
    "population": "322",
    "households": "126",
    "median_income": "8.3252",
    "ocean_proximity": "NEAR BAY",
}


def rows(*changes: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame([{**GOOD, **change} for change in changes])


def test_each_invalid_value_is_rejected_with_its_reason() -> None:
    checked = validate(
        rows(
            {},
            {"total_rooms": "abc"},
            {"median_income": "inf"},
            {"population": "-5"},
            {"ocean_proximity": "MOON"},
            {"latitude": None},
            {"total_bedrooms": None},
            {"households": "nan", "ocean_proximity": None},
        )
    )
    assert checked.valid.tolist() == [True, False, False, False, False, False, True, False]
    assert checked.reasons[1] == ["total_rooms: not a number ('abc')"]
    assert checked.reasons[2] == ["median_income: not a finite number ('inf')"]
    assert checked.reasons[3] == ["population: negative count ('-5')"]
    assert checked.reasons[4][0].startswith("ocean_proximity: unknown category ('MOON')")
    assert checked.reasons[5] == ["latitude: missing required value"]
    assert checked.reasons[7] == [
        "households: not a finite number ('nan')",
        "ocean_proximity: missing required value",
    ]
    # the valid rows' tensors: float32, NaN for the one missing total_bedrooms
    assert checked.numeric["total_bedrooms"].dtype == np.float32
    assert np.isnan(checked.numeric["total_bedrooms"][1])
    assert checked.category.tolist() == ["NEAR BAY", "NEAR BAY"]


def test_typed_values_from_parquet_and_json() -> None:
    frame = pd.DataFrame(
        [
            {
                **{k: float(v) for k, v in GOOD.items() if k != "ocean_proximity"},
                "ocean_proximity": "INLAND",
            },
        ]
        * 3
    )
    frame.loc[1, "total_rooms"] = float("inf")
    frame.loc[2, "housing_median_age"] = -1.0
    checked = validate(frame)
    assert checked.valid.tolist() == [True, False, False]
    as_json = pd.DataFrame([{**GOOD, "total_rooms": True}, {**GOOD, "total_rooms": 12}])
    assert validate(as_json).reasons == {0: ["total_rooms: not a number (True)"]}


def write_all_formats(frame: pd.DataFrame, folder: Path) -> list[Path]:
    csv, parquet, jsonl = folder / "x.csv", folder / "x.parquet", folder / "x.jsonl"
    frame.to_csv(csv, index=False)
    frame.to_parquet(parquet, index=False)
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in frame.to_dict("records")))
    return [csv, parquet, jsonl]


def test_readers_stream_the_same_chunks(tmp_path: Path, split: Any) -> None:
    frame = split.test.head(1050)[list(FEATURES)].fillna({"total_bedrooms": 0})
    for path in write_all_formats(frame, tmp_path):
        chunks = list(reader.iter_chunks(path, 500))
        assert [len(c) for c in chunks] == [500, 500, 50], path
        assert pd.to_numeric(chunks[2]["median_income"]).tolist() == pytest.approx(
            frame["median_income"].iloc[1000:].tolist()
        )


def test_jsonl_bad_line_becomes_a_rejected_row(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n{oops\n" + json.dumps(GOOD) + "\n")
    (chunk,) = reader.iter_chunks(path, 10)
    checked = validate(chunk)
    assert checked.valid.tolist() == [True, False, True]
    assert checked.reasons[1][0].startswith("line 3: invalid JSON")


def test_missing_column_and_unknown_format_fail_early(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    pd.DataFrame([GOOD]).drop(columns=["median_income"]).to_csv(path, index=False)
    with pytest.raises(UserError, match="median_income"):
        reader.check_columns(path, None)
    pd.DataFrame([GOOD]).to_csv(path, index=False)
    with pytest.raises(UserError, match="house_id"):
        reader.check_columns(path, "house_id")
    with pytest.raises(UserError, match="unsupported"):
        reader.check_columns(tmp_path / "x.xlsx", None)
