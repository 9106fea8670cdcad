import io
import tarfile
from pathlib import Path

import pandas as pd
import pytest

from core.digests import sha256_file
from training import data
from training.data import DataError


def make_archive(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def test_bundled_archive_has_the_book_checksum():
    assert sha256_file(data.BUNDLED_ARCHIVE) == data.DATA_SHA256


def test_fetch_writes_a_valid_csv(tmp_path: Path):
    path = data.fetch(data.BUNDLED_ARCHIVE, tmp_path)
    frame = pd.read_csv(path)
    assert frame.shape == (20_640, 10)
    assert int(frame["total_bedrooms"].isna().sum()) == 207


def test_wrong_checksum_is_refused(tmp_path: Path):
    bogus = tmp_path / "housing.tgz"
    bogus.write_bytes(make_archive({"housing/housing.csv": b"a,b\n1,2\n"}))
    with pytest.raises(DataError, match="checksum mismatch"):
        data.fetch(bogus, tmp_path)


def test_corrupt_archive_is_refused():
    with pytest.raises(DataError, match="corrupt"):
        data.extract_csv(b"\x1f\x8b not really gzip")


def test_path_traversal_member_is_refused():
    raw = make_archive({"../evil.csv": b"x", "housing/housing.csv": b"a\n"})
    with pytest.raises(DataError, match="unsafe path"):
        data.extract_csv(raw)


def test_missing_columns_are_named():
    frame = pd.DataFrame({"longitude": [1.0]})
    with pytest.raises(DataError, match="missing columns: latitude"):
        data.validate_frame(frame)


def test_unknown_category_is_named(split):
    frame = split.test.head(3).copy()
    frame["ocean_proximity"] = ["INLAND", "MOON", "INLAND"]
    with pytest.raises(DataError, match="MOON"):
        data.validate_frame(frame)


def test_non_numeric_value_is_reported(split):
    frame = split.test.head(3).copy().astype({"median_income": object})
    frame.iloc[1, frame.columns.get_loc("median_income")] = "lots"
    with pytest.raises(DataError, match="median_income"):
        data.validate_frame(frame)


def test_split_sizes_and_income_proportions(split):
    assert (len(split.train), len(split.test)) == (16_512, 4_128)
    shares = data.income_category(split.test["median_income"]).value_counts(normalize=True)
    expected = {3: 0.3505, 2: 0.3188, 4: 0.1764, 5: 0.1143, 1: 0.0400}
    for category, share in expected.items():
        assert shares[category] == pytest.approx(share, abs=5e-5)


def test_cli_fetch_bad_source_exits_with_one_line(tmp_path: Path, capsys):
    from core.cli import main

    assert main(["data", "fetch", "--source", str(tmp_path / "nope.tgz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("housing: error: no such file") and "\n" not in err
