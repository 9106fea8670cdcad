"""Chapter 2's preprocessing as Keras layers, so a SavedModel serves raw features.

TF Serving runs no Python: imputation, ratios, logs, normalisation, the category lookup
and the geographic features must all be graph operations. Every statistic these layers
use (medians, normalisation moments, k-means centres, grid edges, the category
vocabulary) is computed from the TRAINING split only and stored in the layer's config, so
the ``.keras`` file and the SavedModel carry them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from sklearn.cluster import KMeans

from core.contract import (
    CATEGORICAL_FEATURE,
    FEATURES,
    NUMERIC_FEATURES,
    OCEAN_PROXIMITY_CATEGORIES,
    TARGET,
)
from training.features import EPSILON

# The engineered numeric columns, in the order HousingFeatures emits them.
RATIOS = (
    ("bedrooms_ratio", "total_bedrooms", "total_rooms"),
    ("rooms_per_house", "total_rooms", "households"),
    ("people_per_house", "population", "households"),
)
LOG_COLUMNS = ("total_bedrooms", "total_rooms", "population", "households", "median_income")
PLAIN_COLUMNS = ("longitude", "latitude", "housing_median_age")
ENGINEERED = (
    *(name for name, _, _ in RATIOS),
    *(f"log_{name}" for name in LOG_COLUMNS),
    *PLAIN_COLUMNS,
)


@keras.saving.register_keras_serializable(package="housing")
class HousingFeatures(keras.layers.Layer):
    """Numeric inputs -> median-imputed, the book's three ratios, five logs, lon/lat/age.

    Any NaN numeric input (the contract only allows one in ``total_bedrooms``) is replaced
    by that column's training median, so a missing value never reaches the network.
    """

    def __init__(self, medians: dict[str, float], **kwargs: Any):
        super().__init__(**kwargs)
        self.medians = {name: float(medians[name]) for name in NUMERIC_FEATURES}

    def call(self, inputs: dict[str, Any]) -> Any:
        ops = keras.ops
        column = {}
        for name in NUMERIC_FEATURES:
            value = ops.cast(inputs[name], "float32")
            column[name] = ops.where(ops.isnan(value), self.medians[name], value)
        out = [column[num] / ops.maximum(column[den], EPSILON) for _, num, den in RATIOS]
        out += [ops.log(ops.maximum(column[name], EPSILON)) for name in LOG_COLUMNS]
        out += [column[name] for name in PLAIN_COLUMNS]
        return ops.stack(out, axis=-1)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return (input_shape["longitude"][0], len(ENGINEERED))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "medians": self.medians}


@keras.saving.register_keras_serializable(package="housing")
class GeoSimilarity(keras.layers.Layer):
    """RBF similarity of (latitude, longitude) to k-means centres (the book's ClusterSimilarity)."""

    def __init__(self, centers: list[list[float]], gamma: float, **kwargs: Any):
        super().__init__(**kwargs)
        self.centers = [[float(a), float(b)] for a, b in centers]
        self.gamma = float(gamma)

    def call(self, inputs: dict[str, Any]) -> Any:
        ops = keras.ops
        point = ops.stack(
            [ops.cast(inputs["latitude"], "float32"), ops.cast(inputs["longitude"], "float32")],
            axis=-1,
        )
        centers = ops.convert_to_tensor(np.asarray(self.centers, dtype="float32"))
        squared = ops.sum(ops.square(point[:, None, :] - centers[None, :, :]), axis=-1)
        return ops.exp(-self.gamma * squared)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return (input_shape["latitude"][0], len(self.centers))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "centers": self.centers, "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="housing")
class GeoGridCell(keras.layers.Layer):
    """Index of the (latitude bucket × longitude bucket) cell: a feature cross for an Embedding.

    Bucket edges are training quantiles, so every cell of the grid has districts in it
    along each axis; points outside the training range fall in the edge buckets.
    """

    def __init__(self, lat_edges: list[float], lon_edges: list[float], **kwargs: Any):
        super().__init__(**kwargs)
        self.lat_edges = [float(x) for x in lat_edges]
        self.lon_edges = [float(x) for x in lon_edges]

    @property
    def cells(self) -> int:
        return (len(self.lat_edges) + 1) * (len(self.lon_edges) + 1)

    def call(self, inputs: dict[str, Any]) -> Any:
        lat = tf.cast(inputs["latitude"], tf.float32)
        lon = tf.cast(inputs["longitude"], tf.float32)
        lat_bin = tf.raw_ops.Bucketize(input=lat, boundaries=self.lat_edges)
        lon_bin = tf.raw_ops.Bucketize(input=lon, boundaries=self.lon_edges)
        return tf.cast(lat_bin * (len(self.lon_edges) + 1) + lon_bin, "int32")

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return (input_shape["latitude"][0],)

    def compute_output_spec(self, inputs: dict[str, Any]) -> Any:
        return keras.KerasTensor(inputs["latitude"].shape, dtype="int32")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "lat_edges": self.lat_edges, "lon_edges": self.lon_edges}


