"""The book's chapter 2 preprocessing: custom transformers and the final ColumnTransformer.

Every function and class used inside a saved pipeline lives here (an importable module),
so a model pickled in one process unpickles in any other.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

# Smallest value fed to log and used as a ratio denominator: keeps a zero count finite.
# The training data has no zeros, so the fitted statistics are the book's.
EPSILON = 1e-3


class ClusterSimilarity(BaseEstimator, TransformerMixin):
    """RBF similarity of each district to k-means cluster centres of (lat, lon)."""

    def __init__(self, n_clusters: int = 10, gamma: float = 1.0, random_state: int | None = None):
        self.n_clusters = n_clusters
        self.gamma = gamma
        self.random_state = random_state

    def fit(self, X, y=None, sample_weight=None):  # noqa: N803 (sklearn's naming)
        self.kmeans_ = KMeans(self.n_clusters, n_init=10, random_state=self.random_state)
        self.kmeans_.fit(X, sample_weight=sample_weight)
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X):  # noqa: N803
        return rbf_kernel(
            np.asarray(X, dtype=float), self.kmeans_.cluster_centers_, gamma=self.gamma
        )

    def get_feature_names_out(self, names=None):
        return np.array([f"Cluster {i} similarity" for i in range(self.n_clusters)], dtype=object)


def column_ratio(X):  # noqa: N803
    """First column divided by the second (a zero denominator stays finite)."""
    X = np.asarray(X, dtype=float)
    return X[:, [0]] / np.maximum(X[:, [1]], EPSILON)


def ratio_name(function_transformer, feature_names_in):
    return ["ratio"]


def safe_log(X):  # noqa: N803
    """Natural log, with zero counts clipped to EPSILON so the output stays finite."""
    return np.log(np.maximum(np.asarray(X, dtype=float), EPSILON))


def ratio_pipeline() -> Pipeline:
    return make_pipeline(
        SimpleImputer(strategy="median"),
        FunctionTransformer(column_ratio, feature_names_out=ratio_name),
        StandardScaler(),
    )


def log_pipeline() -> Pipeline:
    return make_pipeline(
        SimpleImputer(strategy="median"),
        FunctionTransformer(safe_log, feature_names_out="one-to-one"),
        StandardScaler(),
    )


def cat_pipeline() -> Pipeline:
    return make_pipeline(
        SimpleImputer(strategy="most_frequent"),
        OneHotEncoder(handle_unknown="ignore"),
    )


def default_num_pipeline() -> Pipeline:
    return make_pipeline(SimpleImputer(strategy="median"), StandardScaler())


LOG_COLUMNS = ["total_bedrooms", "total_rooms", "population", "households", "median_income"]


def preprocessing(
    n_clusters: int = 10, gamma: float = 1.0, random_state: int = 42
) -> ColumnTransformer:
    """The book's final ColumnTransformer (24 output features with 10 clusters).

    The categorical column is named explicitly rather than selected by ``dtype=object``,
    because pandas 3 stores strings with a dedicated dtype.
    """
    return ColumnTransformer(
        [
            ("bedrooms", ratio_pipeline(), ["total_bedrooms", "total_rooms"]),
            ("rooms_per_house", ratio_pipeline(), ["total_rooms", "households"]),
            ("people_per_house", ratio_pipeline(), ["population", "households"]),
            ("log", log_pipeline(), LOG_COLUMNS),
            (
                "geo",
                ClusterSimilarity(n_clusters=n_clusters, gamma=gamma, random_state=random_state),
                ["latitude", "longitude"],
            ),
            ("cat", cat_pipeline(), ["ocean_proximity"]),
        ],
        remainder=default_num_pipeline(),
    )
