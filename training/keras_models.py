"""Chapter 10's networks over the in-graph preprocessing: the Sequential-style MLP and Wide & Deep.

Networks are trained on a scaled target (``TargetTransform``), which keeps the loss
well-conditioned; ``serving_model`` appends ``TargetDecoder`` so the exported graph
answers in USD.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from core.contract import OUTPUT_NAME, TARGET
from training.evaluation import rmse
from training.keras_preprocessing import (
    NEIGHBOUR_INPUT,
    PreprocessingConfig,
    TrainingStats,
    encode,
    fit_stats,
    raw_inputs,
    to_tensors,
)

ARCHITECTURES = ("mlp", "wide_deep")
MAIN_OUTPUT = "main"
AUX_OUTPUT = "aux"


@dataclass(frozen=True)
class TargetTransform:
    """``z = (f(y) - mean) / std`` with ``f`` = log or identity; the network predicts ``z``.

    Decoded predictions are clipped to the training target's range: the census data is
    capped (at 500,001 USD), and a network extrapolating on an outlying district (a
    ratio far outside the training range) must not answer with an absurd price.
    """

    log: bool
    mean: float
    std: float
    low: float
    high: float

    @classmethod
    def fit(cls, y: np.ndarray, log: bool = True) -> TargetTransform:
        y = np.asarray(y, dtype=float)
        values = np.log(y) if log else y
        return cls(log, float(values.mean()), float(values.std()), float(y.min()), float(y.max()))

    def encode(self, y: np.ndarray) -> np.ndarray:
        values = np.log(y) if self.log else np.asarray(y, dtype=float)
        return ((values - self.mean) / self.std).astype("float32")


@keras.saving.register_keras_serializable(package="housing")
class TargetDecoder(keras.layers.Layer):
    """Scaled network output ``[batch, 1]`` -> USD ``[batch]``, inside the graph."""

    def __init__(self, log: bool, mean: float, std: float, low: float, high: float, **kwargs: Any):
        super().__init__(**kwargs)
        self.log, self.mean, self.std = bool(log), float(mean), float(std)
        self.low, self.high = float(low), float(high)

    def call(self, z: Any) -> Any:
        ops = keras.ops
        value = ops.squeeze(z, axis=-1) * self.std + self.mean
        if self.log:
            value = ops.exp(ops.minimum(value, float(np.log(self.high))))
        return ops.clip(value, self.low, self.high)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return tuple(input_shape[:-1])

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            **{"log": self.log, "mean": self.mean, "std": self.std},
            **{"low": self.low, "high": self.high},
        }


@dataclass(frozen=True)
class ModelConfig:
    """Hyperparameters of a network (and of its preprocessing)."""

    arch: str = "wide_deep"
    hidden_layers: int = 3
    units: int = 50
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    dropout: float = 0.0
    aux_output: bool = True
    log_target: bool = False  # False: fit the scaled USD value, i.e. the RMSE being reported
    preprocessing: PreprocessingConfig = field(default_factory=PreprocessingConfig)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Fitting:
    """How a network is fitted, whatever its hyperparameters: the same for every trial of a
    search and for the final run."""

    epochs: int
    batch_size: int = 64
    seed: int = 42
    strategy: str = "auto"  # see distribution_strategy


def dense_stack(x: Any, config: ModelConfig, prefix: str) -> Any:
    for index in range(config.hidden_layers):
        x = keras.layers.Dense(
            config.units,
            activation="relu",
            kernel_initializer="he_normal",
            name=f"{prefix}_dense_{index + 1}",
        )(x)
        if config.dropout > 0:
            x = keras.layers.Dropout(config.dropout, name=f"{prefix}_dropout_{index + 1}")(x)
    return x


def model_inputs(stats: TrainingStats) -> dict[str, keras.KerasTensor]:
    """The raw features, plus the neighbour-price block when the preprocessing uses it."""
    inputs = raw_inputs()
    if stats.ks:
        inputs[NEIGHBOUR_INPUT] = keras.Input(
            shape=(stats.neighbours.shape[1],), dtype="float32", name=NEIGHBOUR_INPUT
        )
    return inputs


def build_mlp(stats: TrainingStats, config: ModelConfig) -> keras.Model:
    """The book's MLP: preprocessing (incl. Normalization) -> Dense(units, relu) × n -> Dense(1)."""
    inputs = model_inputs(stats)
    features = encode(inputs, stats, config.preprocessing).all()
    hidden = dense_stack(features, config, "mlp")
    output = keras.layers.Dense(1, name=MAIN_OUTPUT)(hidden)
    return keras.Model(inputs, {MAIN_OUTPUT: output}, name="housing_mlp")


