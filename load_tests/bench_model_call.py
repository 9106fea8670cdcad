"""What one model call costs, preprocessing included: the sklearn serving forms side by side.

For a published ``housing_sklearn`` version (default: the repository's default version) it
prints milliseconds per call for 1 and 64 rows (median of repeated in-process calls on one
thread, from the 9 raw columns to USD) and the test RMSE and largest relative difference
from the joblib pipeline on the book's test split, for:

- ``pipeline``: ``Pipeline.predict`` on a DataFrame (what a plain server does);
- ``plan``: the feature plan (``training.compiled.FeaturePlan``) + the fitted boosters;
- ``treelite GTIL``: the feature plan + treelite's tree interpreter (no compiler needed);
- ``compiled``: the feature plan + the trees compiled to C by tl2cgen (the served form);
- ``lightgbm``: the feature plan + LightGBM boosters of the same shape (3 x 300 rounds,
  31 leaves, half the features per split) refitted on the version's features: a candidate
  model, so it gets a test RMSE (and with ``--cv`` a 5-fold CV RMSE) of its own.

With ``--keras`` it times instead the model server's call of the default ``housing_keras``
SavedModel (``TensorflowServable.predict``, 1 and 64 rows) as published, and as re-exported
from the version's ``.keras`` file by the current code (same weights: the before/after of a
graph change), with the largest relative difference between the two on the test split.

    .venv/bin/python load_tests/bench_model_call.py [--models-dir models] [--version N] [--cv]
    .venv/bin/python load_tests/bench_model_call.py --keras [--models-dir models] [--version N]

Run it on models trained by ``housing train sklearn`` / ``housing train keras`` (defaults).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from sklearn.base import clone  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from core.contract import FEATURES, SKLEARN_MODEL  # noqa: E402
from pipelines.common import add_models_dir  # noqa: E402
from training.compiled import (  # noqa: E402
    FORM_COMPILED,
    FORM_PLAN,
    FastPipeline,
    FeaturePlan,
    PipelineForm,
    boosters_of,
    columns_of,
    compile_trees,
    load_compiled_trees,
    relative_difference,
)
from training.data import features_and_target, load_split  # noqa: E402
from training.evaluation import rmse  # noqa: E402
from training.repository import ModelRepository, load_sklearn_model  # noqa: E402
from training.sklearn_export import median_seconds  # noqa: E402


def call_ms(call, repeats: int) -> tuple[float, float]:
    """(median wall ms, mean CPU ms) per call. CPU time is the steadier figure on a shared
    machine: other processes stretch the wall time, not the CPU time, of one call."""
    wall = median_seconds(call, repeats)
    started = time.process_time()
    for _ in range(repeats):
        call()
    return wall * 1e3, (time.process_time() - started) / repeats * 1e3


class Gtil:
    """treelite's interpreter over the boosters' trees (base scores zeroed like the library)."""

    def __init__(self, estimator):
        import treelite
        import treelite.sklearn

        self.gtil = treelite.gtil
        members = boosters_of(estimator)
        models = []
        for member in members:
            model = treelite.sklearn.import_model(member)
            model.get_header_accessor().set_field("base_scores", np.zeros(1))
            models.append(model)
        self.model = treelite.Model.concatenate(models)
        self.baseline = sum(float(np.ravel(m._baseline_prediction)[0]) for m in members)
        self.boosters = len(members)

    def predict(self, features: np.ndarray) -> np.ndarray:
        raw = self.gtil.predict(self.model, features, nthread=1).reshape(-1)
        return (raw + self.baseline) / self.boosters


class LightgbmBoosters:
    """The booster average refitted with LightGBM on the pipeline's features."""

    def __init__(self, features: np.ndarray, target: np.ndarray, n_models: int = 3):
        import lightgbm

        self.models = [
            lightgbm.LGBMRegressor(
                n_estimators=300,
                learning_rate=0.1,
                num_leaves=31,
                min_child_samples=20,
                reg_lambda=1.0,
                feature_fraction_bynode=0.5,
                n_jobs=1,
                random_state=seed,
                verbose=-1,
            ).fit(features, target)
            for seed in range(42, 42 + n_models)
        ]

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.mean([m.predict(features, num_threads=1) for m in self.models], axis=0)


def lightgbm_cv(model, train, folds: int = 5) -> float:
    """5-fold CV RMSE of LightGBM boosters on the model's preprocessing (refitted per fold),
    the same folds as ``training.search``'s comparison."""
    from sklearn.model_selection import KFold

    X, y = features_and_target(train)  # noqa: N806
    X = X[list(FEATURES)]  # noqa: N806
    scores = []
    for fit_index, score_index in KFold(folds, shuffle=True, random_state=42).split(X):
        preprocessing = clone(model.steps[0][1])
        fit_features = preprocessing.fit_transform(X.iloc[fit_index], y.iloc[fit_index])
        boosters = LightgbmBoosters(fit_features, y.iloc[fit_index].to_numpy())
        predicted = boosters.predict(preprocessing.transform(X.iloc[score_index]))
        scores.append(rmse(y.iloc[score_index], predicted))
    return float(np.mean(scores))