@dataclass(frozen=True)
class PreprocessingConfig:
    """Hyperparameters of the in-graph preprocessing."""

    n_clusters: int = 30
    gamma: float = 1.0
    grid_bins: int = 20
    grid_embedding: int = 8
    category_embedding: int = 0  # 0: one-hot ocean_proximity; >0: an Embedding of that size
    neighbours: tuple[int, ...] = (4, 16, 64)  # NeighbourPrices k values; () leaves it out


@dataclass(frozen=True)
class TrainingStats:
    """Everything the preprocessing learns from the training split."""

    medians: dict[str, float]
    centers: list[list[float]]
    lat_edges: list[float]
    lon_edges: list[float]
    engineered: np.ndarray  # HousingFeatures output on the training rows, for Normalization
    latitude: np.ndarray  # the NeighbourPrices table: training coordinates and log prices
    longitude: np.ndarray
    log_price: np.ndarray
    neighbours: np.ndarray  # out-of-fold NeighbourPrices of the training rows (empty if unused)
    ks: tuple[int, ...]

    def neighbour_layer(self) -> NeighbourPrices:
        layer = NeighbourPrices(len(self.log_price), self.ks, name="neighbour_prices")
        layer.set_table(self.latitude, self.longitude, self.log_price)
        return layer


def fit_stats(train: pd.DataFrame, config: PreprocessingConfig, seed: int = 42) -> TrainingStats:
    """Medians, k-means centres, grid edges and the price table of the TRAINING rows only."""
    medians = {name: float(train[name].median()) for name in NUMERIC_FEATURES}
    coords = train[["latitude", "longitude"]].to_numpy(dtype=float)
    kmeans = KMeans(config.n_clusters, n_init=10, random_state=seed).fit(coords)
    quantiles = np.linspace(0, 1, config.grid_bins + 1)[1:-1]
    lat_edges = np.unique(np.quantile(coords[:, 0], quantiles)).tolist()
    lon_edges = np.unique(np.quantile(coords[:, 1], quantiles)).tolist()
    engineered = keras.ops.convert_to_numpy(HousingFeatures(medians)(to_tensors(train)))
    log_price = np.log(train[TARGET].to_numpy(dtype=float)).astype("float32")
    ks = tuple(config.neighbours)
    oof = (
        out_of_fold_neighbours(train, log_price, ks, seed=seed)
        if ks
        else np.zeros((len(train), 0), dtype="float32")
    )
    return TrainingStats(
        medians=medians,
        centers=kmeans.cluster_centers_.tolist(),
        lat_edges=lat_edges,
        lon_edges=lon_edges,
        engineered=engineered,
        latitude=train["latitude"].to_numpy(dtype="float32"),
        longitude=train["longitude"].to_numpy(dtype="float32"),
        log_price=log_price,
        neighbours=oof,
        ks=ks,
    )


NEIGHBOUR_INPUT = "neighbour_prices"


def raw_inputs() -> dict[str, keras.KerasTensor]:
    """One ``[batch]`` input per feature, named as in the ▶ signature."""
    inputs = {name: keras.Input(shape=(), dtype="float32", name=name) for name in NUMERIC_FEATURES}
    inputs[CATEGORICAL_FEATURE] = keras.Input(shape=(), dtype="string", name=CATEGORICAL_FEATURE)
    return {name: inputs[name] for name in FEATURES}