def build_wide_deep(stats: TrainingStats, config: ModelConfig) -> keras.Model:
    """Wide & Deep: every encoded feature goes straight to the output and through the MLP.

    With ``aux_output`` the deep path also predicts on its own (the book's auxiliary
    output, weighted 0.1 in the loss), which regularises the deep part.
    """
    inputs = model_inputs(stats)
    encoded = encode(inputs, stats, config.preprocessing)
    wide = encoded.all()
    deep = dense_stack(wide, config, "deep")
    merged = keras.layers.Concatenate(name="wide_and_deep")([wide, deep])
    outputs = {MAIN_OUTPUT: keras.layers.Dense(1, name=MAIN_OUTPUT)(merged)}
    if config.aux_output:
        outputs[AUX_OUTPUT] = keras.layers.Dense(1, name=AUX_OUTPUT)(deep)
    return keras.Model(inputs, outputs, name="housing_wide_deep")


OPTIMIZERS: dict[str, Any] = {
    "adam": keras.optimizers.Adam,
    "nadam": keras.optimizers.Nadam,
    "adamw": keras.optimizers.AdamW,
    "rmsprop": keras.optimizers.RMSprop,
    "sgd": lambda learning_rate: keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True),
}


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name](learning_rate)


def build_model(stats: TrainingStats, config: ModelConfig) -> keras.Model:
    """Build and compile the training network (outputs the scaled target)."""
    if config.arch == "mlp":
        model = build_mlp(stats, config)
    elif config.arch == "wide_deep":
        model = build_wide_deep(stats, config)
    else:
        raise ValueError(f"unknown architecture {config.arch!r}; expected one of {ARCHITECTURES}")
    losses = {name: "mse" for name in model.output}
    weights = {MAIN_OUTPUT: 0.9, AUX_OUTPUT: 0.1} if AUX_OUTPUT in model.output else None
    model.compile(
        optimizer=make_optimizer(config.optimizer, config.learning_rate),
        loss=losses,
        loss_weights=weights,
        metrics={MAIN_OUTPUT: [keras.metrics.RootMeanSquaredError(name="rmse")]},
    )
    return model


def serving_model(model: keras.Model, target: TargetTransform, stats: TrainingStats) -> keras.Model:
    """Raw features -> ``{median_house_value: USD [batch]}``: the main output, decoded.

    The neighbour-price block, an input of the training network, is computed here from
    the training table, so the served graph needs nothing but the 9 raw features.
    """
    inputs = raw_inputs()
    feed: dict[str, Any] = dict(inputs)
    if NEIGHBOUR_INPUT in model.input:
        feed[NEIGHBOUR_INPUT] = stats.neighbour_layer()(inputs)
    scaled = model(feed)[MAIN_OUTPUT]
    usd = TargetDecoder(**asdict(target), name=OUTPUT_NAME)(scaled)
    return keras.Model(inputs, {OUTPUT_NAME: usd}, name=f"{model.name}_serving")


STRATEGIES = ("auto", "mirrored", "default", "multi_worker")
_MULTI_WORKER: list[tf.distribute.Strategy] = []


