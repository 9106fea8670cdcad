"""The fast serving form of a fitted pipeline: lowered preprocessing, trees compiled to C.

Why: ``Pipeline.predict`` on the default model costs ~27 ms whatever the row count. Two
thirds of that is ~900 Python-level per-tree calls inside the boosters, the rest is
scikit-learn's per-call bookkeeping around cheap arithmetic (validation, DataFrame
handling, output wrapping in every step of the ColumnTransformer). So:

- ``FeaturePlan`` runs the fitted ``ColumnTransformer`` as plain NumPy on the fitted
  parameters (imputer statistics, scaler moments, k-means centres, one-hot categories),
  with the same operations in the same order, so its output is bit-identical; steps it does
  not know are called as they are;
- ``CompiledTrees`` is the boosters compiled to a shared library by treelite (import) and
  tl2cgen (C code generation, quantised thresholds, branch annotations from training rows),
  loaded with tl2cgen's ``Predictor``. Building it needs a C compiler (gcc); loading it
  needs only the ``tl2cgen`` runtime.

``FastPipeline`` joins the two. A caller never trusts it blindly: ``choose_form`` checks it
against the pipeline on given rows before serving with it, and says which form it chose.
"""

from __future__ import annotations

import logging
import math
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.contract import CATEGORICAL_FEATURE, FEATURES
from core.digests import sha256_file
from core.errors import UserError
from training.repository import read_manifest, verify_artifact

log = logging.getLogger("housing.compiled")

COMPILED_NAME = "trees.so"
# What ``choose_form`` accepts: the largest relative difference from the pipeline.
MAX_RELATIVE_DIFFERENCE = 1e-5
# The serving forms, fastest first (the model server's metric label values).
FORM_COMPILED = "compiled"
FORM_PLAN = "plan"
FORM_PIPELINE = "pipeline"

Columns = dict[str, np.ndarray]
Kernel = Callable[[np.ndarray], np.ndarray]


# ---- columns -------------------------------------------------------------------------


def feature_columns(inputs: Columns) -> Columns:
    """The 9 inputs as the columns the pipeline was fitted on: float64 numbers, str category.

    The category is an object array explicitly: pandas 3 would infer its slower Arrow strings.
    """
    columns: Columns = {}
    for name in FEATURES:
        values = inputs[name]
        if name == CATEGORICAL_FEATURE:
            array = np.empty(len(values), dtype=object)
            array[:] = [v.decode() if isinstance(v, bytes) else v for v in values]
            columns[name] = array
        else:
            columns[name] = np.asarray(values, dtype=np.float64)
    return columns


def columns_of(frame) -> Columns:
    """Feature columns of a DataFrame with the 9 raw features."""
    inputs = {name: frame[name].to_numpy() for name in FEATURES}
    inputs[CATEGORICAL_FEATURE] = frame[CATEGORICAL_FEATURE].astype(object).to_numpy()
    return feature_columns(inputs)


def block_frame(columns: Columns, names: list[str]):
    """A DataFrame of some feature columns, keeping their dtypes.

    Why explicit: pandas 3 turns object arrays of str into its slower Arrow strings.
    """
    import pandas as pd

    if CATEGORICAL_FEATURE not in names:
        return pd.DataFrame(np.column_stack([columns[name] for name in names]), columns=names)
    return pd.DataFrame(
        {name: pd.Series(columns[name], dtype=columns[name].dtype) for name in names},
        columns=names,
    )


def feature_frame(columns: Columns):
    return block_frame(columns, list(FEATURES))


# ---- lowered preprocessing -----------------------------------------------------------

# sklearn warns on every call when a transformer fitted on a DataFrame gets an array; the
# plan does that on purpose, only for blocks it verified give identical output.
FEATURE_NAMES_WARNING = "X does not have valid feature names"


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