@dataclass(frozen=True)
class Encoded:
    """The preprocessed blocks a model builder combines (all ``[batch, k]`` floats)."""

    numeric: keras.KerasTensor  # normalised engineered features
    geo: keras.KerasTensor  # RBF similarities and the grid-cell embedding
    category: keras.KerasTensor  # ocean_proximity one-hot or embedding

    def all(self) -> keras.KerasTensor:
        return keras.layers.Concatenate(name="features")([self.numeric, self.geo, self.category])


def encode(
    inputs: dict[str, keras.KerasTensor], stats: TrainingStats, config: PreprocessingConfig
) -> Encoded:
    """Wire the preprocessing layers onto the raw inputs.

    ``inputs`` holds NEIGHBOUR_INPUT too when the model uses NeighbourPrices: training
    feeds it out-of-fold values, and ``serving_model`` computes it in the graph.
    """
    engineered = HousingFeatures(stats.medians, name="housing_features")(inputs)
    normalizer = keras.layers.Normalization(name="normalization")
    normalizer.adapt(stats.engineered)
    numeric = normalizer(engineered)

    similarity = GeoSimilarity(stats.centers, config.gamma, name="geo_similarity")(inputs)
    grid = GeoGridCell(stats.lat_edges, stats.lon_edges, name="geo_grid_cell")
    cell = grid(inputs)
    cell_vector = keras.layers.Embedding(
        grid.cells, config.grid_embedding, name="geo_grid_embedding"
    )(cell)
    geo_blocks = [similarity, cell_vector]
    if NEIGHBOUR_INPUT in inputs:
        neighbour_norm = keras.layers.Normalization(name="neighbour_normalization")
        neighbour_norm.adapt(stats.neighbours)
        geo_blocks.append(neighbour_norm(inputs[NEIGHBOUR_INPUT]))
    geo = keras.layers.Concatenate(name="geo")(geo_blocks)

    vocabulary = list(OCEAN_PROXIMITY_CATEGORIES)
    if config.category_embedding > 0:
        lookup = keras.layers.StringLookup(
            vocabulary=vocabulary, num_oov_indices=1, name="ocean_proximity_lookup"
        )(inputs[CATEGORICAL_FEATURE])
        category = keras.layers.Embedding(
            len(vocabulary) + 1, config.category_embedding, name="ocean_proximity_embedding"
        )(lookup)
    else:
        category = keras.layers.StringLookup(
            vocabulary=vocabulary,
            num_oov_indices=1,
            output_mode="one_hot",
            name="ocean_proximity_lookup",
        )(inputs[CATEGORICAL_FEATURE])
    return Encoded(numeric=numeric, geo=geo, category=category)


def to_tensors(frame: pd.DataFrame) -> dict[str, tf.Tensor]:
    """The ▶ signature's tensors for a DataFrame: float32 numbers (NaN kept), string category."""
    tensors = {
        name: tf.constant(frame[name].to_numpy(dtype="float32")) for name in NUMERIC_FEATURES
    }
    tensors[CATEGORICAL_FEATURE] = tf.constant(
        frame[CATEGORICAL_FEATURE].astype(str).to_numpy(dtype=object)
    )
    return tensors


NEIGHBOUR_CHUNK = 256