def keras_calls(repository: ModelRepository, version: int | None) -> None:
    """The SavedModel call on the model server, as published and as re-exported now."""
    import keras

    import training.keras_models  # noqa: F401 (registers the custom layers)
    from core.contract import KERAS_MODEL
    from service.model_server.servables import TensorflowServable
    from training.keras_export import KERAS_FILE, save_savedmodel, signature_predictor

    version = version or repository.default_version(KERAS_MODEL)
    if version is None:
        raise SystemExit(f"no {KERAS_MODEL} version in {repository.root}")
    published = repository.version_dir(KERAS_MODEL, version)
    split = load_split()
    test = split.test[list(FEATURES)]
    _, y_test = features_and_target(split.test)

    def wire(frame):
        columns = {n: frame[n].to_numpy(np.float32) for n in FEATURES if n != "ocean_proximity"}
        columns["ocean_proximity"] = np.array(
            [v.encode() for v in frame["ocean_proximity"]], dtype=object
        )
        return columns

    one, sample = wire(test.iloc[:1]), wire(test.sample(n=64, random_state=42))
    with tempfile.TemporaryDirectory() as scratch:
        current = Path(scratch) / "saved_model"
        save_savedmodel(keras.saving.load_model(published / KERAS_FILE), current)
        before = signature_predictor(published)(test)
        after = signature_predictor(current)(test)
        print(
            f"{KERAS_MODEL} version {version}; 1-minute load average {os.getloadavg()[0]:.1f}; "
            f"re-exported vs published: max rel. diff {relative_difference(after, before):.1e}"
        )
        print(
            "| SavedModel | 1 row ms (CPU ms) | 64 rows ms (CPU ms) | test RMSE |\n"
            "|---|---:|---:|---:|"
        )
        for name, folder, predicted in (
            ("as published", published, before),
            ("re-exported by the current code", current, after),
        ):
            servable = TensorflowServable(KERAS_MODEL, version, folder)
            one_row = call_ms(lambda s=servable: s.predict("serving_default", one), 300)
            rows_64 = call_ms(lambda s=servable: s.predict("serving_default", sample), 50)
            print(
                f"| {name} | {one_row[0]:.3f} ({one_row[1]:.3f}) | "
                f"{rows_64[0]:.3f} ({rows_64[1]:.3f}) | {rmse(y_test, predicted):,.0f} |"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_models_dir(parser)
    parser.add_argument("--version", type=int, default=None)
    parser.add_argument("--cv", action="store_true", help="also 5-fold CV RMSE for LightGBM")
    parser.add_argument("--keras", action="store_true", help="time the housing_keras call")
    args = parser.parse_args()
    repository = ModelRepository(args.models_dir)
    if args.keras:
        keras_calls(repository, args.version)
        return 0
    version = args.version or repository.default_version(SKLEARN_MODEL)
    if version is None:
        parser.error(f"no {SKLEARN_MODEL} version in {args.models_dir}")
    model = load_sklearn_model(repository.version_dir(SKLEARN_MODEL, version))
    estimator = model.steps[-1][1]
    split = load_split()
    test = split.test[list(FEATURES)]
    _, y_test = features_and_target(split.test)
    test_rows = columns_of(test)
    plan = FeaturePlan.of(model, test_rows)
    if plan is None or boosters_of(estimator) is None:
        parser.error("this benchmark is for the default model type (boosting)")
    sample = columns_of(test.sample(n=64, random_state=42))
    one = {name: values[:1] for name, values in sample.items()}

    with tempfile.TemporaryDirectory() as scratch:
        train_features = plan.transform(columns_of(split.train))
        compile_trees(estimator, Path(scratch), train_features)
        compiled = load_compiled_trees(Path(scratch) / "trees.so", estimator)
        # LightGBM learns from the leave-one-out neighbour features, as the boosters did.
        X_train, y_train = features_and_target(split.train)  # noqa: N806
        loo_features = clone(model.steps[0][1]).fit_transform(X_train[list(FEATURES)], y_train)
        candidates = {
            "pipeline (joblib Pipeline.predict)": PipelineForm(model),
            "plan (feature plan + sklearn boosters)": FastPipeline(plan, estimator, FORM_PLAN),
            "treelite GTIL (feature plan + interpreter)": FastPipeline(
                plan, Gtil(estimator), "gtil"
            ),
            "compiled (feature plan + tl2cgen C)": FastPipeline(plan, compiled, FORM_COMPILED),
            "lightgbm 3x300 (feature plan + LightGBM)": FastPipeline(
                plan, LightgbmBoosters(loo_features, y_train.to_numpy()), "lightgbm"
            ),
        }
        features_only = {
            "1": median_seconds(lambda: plan.transform(one), 300),
            "64": median_seconds(lambda: plan.transform(sample), 100),
        }
        expected = PipelineForm(model).predict(test_rows)
        load = os.getloadavg()[0]
        print(f"{SKLEARN_MODEL} version {version}; 1-minute load average {load:.1f}")
        print(
            f"feature plan alone: {features_only['1'] * 1e3:.3f} ms (1 row), "
            f"{features_only['64'] * 1e3:.3f} ms (64 rows)"
        )
        print(
            "| candidate | 1 row ms (CPU ms) | 64 rows ms (CPU ms) | test RMSE "
            "| max rel. diff vs pipeline |\n|---|---:|---:|---:|---:|"
        )
        with threadpool_limits(1):
            for name, candidate in candidates.items():
                one_row = call_ms(lambda c=candidate: c.predict(one), 200)
                rows_64 = call_ms(lambda c=candidate: c.predict(sample), 50)
                predicted = candidate.predict(test_rows)
                print(
                    f"| {name} | {one_row[0]:.3f} ({one_row[1]:.3f}) | "
                    f"{rows_64[0]:.3f} ({rows_64[1]:.3f}) | {rmse(y_test, predicted):,.0f} | "
                    f"{relative_difference(predicted, expected):.1e} |"
                )
    if args.cv:
        print(f"lightgbm 5-fold CV RMSE: {lightgbm_cv(model, split.train):,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
