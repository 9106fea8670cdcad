"""A missing ``total_bedrooms`` sent to a TensorFlow container gives the model's own answer.

TF Serving's JSON parser rejects ``null`` for a float input, and JSON has no NaN; so the
encoded instance carries the value the SavedModel substitutes for NaN. Checked with the
real exported SavedModel: the encoded rows through its signature (what TF Serving and
Google's TensorFlow containers run) against the NaN rows through the project's model
server, a real process answering TF Serving's REST API.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from core.contract import FEATURES, KERAS_MODEL, NULLABLE_FEATURES, OUTPUT_NAME
from deploy.vertex.instances import missing_value_encoding, to_instances
from load_tests.stack import model_server, serving
from training.keras_preprocessing import to_tensors


@pytest.fixture
def rows(split: Any) -> pd.DataFrame:
    frame = split.test.head(6)[list(FEATURES)].reset_index(drop=True)
    frame.loc[[0, 3, 4], "total_bedrooms"] = float("nan")
    return frame


def test_encoded_rows_through_the_signature_equal_nan_rows_through_the_server(
    published: Any, signature: Any, rows: pd.DataFrame, tmp_path: Path
) -> None:
    fill = missing_value_encoding(published.path, "tensorflow")
    assert set(fill) == set(NULLABLE_FEATURES)
    encoded = to_instances(rows, fill)
    body = json.dumps({"instances": encoded}, allow_nan=False)
    assert "null" not in body  # what TF Serving's parser would reject
    assert [i["total_bedrooms"] for i in encoded][0] == fill["total_bedrooms"]
    assert [i["total_bedrooms"] for i in encoded][1] == rows.loc[1, "total_bedrooms"]

    via_signature = signature(**to_tensors(pd.DataFrame(encoded)))[OUTPUT_NAME].numpy()

    with model_server(published.models_dir / "models.config", tmp_path / "server.log") as server:
        serving(server, timeout=180)
        url = f"{server.url('rest')}/v1/models/{KERAS_MODEL}:predict"
        answer = httpx.post(url, json={"instances": to_instances(rows)}, timeout=60)
    assert answer.status_code == 200, answer.text
    via_server = np.array(answer.json()["predictions"], dtype=np.float32).reshape(-1)

    assert not any(math.isnan(v) for v in via_server)
    np.testing.assert_allclose(via_signature, via_server, rtol=1e-6)


def test_the_fill_is_the_models_training_median(
    published: Any, signature: Any, rows: pd.DataFrame
) -> None:
    """Not any plausible number: the one the graph itself substitutes for NaN."""
    fill = missing_value_encoding(published.path, "tensorflow")["total_bedrooms"]
    frame = pd.concat([rows.iloc[[2]]] * 3, ignore_index=True)
    frame["total_bedrooms"] = [float("nan"), fill, fill * 3]
    out = signature(**to_tensors(frame))[OUTPUT_NAME].numpy()
    assert out[0] == out[1] and out[1] != out[2]


def test_sklearn_keeps_null_for_its_own_imputation(published: Any) -> None:
    assert missing_value_encoding(published.path, "sklearn") == {}