def lower(transformer) -> Kernel | None:
    """A NumPy function equal to ``transformer.transform`` on an array, or None.

    Each kernel repeats scikit-learn's own operations in its order (so results are
    bit-identical), rejects the inputs scikit-learn rejects (NaN, infinity) with the same
    exception type, and refuses the options it does not repeat.
    """
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    from training.features import ClusterSimilarity
    from training.sklearn_models import NeighbourTarget, rotated_coordinates

    kind = type(transformer)
    if isinstance(transformer, str):
        return (lambda X: X) if transformer == "passthrough" else None  # noqa: N803
    if kind is Pipeline:
        kernels = [
            lower(step) for _, step in transformer.steps if step not in (None, "passthrough")
        ]
        if any(kernel is None for kernel in kernels):
            return None
        return _chain(kernels)  # type: ignore[arg-type]
    if kind is SimpleImputer:
        return _imputer(transformer)
    if kind is StandardScaler:
        return _scaler(transformer)
    if kind is FunctionTransformer:
        if transformer.func is None or transformer.validate:
            return None
        func, kw_args = transformer.func, transformer.kw_args or {}
        if func is rotated_coordinates and not kw_args:
            return _rotated()
        return lambda X: func(X, **kw_args)  # noqa: N803
    if kind is OneHotEncoder:
        return _one_hot(transformer)
    if kind is ClusterSimilarity:
        return _rbf(transformer.kmeans_.cluster_centers_, transformer.gamma)
    if kind is NeighbourTarget:
        return _neighbours(transformer)
    return None


def _reject_infinity(X: np.ndarray) -> None:  # noqa: N803
    """scikit-learn's ``allow-nan`` input check (imputers, scalers): NaN passes, inf fails.

    A finite sum (one NumPy call) rules out infinities; only a sum that is not (a NaN, an
    infinity, an overflow) needs the element-wise test.
    """
    if not math.isfinite(np.add.reduce(X, axis=None)) and np.isinf(X).any():
        raise ValueError("Input X contains infinity or a value too large for dtype('float64').")


def _reject_non_finite(X: np.ndarray) -> None:  # noqa: N803
    """scikit-learn's default input check (e.g. ``rbf_kernel``): NaN and inf fail."""
    if not np.isfinite(X).all():
        raise ValueError("Input X contains NaN or infinity.")


def _chain(kernels: list[Kernel]) -> Kernel:
    def run(X):  # noqa: N803
        for kernel in kernels:
            X = kernel(X)  # noqa: N806
        return X

    return run


def _imputer(imputer) -> Kernel | None:
    """``SimpleImputer.transform``: NaNs replaced by the fitted statistics."""
    if imputer.add_indicator or not _is_nan(imputer.missing_values):
        return None
    statistics = imputer.statistics_
    if statistics.dtype.kind == "f":
        if np.isnan(statistics).any():  # sklearn drops all-missing columns: not repeated
            return None

        def run(X):  # noqa: N803
            _reject_infinity(X)
            return np.where(np.isnan(X), statistics, X)

        return run
    return lambda X: np.where(X != X, statistics, X)  # noqa: N803 (object: NaN != NaN)


def _scaler(scaler) -> Kernel:
    """``StandardScaler.transform``: subtract the mean, then divide by the scale."""
    mean = scaler.mean_ if scaler.with_mean else None
    scale = scaler.scale_ if scaler.with_std else None

    def run(X):  # noqa: N803
        X = np.asarray(X, dtype=np.float64)  # noqa: N806
        _reject_infinity(X)
        # A new array either way (sklearn's copy=True); ``X - mean`` has the values of -=.
        X = np.array(X) if mean is None else X - mean  # noqa: N806
        if scale is not None:
            X /= scale
        return X

    return run


def _one_hot(encoder) -> Kernel | None:
    """``OneHotEncoder.transform`` as a dense array; unknown categories give zeros."""
    if (
        encoder.drop is not None
        or encoder.handle_unknown != "ignore"
        or getattr(encoder, "_infrequent_enabled", False)
    ):
        return None
    categories = [np.asarray(c, dtype=object) for c in encoder.categories_]
    dtype = encoder.dtype

    def run(X):  # noqa: N803
        parts = [(X[:, [i]] == c[None, :]).astype(dtype) for i, c in enumerate(categories)]
        return parts[0] if len(parts) == 1 else np.hstack(parts)

    return run


