"""The compiled serving form against the joblib pipeline, on a really trained default model.

One small model of the default type (2 boosters x 40 rounds on 2,000 training rows) is
trained and published with its compiled trees, as ``housing train sklearn`` does; the
checks run on the book's full test split (4,128 rows) and on hostile inputs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from core.contract import FEATURES, SKLEARN_MODEL
from core.digests import sha256_file
from core.errors import UserError
from pipelines.train_sklearn import train_sklearn
from service.model_server.servables import SklearnServable
from tests.training.conftest import QUICK
from training import compiled
from training.compiled import (
    COMPILED_NAME,
    DIRECT_ROWS,
    FORM_COMPILED,
    FORM_PLAN,
    MAX_RELATIVE_DIFFERENCE,
    FastPipeline,
    FeaturePlan,
    PipelineForm,
    columns_of,
    load_verified_trees,
    relative_difference,
)
from training.repository import load_sklearn_model

pytestmark = pytest.mark.usefixtures("one_openmp_thread")


@pytest.fixture(scope="module")
def published(quick_sklearn) -> Path:
    assert quick_sklearn["model"] == SKLEARN_MODEL
    return Path(quick_sklearn["path"])


@pytest.fixture(scope="module")
def model(published):
    return load_sklearn_model(published)


@pytest.fixture(scope="module")
def compiled_form(published, model, split) -> FastPipeline:
    plan = FeaturePlan.of(model, columns_of(split.test))
    assert plan is not None
    trees = load_verified_trees(published, model.steps[-1][1])
    return FastPipeline(plan, trees, FORM_COMPILED)


def test_the_manifest_lists_the_checked_compiled_trees(published):
    block = json.loads((published / "manifest.json").read_text())["compiled"]
    library = published / COMPILED_NAME
    assert block["path"] == COMPILED_NAME
    assert block["sha256"] == sha256_file(library)
    assert block["size_bytes"] == library.stat().st_size
    assert block["trees"] == QUICK["max_iter"] * QUICK["n_models"]
    assert block["boosters"] == QUICK["n_models"]
    assert block["checked_rows"] == 4_128
    assert block["max_relative_difference"] <= MAX_RELATIVE_DIFFERENCE
    assert block["serving"]["predict_1_row_seconds"] > 0
    assert block["serving"]["predict_64_rows_seconds"] > 0


def test_the_feature_plan_is_bit_identical_to_the_column_transformer(compiled_form, model, split):
    frame = split.test[list(FEATURES)]
    expected = model[:-1].transform(frame)
    assert all(block.kernel is not None for block in compiled_form.plan.blocks)
    assert np.array_equal(compiled_form.plan.transform(columns_of(frame)), expected)


def test_the_compiled_form_equals_the_pipeline_on_the_test_split(compiled_form, model, split):
    frame = split.test[list(FEATURES)]
    expected = model.predict(frame)
    actual = compiled_form.predict(columns_of(frame))
    assert relative_difference(actual, expected) <= MAX_RELATIVE_DIFFERENCE
    # ...and not because both are constant: the predictions spread like house values.
    assert np.std(actual) > 50_000


def test_small_calls_give_the_bits_of_one_batch(compiled_form, split):
    """Up to DIRECT_ROWS rows the trees are called row by row (not through tl2cgen's batch
    predictor), and the neighbour features are summed per call: one row, three rows or
    DIRECT_ROWS rows at a time must give exactly what one call on all rows gives."""
    columns = columns_of(split.test[list(FEATURES)].iloc[:240])
    batch = compiled_form.predict(columns)
    for size in (1, 3, DIRECT_ROWS):
        parts = [
            compiled_form.predict({n: part[start : start + size] for n, part in columns.items()})
            for start in range(0, 240, size)
        ]
        np.testing.assert_array_equal(np.concatenate(parts), batch)


def test_the_trees_read_missing_features_row_by_row_as_in_a_batch(compiled_form, split):
    features = compiled_form.plan.transform(columns_of(split.test[list(FEATURES)].iloc[:64]))
    features[::3, ::5] = np.nan
    batch = compiled_form.final.predict(features)  # 64 rows: tl2cgen's batch predictor
    one_by_one = [compiled_form.final.predict(features[i : i + 1]) for i in range(64)]
    np.testing.assert_array_equal(np.concatenate(one_by_one), batch)
    assert np.isfinite(batch).all() and len(set(batch.tolist())) > 32


def test_concurrent_calls_from_several_threads_agree(compiled_form, split):
    """The model server predicts in several threads: each gets its own tl2cgen predictor."""
    from concurrent.futures import ThreadPoolExecutor

    columns = columns_of(split.test[list(FEATURES)])
    chunks = [
        {name: values[start : start + 256] for name, values in columns.items()}
        for start in range(0, 4_096, 256)
    ]
    sequential = [compiled_form.predict(chunk) for chunk in chunks]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(compiled_form.predict, chunks))
    for alone, together in zip(sequential, concurrent, strict=True):
        np.testing.assert_array_equal(alone, together)


def test_the_model_server_serves_the_compiled_form(published, model, split, caplog):
    caplog.set_level(logging.INFO, logger="housing.model_server")
    servable = SklearnServable(SKLEARN_MODEL, 1, published)
    assert servable.form == FORM_COMPILED
    assert "serves the compiled form" in caplog.text
    frame = split.test[list(FEATURES)].iloc[:500]
    inputs = {name: frame[name].to_numpy() for name in FEATURES}
    inputs["ocean_proximity"] = np.array(
        [v.encode() for v in frame["ocean_proximity"]], dtype=object
    )
    served = servable.predict("serving_default", inputs)["median_house_value"]
    assert served.dtype == np.float32
    np.testing.assert_allclose(served, model.predict(frame), rtol=1e-5)


def hostile_rows(split) -> dict[str, np.ndarray]:
    """Rows a client may send that training never saw: NaN, infinities, zeros, negatives,
    huge numbers in every numeric column, and unknown or empty categories."""
    base = columns_of(split.test.iloc[:1])
    odd_values = [np.nan, np.inf, -np.inf, 0.0, -1.0, 1e30, -1e30]
    rows = []
    for name in FEATURES:
        values = ["", "MARS", "inland"] if name == "ocean_proximity" else odd_values
        for value in values:
            row = {key: column.copy() for key, column in base.items()}
            row[name][0] = value
            rows.append(row)
    return {name: np.concatenate([row[name] for row in rows]) for name in FEATURES}


def test_hostile_inputs_give_what_the_pipeline_gives(compiled_form, model, split):
    rows = hostile_rows(split)
    for index in range(len(rows["latitude"])):
        row = {name: values[index : index + 1] for name, values in rows.items()}
        try:
            expected = PipelineForm(model).predict(row)
        except Exception as exc:
            with pytest.raises(type(exc)):
                compiled_form.predict(row)
            continue
        actual = compiled_form.predict(row)
        assert relative_difference(actual, expected) <= MAX_RELATIVE_DIFFERENCE, row


def test_without_compiling_the_server_serves_the_plan(tmp_path, split, caplog):
    results = train_sklearn(
        tmp_path / "models",
        sample=1_000,
        n_jobs=1,
        runs_dir=tmp_path / "runs",
        params={"max_iter": 5, "n_models": 1},
        split=split,
        compile_trees=False,
    )
    path = Path(results["path"])
    assert results["compiled"] == {"skipped": "not requested"}
    assert not (path / COMPILED_NAME).exists()
    caplog.set_level(logging.INFO, logger="housing.model_server")
    servable = SklearnServable(SKLEARN_MODEL, 1, path)
    assert servable.form == FORM_PLAN
    assert "no compiled trees in this version" in caplog.text


def test_a_model_without_trees_publishes_no_library(tmp_path, split):
    results = train_sklearn(
        tmp_path / "models",
        sample=1_000,
        n_jobs=1,
        runs_dir=tmp_path / "runs",
        model_type="linear",
        split=split,
    )
    assert results["compiled"] == {"skipped": "no compiled form for LinearRegression"}
    assert not (Path(results["path"]) / COMPILED_NAME).exists()


def test_no_c_compiler_is_a_one_line_user_error(monkeypatch):
    monkeypatch.setattr(compiled.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="--no-compile"):
        compiled.compiler()
