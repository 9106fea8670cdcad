"""The one TF Serving client: wire format, retry policy and budgets, against a real gRPC server."""

from __future__ import annotations

import math
import time
from array import array

import grpc
import numpy as np
import pytest

from core.contract import EXAMPLE_INSTANCE, FEATURES, OUTPUT_NAME, SIGNATURE_NAME
from core.tfserving import (
    BadResponse,
    Deadline,
    RetryBudget,
    RetryPolicy,
    TFServingClient,
    TFServingError,
    predict_request,
    read_prediction,
)
from core.tfserving_protos.tensorflow.core.framework import types_pb2
from core.tfserving_protos.tensorflow_serving.apis import predict_pb2
from tests.fake_upstream import LOADING, FakeUpstream


def columns(rows: int = 2, **changes) -> dict[str, list]:
    out = {name: [EXAMPLE_INSTANCE[name]] * rows for name in FEATURES}
    out.update(changes)
    return out


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# ---- wire format --------------------------------------------------------------------------


def test_request_follows_the_signature_with_nan_for_missing_values() -> None:
    request = predict_request(
        "housing_sklearn", columns(total_bedrooms=[None, 5.0]), label="stable"
    )
    assert request.model_spec.name == "housing_sklearn"
    assert request.model_spec.signature_name == SIGNATURE_NAME
    assert request.model_spec.version_label == "stable"
    assert not request.model_spec.HasField("version")
    assert set(request.inputs) == set(FEATURES)
    bedrooms = request.inputs["total_bedrooms"]
    assert bedrooms.dtype == types_pb2.DT_FLOAT
    assert [d.size for d in bedrooms.tensor_shape.dim] == [2]
    values = array("f", bedrooms.tensor_content).tolist()
    assert math.isnan(values[0]) and values[1] == 5.0
    category = request.inputs["ocean_proximity"]
    assert category.dtype == types_pb2.DT_STRING
    assert list(category.string_val) == [b"NEAR BAY", b"NEAR BAY"]


def test_numpy_columns_and_an_explicit_version_win_over_a_label() -> None:
    data = columns(3)
    data["median_income"] = np.array([1.5, 2.5, np.nan])
    data["ocean_proximity"] = np.array(["INLAND", "ISLAND", "NEAR BAY"], dtype=object)
    request = predict_request("m", data, version=7, label="stable")
    assert request.model_spec.version.value == 7
    assert request.model_spec.version_label == ""
    income = np.frombuffer(request.inputs["median_income"].tensor_content, "<f4")
    np.testing.assert_array_equal(income, np.array([1.5, 2.5, np.nan], "<f4"))
    assert list(request.inputs["ocean_proximity"].string_val) == [b"INLAND", b"ISLAND", b"NEAR BAY"]


def test_columns_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        predict_request("m", columns(2, latitude=[1.0]))


def response(values, dtype=types_pb2.DT_FLOAT, field="float_val", version=3):
    answer = predict_pb2.PredictResponse()
    answer.model_spec.name = "m"
    if version is not None:
        answer.model_spec.version.value = version
    tensor = answer.outputs[OUTPUT_NAME]
    tensor.dtype = dtype
    if field == "tensor_content":
        width = "<f8" if dtype == types_pb2.DT_DOUBLE else "<f4"
        tensor.tensor_content = np.asarray(values, width).tobytes()
    else:
        getattr(tensor, field).extend(values)
    return answer


@pytest.mark.parametrize(
    ("dtype", "field"),
    [
        (types_pb2.DT_FLOAT, "float_val"),
        (types_pb2.DT_FLOAT, "tensor_content"),
        (types_pb2.DT_DOUBLE, "double_val"),
        (types_pb2.DT_DOUBLE, "tensor_content"),
    ],
)
def test_prediction_is_read_from_whichever_field_the_server_filled(dtype, field) -> None:
    answer = read_prediction(response([1.5, 250_000.25], dtype, field), 2)
    assert answer.values == [1.5, 250_000.25]
    assert (answer.model, answer.version) == ("m", 3)


def test_a_response_without_a_version_says_so() -> None:
    assert read_prediction(response([1.0], version=None), 1).version is None


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (predict_pb2.PredictResponse(), "no 'median_house_value' output"),
        (response([1.0, 2.0]), "2 predictions for 3 rows"),
        (response([1, 2, 3], types_pb2.DT_INT64, "int64_val"), "dtype DT_INT64"),
    ],
)
def test_a_response_that_breaks_the_signature_is_a_bad_response(answer, message) -> None:
    with pytest.raises(BadResponse, match=message):
        read_prediction(answer, 3, "host:1")


def test_tensor_content_that_is_not_whole_values_is_a_bad_response() -> None:
    answer = response([1.0])
    answer.outputs[OUTPUT_NAME].ClearField("float_val")
    answer.outputs[OUTPUT_NAME].tensor_content = b"\x00\x00\x80"
    with pytest.raises(BadResponse, match="not whole values"):
        read_prediction(answer, 1)


# ---- budgets ------------------------------------------------------------------------------


def test_retry_budget_allows_a_minimum_then_a_share_of_calls_within_the_window() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=0.1, minimum=2, window=10, clock=clock)
    assert [budget.try_retry() for _ in range(3)] == [True, True, False]
    for _ in range(20):
        budget.record_call()
    assert [budget.try_retry() for _ in range(3)] == [True, True, False]  # 2 + 0.1 * 20
    clock.now += 11  # every call and retry has left the window
    assert [budget.try_retry() for _ in range(3)] == [True, True, False]