def _rbf(centres: np.ndarray, gamma: float) -> Kernel:
    """``rbf_kernel(X, centres, gamma)`` with scikit-learn's distance formula
    (|x|² - 2 x·c + |c|², clipped at 0); of its input validation only the finiteness check."""
    centres = np.asarray(centres, dtype=np.float64)
    centre_norms = np.einsum("ij,ij->i", centres, centres)[np.newaxis, :]

    def run(X):  # noqa: N803
        X = np.asarray(X, dtype=np.float64)  # noqa: N806
        _reject_non_finite(X)
        distances = -2 * (X @ centres.T)
        distances += np.einsum("ij,ij->i", X, X)[:, np.newaxis]
        distances += centre_norms
        np.maximum(distances, 0, out=distances)
        distances *= -gamma
        np.exp(distances, distances)
        return distances

    return run


def _rotated() -> Kernel:
    """``rotated_coordinates`` with its cosines and sines computed once (the same NumPy
    scalars it computes per call) and all rotations in two array operations."""
    from training.sklearn_models import LONGITUDE_SCALE, ROTATIONS

    cosines = np.array([np.cos(np.deg2rad(degrees)) for degrees in ROTATIONS])
    sines = np.array([np.sin(np.deg2rad(degrees)) for degrees in ROTATIONS])

    def run(X):  # noqa: N803
        X = np.asarray(X, dtype=float)  # noqa: N806
        out = np.empty((len(X), 2 + len(ROTATIONS)))
        out[:, :2] = X[:, :2]
        np.add(X[:, 0:1] * cosines, (X[:, 1:2] * LONGITUDE_SCALE) * sines, out=out[:, 2:])
        return out

    return run


def _neighbours(transformer) -> Kernel:
    """``NeighbourTarget.transform`` with fewer Python-level steps: the same KD-tree query
    and gathers, then ``np.add.reduce`` over each row's first k neighbours divided by k,
    which is what ``mean`` computes (bit for bit) without its Python wrapper. (A single
    3-D gather of both targets would be one call fewer, but NumPy then sums in another
    order and the last bits differ.)"""
    from training.sklearn_models import INCOME_FLOOR, NeighbourTarget

    tree, ks = transformer.tree_, tuple(transformer.ks)
    deepest = max(ks)
    values_of, per_income_of = transformer.y_, transformer.value_per_income_
    add = np.add.reduce

    def run(X):  # noqa: N803
        X = np.asarray(X, dtype=float)  # noqa: N806
        indices = tree.query(NeighbourTarget._points(X), k=deepest, return_distance=False)
        income = np.maximum(X[:, 2], INCOME_FLOOR)
        values, per_income = values_of[indices], per_income_of[indices]
        out = np.empty((len(X), 2 * len(ks)))
        for j, k in enumerate(ks):
            out[:, 2 * j] = add(values[:, :k], axis=1) / k
            out[:, 2 * j + 1] = add(per_income[:, :k], axis=1) / k * income
        return out

    return run


def _column_stack(arrays: list[np.ndarray]) -> np.ndarray:
    """``np.column_stack`` with less Python around it for the usual case (1-D float64
    columns of one length), the same C-ordered float64 result."""
    rows = len(arrays[0])
    if not all(a.dtype == np.float64 and a.ndim == 1 and len(a) == rows for a in arrays):
        return np.column_stack(arrays)
    out = np.empty((rows, len(arrays)))
    for index, array in enumerate(arrays):
        out[:, index] = array
    return out


