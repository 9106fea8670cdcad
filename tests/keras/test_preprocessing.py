"""The in-graph preprocessing layers: imputation, ratios and logs, neighbours, target decoding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from core.contract import NUMERIC_FEATURES
from training.keras_models import TargetDecoder, TargetTransform
from training.keras_preprocessing import (
    ENGINEERED,
    GeoGridCell,
    GeoSimilarity,
    HousingFeatures,
    NeighbourPrices,
    out_of_fold_neighbours,
    planar,
    to_tensors,
)

MEDIANS = {name: float(i + 1) for i, name in enumerate(NUMERIC_FEATURES)}


def row(**values: float) -> dict[str, tf.Tensor]:
    base = {
        "longitude": -122.0,
        "latitude": 37.0,
        "housing_median_age": 20.0,
        "total_rooms": 1_000.0,
        "total_bedrooms": 200.0,
        "population": 500.0,
        "households": 250.0,
        "median_income": 4.0,
    }
    base.update(values)
    return {name: tf.constant([value], tf.float32) for name, value in base.items()}


def engineered(**values: float) -> dict[str, float]:
    out = HousingFeatures(MEDIANS)(row(**values)).numpy()[0]
    return dict(zip(ENGINEERED, out, strict=True))


def test_ratios_and_logs_follow_the_book():
    out = engineered()
    assert out["bedrooms_ratio"] == pytest.approx(0.2)
    assert out["rooms_per_house"] == pytest.approx(4.0)
    assert out["people_per_house"] == pytest.approx(2.0)
    assert out["log_median_income"] == pytest.approx(np.log(4.0))
    assert out["latitude"] == pytest.approx(37.0)


def test_nan_bedrooms_takes_the_median():
    median = MEDIANS["total_bedrooms"]
    assert engineered(total_bedrooms=np.nan) == pytest.approx(engineered(total_bedrooms=median))


def test_zero_counts_stay_finite():
    out = engineered(households=0.0, total_rooms=0.0)
    assert np.isfinite(list(out.values())).all()


def test_geo_similarity_is_one_at_a_centre():
    layer = GeoSimilarity([[37.0, -122.0], [34.0, -118.0]], gamma=1.0)
    out = layer(row()).numpy()[0]
    assert out[0] == pytest.approx(1.0)
    assert out[1] == pytest.approx(np.exp(-(9.0 + 16.0)))


def test_grid_cell_crosses_latitude_and_longitude_buckets():
    layer = GeoGridCell(lat_edges=[35.0], lon_edges=[-120.0])
    assert layer.cells == 4
    cells = [
        layer(row(latitude=lat, longitude=lon)).numpy()[0]
        for lat, lon in [(34, -121), (34, -119), (36, -121), (36, -119)]
    ]
    assert cells == [0, 1, 2, 3]


def test_neighbour_prices_average_the_nearest_districts():
    layer = NeighbourPrices(table_size=3, ks=(1, 2))
    layer.set_table(np.array([37.0, 37.1, 40.0]), np.array([-122.0] * 3), np.log([1e5, 3e5, 9e5]))
    out = layer(row()).numpy()[0]
    center = np.mean(np.log([1e5, 3e5, 9e5]))
    assert out[0] == pytest.approx(np.log(1e5) - center, abs=1e-5)
    assert out[2] == pytest.approx((np.log(1e5) + np.log(3e5)) / 2 - center, abs=1e-5)
    second = np.linalg.norm(planar([37.1], [-122.0])[0] - planar([37.0], [-122.0])[0])
    assert out[3] == pytest.approx(np.log(second + 1e-3), abs=1e-4)


def test_neighbour_prices_handle_batches_larger_than_a_chunk():
    rng = np.random.default_rng(0)
    layer = NeighbourPrices(table_size=50, ks=(4,))
    layer.set_table(rng.uniform(33, 41, 50), rng.uniform(-124, -115, 50), rng.normal(12, 1, 50))
    n = 2_500
    batch = {
        "latitude": tf.constant(rng.uniform(33, 41, n), tf.float32),
        "longitude": tf.constant(rng.uniform(-124, -115, n), tf.float32),
    }
    whole = layer(batch).numpy()
    part = layer({k: v[2_000:2_010] for k, v in batch.items()}).numpy()
    assert whole.shape == (n, 2)
    np.testing.assert_allclose(whole[2_000:2_010], part, rtol=1e-5)


def test_neighbour_prices_match_a_brute_force_search_on_real_districts(split):
    """The layer's k nearest districts are NumPy's on a real table (3,000 districts, 200
    queries): the k-th distance everywhere, the mean price wherever no tie at the k-th
    place makes the choice of neighbours ambiguous."""
    train, test = split.train.iloc[:3_000], split.test.iloc[:200]
    log_price = np.log(train["median_house_value"].to_numpy())
    ks = (4, 16, 64)
    layer = NeighbourPrices(table_size=len(train), ks=ks)
    layer.set_table(train["latitude"].to_numpy(), train["longitude"].to_numpy(), log_price)
    out = layer(
        {name: tf.constant(test[name].to_numpy(), tf.float32) for name in ("latitude", "longitude")}
    ).numpy()
    table = planar(train["latitude"].to_numpy(), train["longitude"].to_numpy()).astype(float)
    points = planar(test["latitude"].to_numpy(), test["longitude"].to_numpy()).astype(float)
    squared = ((points[:, None, :] - table[None, :, :]) ** 2).sum(axis=-1)
    nearest = np.argsort(squared, axis=1, kind="stable")[:, :65]
    ranked = np.take_along_axis(squared, nearest, axis=1)
    prices = log_price[nearest] - np.mean(log_price.astype("float32"))
    for position, k in enumerate(ks):
        np.testing.assert_allclose(
            out[:, 2 * position + 1], np.log(np.sqrt(ranked[:, k - 1]) + 1e-3), atol=1e-3
        )
        clear = ranked[:, k] - ranked[:, k - 1] > 1e-6
        assert clear.mean() > 0.5  # duplicated locations make ties common
        np.testing.assert_allclose(
            out[clear, 2 * position], prices[clear, :k].mean(axis=1), atol=1e-4
        )


def test_out_of_fold_neighbours_never_see_their_own_price():
    """A lone district far from all others would copy its own label if it were in its table."""
    frame = pd.DataFrame({"latitude": [37.0] * 10 + [41.0], "longitude": [-122.0] * 10 + [-115.0]})
    log_price = np.array([12.0] * 10 + [20.0], dtype="float32")
    out = out_of_fold_neighbours(frame, log_price, ks=(1,), folds=11)
    center_without_outlier = 12.0
    assert out[-1, 0] == pytest.approx(12.0 - center_without_outlier, abs=1e-5)


def test_target_transform_round_trips_and_clips():
    y = np.array([20_000.0, 150_000.0, 500_001.0])
    for log in (True, False):
        target = TargetTransform.fit(y, log=log)
        decoder = TargetDecoder(**vars(target))
        z = target.encode(y)[:, None]
        np.testing.assert_allclose(decoder(z).numpy(), y, rtol=1e-4)
        extreme = decoder(np.array([[-100.0], [100.0]], dtype="float32")).numpy()
        np.testing.assert_allclose(extreme, [20_000.0, 500_001.0], rtol=1e-4)


def test_to_tensors_keeps_nan_and_strings(split):
    frame = split.test.head(3).assign(total_bedrooms=np.nan)
    tensors = to_tensors(frame)
    assert tensors["ocean_proximity"].dtype == tf.string
    assert np.isnan(tensors["total_bedrooms"].numpy()).all()