def distribution_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """``auto``: MirroredStrategy when more than one GPU is visible, else the default one.

    ``multi_worker``: MultiWorkerMirroredStrategy over the cluster in ``TF_CONFIG`` (one per
    process: its collectives must be set up before any other TensorFlow op, so a
    distributed entry point asks for it first thing, and later calls get the same one)."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; expected one of {STRATEGIES}")
    if name == "multi_worker":
        if not _MULTI_WORKER:
            _MULTI_WORKER.append(tf.distribute.MultiWorkerMirroredStrategy())
        return _MULTI_WORKER[0]
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def network_inputs(frame: pd.DataFrame, stats: TrainingStats, neighbours: np.ndarray | None):
    """Raw tensors plus the neighbour block (out-of-fold for training rows, else from the table)."""
    tensors: dict[str, Any] = to_tensors(frame)
    if stats.ks:
        if neighbours is None:
            neighbours = keras.ops.convert_to_numpy(stats.neighbour_layer()(tensors))
        tensors[NEIGHBOUR_INPUT] = tf.constant(neighbours, tf.float32)
    return tensors


def dataset(
    frame: pd.DataFrame,
    stats: TrainingStats,
    target: TargetTransform,
    outputs: list[str],
    batch_size: int,
    neighbours: np.ndarray | None = None,
    shuffle_seed: int | None = None,
) -> tf.data.Dataset:
    y = tf.constant(target.encode(frame[TARGET].to_numpy()))
    data = tf.data.Dataset.from_tensor_slices(
        (network_inputs(frame, stats, neighbours), {name: y for name in outputs})
    )
    if shuffle_seed is not None:
        data = data.shuffle(len(frame), seed=shuffle_seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


@dataclass
class Trained:
    """A fitted network with what it needs for serving, and its training history."""

    model: keras.Model
    stats: TrainingStats
    target: TargetTransform
    history: dict[str, list[float]]
    val_rmse: float  # USD, validation rows, best epoch

    def serving(self) -> keras.Model:
        return serving_model(self.model, self.target, self.stats)


def fit_multi_worker(
    model: keras.Model,
    train_data: tf.data.Dataset,
    val_data: tf.data.Dataset,
    epochs: int,
    patience: int,
) -> dict[str, list[float]]:
    """``model.fit`` under MultiWorkerMirroredStrategy: every worker runs the same steps on
    its shard of each batch, gradients are summed across workers (Keras scales each
    replica's loss by 1/replicas), and early stopping restores the best epoch's weights.
    The learning rate stays fixed (no ReduceLROnPlateau)."""
    strategy = distribution_strategy("multi_worker")
    with strategy.scope():
        model.optimizer.build(model.trainable_variables)
    train_batches = strategy.experimental_distribute_dataset(train_data)
    val_batches = strategy.experimental_distribute_dataset(val_data)

    def replica_loss(x: Any, y: Any, training: bool) -> Any:
        return model.compute_loss(x=x, y=y, y_pred=model(x, training=training), training=training)

    @tf.function
    def train_step(batch: Any) -> Any:
        def step(x: Any, y: Any) -> Any:
            with tf.GradientTape() as tape:
                loss = replica_loss(x, y, training=True)
            grads = tape.gradient(loss, model.trainable_variables)
            model.optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return loss

        return strategy.reduce("SUM", strategy.run(step, args=batch), axis=None)

    @tf.function
    def val_step(batch: Any) -> Any:
        per_replica = strategy.run(lambda x, y: replica_loss(x, y, training=False), args=batch)
        return strategy.reduce("SUM", per_replica, axis=None)

    history: dict[str, list[float]] = {"loss": [], "val_loss": []}
    best, best_weights, waited = float("inf"), model.get_weights(), 0
    for _ in range(epochs):
        history["loss"].append(float(np.mean([float(train_step(b)) for b in train_batches])))
        history["val_loss"].append(float(np.mean([float(val_step(b)) for b in val_batches])))
        if history["val_loss"][-1] < best:
            best, best_weights, waited = history["val_loss"][-1], model.get_weights(), 0
        else:
            waited += 1
            if waited >= patience:
                break
    model.set_weights(best_weights)
    return history


def train_network(
    fit: pd.DataFrame,
    val: pd.DataFrame,
    config: ModelConfig,
    fitting: Fitting,
    log_dir: Path | None = None,
    verbose: int | str = "auto",
    patience: int = 10,
    stats: TrainingStats | None = None,
) -> Trained:
    """Fit on ``fit`` with early stopping on ``val`` (both carved from the training split).

    Callbacks: EarlyStopping(restore_best_weights), ReduceLROnPlateau, and when
    ``log_dir`` is given a ModelCheckpoint of the best epoch and TensorBoard logs.
    ``stats`` reuses preprocessing statistics already fitted on ``fit`` (a search does).
    """
    epochs, batch_size, seed = fitting.epochs, fitting.batch_size, fitting.seed
    keras.utils.set_random_seed(seed)
    if stats is None:
        stats = fit_stats(fit, config.preprocessing, seed=seed)
    target = TargetTransform.fit(fit[TARGET].to_numpy(), log=config.log_target)
    with distribution_strategy(fitting.strategy).scope():
        model = build_model(stats, config)
    outputs = list(model.output)
    train_data = dataset(fit, stats, target, outputs, batch_size, stats.neighbours, seed)
    val_data = dataset(val, stats, target, outputs, batch_size)
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=patience, restore_best_weights=True
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=max(2, patience // 3)
        ),
    ]
    if fitting.strategy == "multi_worker":
        # Keras 3's fit() cannot consume a multi-worker distributed dataset
        # (keras-team/keras#20585): a plain loop over strategy.run instead.
        history = fit_multi_worker(model, train_data, val_data, epochs, patience)
    else:
        if log_dir is not None:
            callbacks += [
                keras.callbacks.ModelCheckpoint(
                    str(log_dir / "checkpoint.keras"), monitor="val_loss", save_best_only=True
                ),
                keras.callbacks.TensorBoard(log_dir=str(log_dir / "tensorboard")),
            ]
        history = model.fit(
            train_data,
            validation_data=val_data,
            epochs=epochs,
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,
        ).history
    trained = Trained(model, stats, target, history, val_rmse=float("nan"))
    val_pred = trained.serving().predict(to_tensors(val), batch_size=4096, verbose=0)
    trained.val_rmse = rmse(val[TARGET].to_numpy(), val_pred[OUTPUT_NAME])
    return trained