@dataclass
class Block:
    """One ColumnTransformer block: the columns it reads and how to run it."""

    names: list[str]
    transformer: Any
    kernel: Kernel | None  # lowered; None: call the transformer itself
    as_array: bool  # the transformer itself takes a plain array (else a DataFrame)

    def transform(self, columns: Columns) -> np.ndarray:
        if self.kernel is not None or self.as_array:
            if len(self.names) == 1:
                block = columns[self.names[0]][:, np.newaxis]
            else:
                block = _column_stack([columns[name] for name in self.names])
        else:
            block = block_frame(columns, self.names)
        if self.kernel is not None:
            return self.kernel(block)
        part = self.transformer.transform(block)
        return part.toarray() if hasattr(part, "toarray") else np.asarray(part)


class FeaturePlan:
    """A fitted ``ColumnTransformer`` (plus any later transform steps) as plain calls.

    Built only for the ColumnTransformers it repeats exactly (named columns, dense output,
    no weights); ``choose_form`` then compares it with the pipeline on real rows.
    """

    def __init__(self, blocks: list[Block], steps: list):
        self.blocks = blocks
        self.steps = steps

    @classmethod
    def of(cls, model, rows: Columns) -> FeaturePlan | None:
        from sklearn.compose import ColumnTransformer
        from sklearn.pipeline import Pipeline

        if not isinstance(model, Pipeline) or len(model.steps) < 2:
            return None
        first = model.steps[0][1]
        if (
            not isinstance(first, ColumnTransformer)
            or not hasattr(first, "transformers_")
            or first.sparse_output_
            or first.transformer_weights
            or getattr(first, "_sklearn_output_config", {}).get("transform")
            not in (None, "default")
        ):
            return None
        blocks = []
        for _, transformer, selection in first.transformers_:
            if transformer == "drop":
                continue
            names = list(selection) if isinstance(selection, list | tuple) else None
            if names is None or not all(isinstance(n, str) and n in FEATURES for n in names):
                return None
            if not names:
                continue
            mixed = CATEGORICAL_FEATURE in names and len(names) > 1
            kernel = None if mixed else lower(transformer)
            block = Block(names, transformer, kernel, as_array=False)
            if kernel is None and not mixed:
                # Once per process (a per-call catch_warnings is not thread-safe).
                warnings.filterwarnings(
                    "ignore", message=FEATURE_NAMES_WARNING, category=UserWarning
                )
                block.as_array = _same(Block(names, transformer, None, True), block, rows)
            blocks.append(block)
        steps = [step for _, step in model.steps[1:-1] if step not in (None, "passthrough")]
        return cls(blocks, steps)

    def transform(self, columns: Columns) -> np.ndarray:
        features = np.hstack([block.transform(columns) for block in self.blocks])
        for step in self.steps:
            features = step.transform(features)
        return features


def _same(first: Block, second: Block, rows: Columns) -> bool:
    """Whether two ways of running a block give identical output on the rows."""
    try:
        a, b = first.transform(rows), second.transform(rows)
    except Exception:  # e.g. the transformer selects columns by name: it needs the DataFrame
        return False
    return a.dtype == b.dtype and bool(np.array_equal(a, b, equal_nan=True))


# ---- compiled trees ------------------------------------------------------------------


def boosters_of(estimator) -> list | None:
    """The squared-error histogram boosters whose plain mean is ``estimator``'s prediction."""
    from sklearn.ensemble import HistGradientBoostingRegressor, VotingRegressor

    if isinstance(estimator, HistGradientBoostingRegressor):
        members = [estimator]
    elif isinstance(estimator, VotingRegressor) and estimator.weights is None:
        members = list(estimator.estimators_)
    else:
        return None
    if not all(
        isinstance(m, HistGradientBoostingRegressor) and m.loss == "squared_error" for m in members
    ):
        return None
    return members


