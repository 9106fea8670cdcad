"""The book's preprocessing and the neighbour/coordinate features: shapes, names, no leaks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.data import features_and_target
from training.features import ClusterSimilarity, preprocessing
from training.sklearn_models import NeighbourTarget, preprocessing_with_neighbours


@pytest.fixture(scope="module")
def sample(split) -> tuple[pd.DataFrame, pd.Series]:
    """1,500 training rows plus the rare ISLAND ones, so every category is present."""
    train = split.train
    rows = pd.concat(
        [train[train["ocean_proximity"] == "ISLAND"], train.sample(n=1_500, random_state=0)]
    )
    X, y = features_and_target(rows.drop_duplicates())  # noqa: N806
    return X, y


def test_book_preprocessing_gives_24_named_features(sample):
    X, y = sample  # noqa: N806
    transformer = preprocessing(n_clusters=10)
    output = transformer.fit_transform(X, y)
    names = transformer.get_feature_names_out()
    assert output.shape == (len(X), 24)
    assert len(names) == 24
    assert "bedrooms__ratio" in names
    assert "geo__Cluster 0 similarity" in names
    assert "cat__ocean_proximity_INLAND" in names
    assert "remainder__housing_median_age" in names
    assert np.isfinite(output).all()


def test_cluster_similarity_shape_and_range(sample):
    X, _ = sample  # noqa: N806
    similarity = ClusterSimilarity(n_clusters=7, gamma=1.0, random_state=42)
    output = similarity.fit_transform(X[["latitude", "longitude"]])
    assert output.shape == (len(X), 7)
    assert ((output > 0) & (output <= 1)).all()
    assert len(similarity.get_feature_names_out()) == 7


def test_neighbour_features_shapes_and_names(sample):
    X, y = sample  # noqa: N806
    transformer = preprocessing_with_neighbours(n_clusters=10, ks=(4, 16))
    output = transformer.fit_transform(X, y)
    names = list(transformer.get_feature_names_out())
    # 24 book features + 2 per k neighbour features + latitude, longitude and 6 rotations.
    assert output.shape == (len(X), 24 + 4 + 8)
    assert len(names) == output.shape[1]
    assert "neighbours__neighbours_16_value" in names
    assert "coordinates__rotated_45" in names
    assert np.isfinite(output).all()


def test_neighbour_target_leaves_each_training_row_out():
    # Two far-apart groups; a row's own value must never feed its own training feature.
    X = np.array([[34.0, -118.0, 3.0], [34.0, -118.001, 3.0], [38.0, -122.0, 3.0]])  # noqa: N806
    y = np.array([100_000.0, 300_000.0, 900_000.0])
    transformer = NeighbourTarget(ks=(1,))
    train_features = transformer.fit_transform(X, y)
    assert train_features[0, 0] == 300_000.0  # its neighbour's value, not its own
    assert train_features[1, 0] == 100_000.0
    # At predict time a new district at row 0's place sees row 0 itself.
    assert transformer.transform(X[:1])[0, 0] == 100_000.0
    # Value at own income: the neighbour's value per income times this row's income.
    assert train_features[0, 1] == pytest.approx(300_000.0)


def test_neighbour_target_with_many_duplicates_still_excludes_one():
    X = np.tile([[34.0, -118.0, 2.0]], (5, 1))  # noqa: N806
    y = np.arange(5, dtype=float)
    features = NeighbourTarget(ks=(2,)).fit_transform(X, y)
    assert features.shape == (5, 2)
    assert np.isfinite(features).all()


def test_neighbour_target_requires_y():
    with pytest.raises(ValueError, match="target"):
        NeighbourTarget().fit(np.zeros((3, 3)))