@keras.saving.register_keras_serializable(package="housing")
class NeighbourPrices(keras.layers.Layer):
    """Prices of the nearest TRAINING districts: mean log value of the k nearest, for several k.

    A memory of the training split (coordinates and log target) lives in non-trainable
    weights; a query district gets, for each ``k``, the mean log price of its k nearest
    training districts (relative to the table's mean) and the log distance to the k-th.
    Location is the strongest signal in this data set, and this is how an appraiser
    reads it. Queries are processed in chunks so that a large batch stays bounded in memory.
    """

    def __init__(self, table_size: int, ks: tuple[int, ...] = (4, 16, 64), **kwargs: Any):
        super().__init__(**kwargs)
        self.table_size = int(table_size)
        self.ks = tuple(int(k) for k in ks)
        self.coords = self.add_weight(
            shape=(self.table_size, 2), initializer="zeros", trainable=False, name="coords"
        )
        self.values = self.add_weight(
            shape=(self.table_size,), initializer="zeros", trainable=False, name="values"
        )
        self.center = self.add_weight(shape=(), initializer="zeros", trainable=False, name="center")

    @property
    def width(self) -> int:
        return 2 * len(self.ks)

    def set_table(self, latitude: np.ndarray, longitude: np.ndarray, log_price: np.ndarray) -> None:
        self.coords.assign(planar(latitude, longitude))
        self.values.assign(np.asarray(log_price, dtype="float32"))
        self.center.assign(float(np.mean(log_price)))

    def call(self, inputs: dict[str, Any]) -> Any:
        lat = tf.cast(inputs["latitude"], tf.float32)
        lon = tf.cast(inputs["longitude"], tf.float32)
        points = tf.stack([lat, lon * tf.cos(lat * (np.pi / 180.0))], axis=-1)
        rows = tf.shape(points)[0]
        # A small request is one block of its own size; a large batch is cut into blocks.
        block = tf.maximum(tf.minimum(rows, NEIGHBOUR_CHUNK), 1)
        blocks = (rows + block - 1) // block
        padded = tf.pad(points, [[0, blocks * block - rows], [0, 0]])
        features = tf.map_fn(
            self.neighbour_block,
            tf.reshape(padded, [blocks, block, 2]),
            fn_output_signature=tf.TensorSpec([None, self.width], tf.float32),
        )
        return tf.reshape(features, [-1, self.width])[:rows]

    def neighbour_block(self, points: tf.Tensor) -> tf.Tensor:
        # Direct differences, not |p|^2 - 2p.c + |c|^2: in float32 that expansion loses the
        # small distances that rank close neighbours, and its rounding varies with the batch.
        # Two [rows, table] planes added elementwise, not a reduce_sum over a last axis of 2:
        # the same sums (one addition each), without a [rows, table, 2] tensor and TF's slow
        # reduction over a tiny axis (64 rows: ~20x less time for the distances).
        coords = tf.convert_to_tensor(self.coords)
        squared = tf.square(points[:, 0:1] - coords[None, :, 0]) + tf.square(
            points[:, 1:2] - coords[None, :, 1]
        )
        largest = min(max(self.ks), self.table_size)
        negative, index = tf.math.top_k(-squared, k=largest)
        prices = tf.gather(tf.convert_to_tensor(self.values), index) - self.center
        running = tf.cumsum(prices, axis=-1)
        distance = tf.sqrt(tf.maximum(-negative, 0.0))
        out = []
        for k in self.ks:
            k = min(k, largest)
            out += [running[:, k - 1] / k, tf.math.log(distance[:, k - 1] + 1e-3)]
        return tf.stack(out, axis=-1)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return (input_shape["latitude"][0], self.width)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "table_size": self.table_size, "ks": list(self.ks)}


def planar(latitude: np.ndarray, longitude: np.ndarray) -> np.ndarray:
    """(lat, lon·cos lat) in degrees: distances on this plane are close to true ones."""
    lat = np.asarray(latitude, dtype="float32")
    lon = np.asarray(longitude, dtype="float32")
    return np.stack([lat, lon * np.cos(lat * (np.pi / 180.0))], axis=-1).astype("float32")


def out_of_fold_neighbours(
    train: pd.DataFrame, log_price: np.ndarray, ks: tuple[int, ...], folds: int = 5, seed: int = 42
) -> np.ndarray:
    """NeighbourPrices for each training row computed WITHOUT that row (K-fold), for fitting.

    With the full table a training district would find itself at distance 0 and the
    network would learn to copy its own label; out-of-fold values behave like those a
    new district gets from the full table at serving time.
    """
    order = np.random.default_rng(seed).permutation(len(train))
    out = np.zeros((len(train), 2 * len(ks)), dtype="float32")
    lat = train["latitude"].to_numpy()
    lon = train["longitude"].to_numpy()
    for fold in np.array_split(order, folds):
        keep = np.setdiff1d(order, fold)
        layer = NeighbourPrices(len(keep), ks)
        layer.set_table(lat[keep], lon[keep], log_price[keep])
        query = {
            "latitude": tf.constant(lat[fold], tf.float32),
            "longitude": tf.constant(lon[fold], tf.float32),
        }
        out[fold] = layer(query).numpy()
    return out