def compile_trees(estimator, folder: Path, training_features: np.ndarray) -> dict[str, Any]:
    """Compile the estimator's trees into ``folder/trees.so``; return the manifest block.

    The library holds every booster's trees with zero base scores, so it returns their raw
    sum; ``CompiledTrees`` adds the baselines and divides by the number of boosters.
    ``training_features`` (preprocessed training rows) drive the branch annotations.
    Raises ``ValueError`` for an estimator this cannot compile.
    """
    import tl2cgen
    import treelite
    import treelite.sklearn

    members = boosters_of(estimator)
    if members is None:
        raise ValueError(f"no compiled form for {type(estimator).__name__}")
    models = []
    for member in members:
        model = treelite.sklearn.import_model(member)
        header = model.get_header_accessor()
        if header.get_field("postprocessor") != "identity":
            raise ValueError(f"unexpected treelite postprocessor for {member!r}")
        header.set_field("base_scores", np.zeros(1, dtype=np.float64))
        models.append(model)
    trees = treelite.Model.concatenate(models) if len(models) > 1 else models[0]
    matrix = tl2cgen.DMatrix(np.asarray(training_features, dtype=np.float64), dtype="float64")
    path = folder / COMPILED_NAME
    with tempfile.TemporaryDirectory() as scratch:
        annotations = Path(scratch) / "annotations.json"
        tl2cgen.annotate_branch(trees, matrix, path=annotations)
        tl2cgen.export_lib(
            trees,
            toolchain=compiler(),
            libpath=path,
            params={"quantize": 1, "annotate_in": str(annotations), "parallel_comp": 16},
        )
    return {
        "path": COMPILED_NAME,
        "sha256": sha256_file(path),
        "size_bytes": path.stat().st_size,
        "trees": int(trees.num_tree),
        "boosters": len(members),
        "generator": f"treelite {treelite.__version__} + tl2cgen {tl2cgen.__version__}",
        "compiler": compiler_version(),
        "platform": f"{platform.system()}-{platform.machine()}".lower(),
    }


def compiler() -> str:
    """The C compiler tl2cgen calls: ``gcc`` (the docker trainer image installs it)."""
    if shutil.which("gcc") is None:
        raise UserError(
            "no C compiler (gcc) on PATH to build the compiled trees: install gcc, "
            "or train with --no-compile (the model server then serves the slower pipeline)"
        )
    return "gcc"


def compiler_version() -> str:
    result = subprocess.run(["gcc", "--version"], capture_output=True, text=True, check=False)
    return result.stdout.splitlines()[0] if result.stdout else "gcc"


# Up to this many rows, ``CompiledTrees`` calls the library's own per-row ``predict``
# directly (one ctypes call per row); more go through tl2cgen's batch predictor, whose
# DMatrix and output set-up cost ~30 us per call.
DIRECT_ROWS = 16


class CompiledTrees:
    """The compiled library: the boosters' mean prediction from preprocessed features."""

    def __init__(self, path: Path, baseline_sum: float, boosters: int):
        import tl2cgen

        self._tl2cgen = tl2cgen
        self.path = path
        self.baseline_sum = baseline_sum
        self.boosters = boosters
        self._local = threading.local()
        self.num_feature = self._predictor().num_feature
        self._predict_row = _row_function(path, self.num_feature)

    def _predictor(self):
        """One Predictor per thread (the model server predicts in several threads)."""
        predictor = getattr(self._local, "predictor", None)
        if predictor is None:
            predictor = self._local.predictor = self._tl2cgen.Predictor(self.path, nthread=1)
        return predictor

    def predict(self, features: np.ndarray) -> np.ndarray:
        if features.ndim != 2 or features.shape[1] != self.num_feature:
            raise ValueError(f"{features.shape[-1]} features, the trees take {self.num_feature}")
        predict_row = self._predict_row
        if predict_row is not None and len(features) <= DIRECT_ROWS:
            raw = _predict_rows(predict_row, features)
        else:
            matrix = self._tl2cgen.DMatrix(features, dtype="float64")
            raw = self._predictor().predict(matrix).reshape(-1)
        return (raw + self.baseline_sum) / self.boosters