def test_backoff_is_jittered_within_the_exponential_cap() -> None:
    policy = RetryPolicy(backoff=0.1, max_backoff=0.3)
    pauses = [policy.pause(n) for n in (0, 1, 5) for _ in range(50)]
    assert all(0 <= p <= 0.1 for p in pauses[:50])
    assert all(0 <= p <= 0.2 for p in pauses[50:100])
    assert all(0 <= p <= 0.3 for p in pauses[100:])
    assert len(set(pauses)) > 100


def test_deadline_counts_down() -> None:
    clock = Clock()
    deadline = Deadline(2.0, clock)
    clock.now += 1.5
    assert deadline.remaining() == pytest.approx(0.5)
    clock.now += 1
    assert deadline.remaining() == 0 and deadline.expired()


# ---- the client against a real gRPC server ----------------------------------------------------


def client(upstream: FakeUpstream, **policy) -> TFServingClient:
    values = {"attempt_seconds": 2.0, "budget_seconds": 3.0, "backoff": 0.01, **policy}
    return TFServingClient(upstream.target, RetryPolicy(**values))


async def test_predict_returns_values_and_the_answering_version(upstream, behaviour) -> None:
    async with client(upstream) as tfs:
        answer = await tfs.predict(
            "housing_sklearn", columns(2, median_income=[1.0, 2.0]), request_id="req-1"
        )
    assert answer.values == [100_000 + 2_000, 200_000 + 2_000]  # the fake's formula, v2
    assert (answer.model, answer.version) == ("housing_sklearn", 2)
    assert behaviour.calls[-1].request_id == "req-1"
    assert behaviour.calls[-1].label is None


async def test_unavailable_is_retried_within_the_policy(upstream, behaviour) -> None:
    behaviour.fail_unavailable = 2
    async with client(upstream, max_retries=2) as tfs:
        answer = await tfs.predict("housing_sklearn", columns(1), version=1)
        assert answer.version == 1
        assert tfs.retries == 2
    assert len(behaviour.calls) == 3


async def test_unavailable_beyond_max_retries_fails_with_the_last_code(upstream, behaviour) -> None:
    behaviour.fail_unavailable = 5
    async with client(upstream, max_retries=2) as tfs:
        with pytest.raises(TFServingError) as caught:
            await tfs.predict("housing_sklearn", columns(1))
    assert caught.value.code is grpc.StatusCode.UNAVAILABLE
    assert caught.value.attempts == 3
    assert len(behaviour.calls) == 3


NOT_RETRIED = [
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.INTERNAL,
]


@pytest.mark.parametrize("code", NOT_RETRIED)
async def test_other_codes_are_not_retried(upstream, behaviour, code) -> None:
    behaviour.predict_error = (code, "no")
    async with client(upstream, max_retries=3) as tfs:
        with pytest.raises(TFServingError) as caught:
            await tfs.predict("housing_sklearn", columns(1))
    assert (caught.value.code, caught.value.details, caught.value.attempts) == (code, "no", 1)
    assert len(behaviour.calls) == 1


async def test_the_retry_budget_refuses_retries_when_spent(upstream, behaviour) -> None:
    behaviour.fail_unavailable = 10
    tfs = TFServingClient(
        upstream.target,
        RetryPolicy(max_retries=5, backoff=0.001),
        retry_budget=RetryBudget(ratio=0.0, minimum=1),
    )
    async with tfs:
        for _ in range(2):
            with pytest.raises(TFServingError):
                await tfs.predict("housing_sklearn", columns(1))
    assert len(behaviour.calls) == 3  # 2 calls, and the one retry the budget allowed
    assert (tfs.retries, tfs.retries_refused) == (1, 2)


async def test_the_deadline_budget_bounds_all_attempts(upstream, behaviour) -> None:
    behaviour.delay = 0.3
    behaviour.fail_unavailable = 100
    async with client(upstream, attempt_seconds=5, budget_seconds=0.8, max_retries=100) as tfs:
        started = time.monotonic()
        with pytest.raises(TFServingError) as caught:
            await tfs.predict("housing_sklearn", columns(1))
        spent = time.monotonic() - started
    assert caught.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert 1 < caught.value.attempts <= 3
    assert spent < 5  # far below attempts x attempt_seconds: the budget ended it


async def test_the_callers_deadline_wins_when_it_ends_first(upstream, behaviour) -> None:
    behaviour.delay = 1.0
    async with client(upstream, attempt_seconds=5, budget_seconds=5) as tfs:
        with pytest.raises(TFServingError) as caught:
            await tfs.predict("housing_sklearn", columns(1), deadline=Deadline(0.2))
        assert caught.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
        with pytest.raises(TFServingError, match="budget spent"):
            await tfs.predict("housing_sklearn", columns(1), deadline=Deadline(0))


async def test_model_status_reports_each_versions_state(upstream, behaviour) -> None:
    behaviour.models["housing_sklearn"] = {1: LOADING, 2: 30}
    async with client(upstream) as tfs:
        states = await tfs.model_status("housing_sklearn", request_id="r")
    assert [(s.version, s.state) for s in states] == [(1, "LOADING"), (2, "AVAILABLE")]
    assert behaviour.calls[-1].request_id == "r"


async def test_a_client_that_was_not_started_says_so(upstream) -> None:
    with pytest.raises(RuntimeError, match="start"):
        await client(upstream).predict("housing_sklearn", columns(1))


async def test_observer_sees_every_attempt(upstream, behaviour) -> None:
    behaviour.fail_unavailable = 1
    seen: list[tuple[str, str, str]] = []
    tfs = TFServingClient(
        upstream.target,
        RetryPolicy(backoff=0.001),
        observe=lambda model, method, code, seconds: seen.append((model, method, code)),
    )
    async with tfs:
        await tfs.predict("housing_keras", columns(1))
    assert seen == [
        ("housing_keras", "Predict", "UNAVAILABLE"),
        ("housing_keras", "Predict", "OK"),
    ]
