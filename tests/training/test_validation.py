import numpy as np

from training.validation import validate_training_data


def test_the_books_training_data_passes(split):
    report = validate_training_data(split.train)
    assert report.ok, report.errors
    assert report.stats["total_bedrooms"]["missing_rate"] > 0


def test_missing_column_stops_with_a_schema_error(split):
    report = validate_training_data(split.train.drop(columns=["median_income"]))
    assert not report.ok and "median_income" in report.errors[0]


def test_negative_counts_and_out_of_range_values_are_reported(split):
    frame = split.train.head(1_000).copy()
    frame.loc[frame.index[:3], "population"] = -5
    frame.loc[frame.index[:2], "latitude"] = 80.0
    report = validate_training_data(frame)
    assert any("population: 3 negative counts" in e for e in report.errors)
    assert any(e.startswith("latitude: 2 values outside") for e in report.errors)


def test_too_many_missing_values_and_too_few_rows(split):
    frame = split.train.head(200).copy()
    frame.loc[frame.index[:50], "total_bedrooms"] = np.nan
    frame.loc[frame.index[:1], "median_income"] = np.nan
    report = validate_training_data(frame)
    assert any(e.startswith("rows: 200 rows") for e in report.errors)
    assert any(
        e.startswith("total_bedrooms: 2") and "missing, at most 5%" in e for e in report.errors
    )
    assert any(e.startswith("median_income: 0.5% missing, none allowed") for e in report.errors)