def _predict_rows(predict_row: Callable, features: np.ndarray) -> np.ndarray:
    """The raw sums from the library's ``predict(entries, pred_margin, result)``, fed
    as tl2cgen's runtime feeds it: each row an array of ``union Entry`` (8 bytes: the
    double, or ``missing`` = -1 in its first int for NaN), rewritten in place by the
    library (it quantises), and a zeroed result it adds each tree's leaf to."""
    entries = np.array(features, dtype=np.float64, order="C")  # a copy: it is rewritten
    missing = np.isnan(entries)
    if missing.any():
        entries.view(np.int32).reshape(*entries.shape, 2)[..., 0][missing] = -1
    raw = np.zeros(len(entries))
    data, stride, out = entries.ctypes.data, entries.strides[0], raw.ctypes.data
    for row in range(len(entries)):
        predict_row(data + row * stride, 0, out + row * 8)
    return raw


def _row_function(path: Path, num_feature: int) -> Callable | None:
    """The library's per-row ``predict``, if it has the shape this module feeds: one
    target, float64 thresholds and leaves, ``num_feature`` features (else None: the batch
    predictor serves every call)."""
    import ctypes

    try:
        library = ctypes.CDLL(str(path))
        library.get_num_target.restype = ctypes.c_int32
        library.get_num_feature.restype = ctypes.c_int32
        library.get_threshold_type.restype = ctypes.c_char_p
        library.get_leaf_output_type.restype = ctypes.c_char_p
        if (
            library.get_num_target() != 1
            or library.get_num_feature() != num_feature
            or library.get_threshold_type() != b"float64"
            or library.get_leaf_output_type() != b"float64"
        ):
            return None
        predict = library.predict
    except (OSError, AttributeError):
        return None
    predict.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    predict.restype = None
    return predict


def load_compiled_trees(path: Path, estimator) -> CompiledTrees:
    """The compiled library at ``path`` for the pipeline's final ``estimator`` (whose
    boosters give the baselines the library leaves out)."""
    members = boosters_of(estimator)
    if members is None:
        raise ValueError(f"no compiled form for {type(estimator).__name__}")
    baseline = sum(float(np.ravel(m._baseline_prediction)[0]) for m in members)
    return CompiledTrees(path, baseline, len(members))


def load_verified_trees(version_dir: Path, estimator) -> CompiledTrees:
    """A version's compiled trees, loaded only after their SHA-256 matches the manifest."""
    block = read_manifest(version_dir).get("compiled") or {}
    path = verify_artifact(version_dir, block.get("path", COMPILED_NAME), block="compiled")
    return load_compiled_trees(path, estimator)


def export_compiled(model, folder: Path, training_rows: Columns, check_rows: Columns) -> dict:
    """Compile ``model``'s trees into ``folder``; return the manifest's ``compiled`` block.

    The compiled form is checked against the pipeline on ``check_rows`` (the test split)
    before it is kept; a model without a compiled form, or one that disagrees, gets a block
    that says why (``skipped``) and no library.
    """
    plan = FeaturePlan.of(model, check_rows)
    if plan is None or boosters_of(model.steps[-1][1]) is None:
        return {"skipped": f"no compiled form for {type(model.steps[-1][1]).__name__}"}
    block = compile_trees(model.steps[-1][1], folder, plan.transform(training_rows))
    library = folder / COMPILED_NAME
    fast = FastPipeline(plan, load_compiled_trees(library, model.steps[-1][1]), FORM_COMPILED)
    difference = relative_difference(
        predict_both_ways(fast, check_rows), PipelineForm(model).predict(check_rows)
    )
    rows = len(check_rows[FEATURES[0]])
    if difference > MAX_RELATIVE_DIFFERENCE:
        library.unlink()
        return {"skipped": f"compiled trees disagree with the pipeline ({difference:.3g})"}
    return {**block, "checked_rows": rows, "max_relative_difference": difference}


# ---- the serving forms ---------------------------------------------------------------


class FastPipeline:
    """A pipeline's prediction from the feature plan and a final estimator (compiled trees,
    or the fitted estimator itself)."""

    def __init__(self, plan: FeaturePlan, final, form: str):
        self.plan = plan
        self.final = final
        self.form = form

    def predict(self, columns: Columns) -> np.ndarray:
        return np.asarray(self.final.predict(self.plan.transform(columns))).reshape(-1)


class PipelineForm:
    """The joblib pipeline itself: the reference every faster form is checked against."""

    form = FORM_PIPELINE

    def __init__(self, model):
        self.model = model

    def predict(self, columns: Columns) -> np.ndarray:
        return np.asarray(self.model.predict(feature_frame(columns))).reshape(-1)


# How many of the checked rows ``predict_both_ways`` predicts one row per call.
ROW_BY_ROW_CHECKS = 8


def predict_both_ways(form: FastPipeline, rows: Columns) -> np.ndarray:
    """Predictions for ``rows``: the first ``ROW_BY_ROW_CHECKS`` one row per call, the rest
    in one call, so one comparison covers both ways the compiled trees are called (row by
    row up to ``DIRECT_ROWS``, tl2cgen's batch predictor beyond)."""
    count = len(rows[FEATURES[0]])
    head = min(ROW_BY_ROW_CHECKS, count)
    parts = [form.predict({n: v[i : i + 1] for n, v in rows.items()}) for i in range(head)]
    if count > head:
        parts.append(form.predict({n: v[head:] for n, v in rows.items()}))
    return np.concatenate(parts) if parts else form.predict(rows)


def relative_difference(actual: np.ndarray, expected: np.ndarray) -> float:
    """Largest |actual - expected| / max(|expected|, 1); inf when shapes differ or NaNs
    appear in one but not the other."""
    actual, expected = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    if actual.shape != expected.shape or not np.array_equal(np.isnan(actual), np.isnan(expected)):
        return float("inf")
    keep = ~np.isnan(expected)
    if not keep.any():
        return 0.0
    scale = np.maximum(np.abs(expected[keep]), 1.0)
    return float(np.max(np.abs(actual[keep] - expected[keep]) / scale))


@dataclass
class Choice:
    """The form that serves, and why the faster ones do not (empty when the fastest does)."""

    predictor: FastPipeline | PipelineForm
    reasons: list[str]

    @property
    def form(self) -> str:
        return self.predictor.form


def choose_form(
    model, rows: Columns, compiled: Callable[[], CompiledTrees] | None = None
) -> Choice:
    """The fastest form that agrees with ``model`` on ``rows``.

    ``compiled`` loads the compiled trees (verifying the artifact); they serve when the
    predictions are within ``MAX_RELATIVE_DIFFERENCE``. Else the feature plan with the
    fitted final estimator serves when it is bit-identical; else the pipeline.
    """
    expected = PipelineForm(model).predict(rows)
    reasons: list[str] = []
    plan = FeaturePlan.of(model, rows)
    if plan is None:
        return Choice(PipelineForm(model), ["the pipeline has no feature plan"])
    if compiled is None:
        reasons.append("no compiled trees in this version")
    else:
        try:
            fast = FastPipeline(plan, compiled(), FORM_COMPILED)
            difference = relative_difference(predict_both_ways(fast, rows), expected)
            if difference <= MAX_RELATIVE_DIFFERENCE:
                return Choice(fast, reasons)
            reasons.append(
                f"compiled trees disagree with the pipeline on {len(expected)} reference rows "
                f"(relative difference {difference:.3g} > {MAX_RELATIVE_DIFFERENCE:g})"
            )
        except Exception as exc:  # a missing, corrupt or foreign library: serve without it
            reasons.append(f"compiled trees unusable: {type(exc).__name__}: {exc}")
    planned = FastPipeline(plan, model.steps[-1][1], FORM_PLAN)
    if np.array_equal(planned.predict(rows), expected, equal_nan=True):
        return Choice(planned, reasons)
    reasons.append("the feature plan is not bit-identical to the pipeline")
    return Choice(PipelineForm(model), reasons)
