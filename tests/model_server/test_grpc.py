"""Predict, metadata and status over gRPC with the official tensorflow_serving stubs."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from core.contract import (
    CATEGORICAL_FEATURE,
    FEATURES,
    KERAS_MODEL,
    NUMERIC_FEATURES,
    OUTPUT_NAME,
    SKLEARN_MODEL,
)
from load_tests.grpc_payloads import predict_request, wire_frame
from load_tests.models import tiny_savedmodel_formula
from tests.model_server.conftest import KERAS_SCALE

SKLEARN, KERAS = SKLEARN_MODEL, KERAS_MODEL


@pytest.fixture(scope="module")
def rows(split):
    """Rows of every category, including missing total_bedrooms."""
    every = pd.concat([split.train, split.test])
    return pd.concat(
        [every.groupby("ocean_proximity").head(2), every[every["total_bedrooms"].isna()].head(3)]
    ).reset_index(drop=True)


@pytest.fixture(scope="module")
def stub(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def values(response, name: str = OUTPUT_NAME) -> np.ndarray:
    return tf.make_ndarray(response.outputs[name])


def test_rows_cover_the_edge_cases(rows):
    assert rows["total_bedrooms"].isna().any()
    assert set(rows[CATEGORICAL_FEATURE]) == {
        "<1H OCEAN",
        "INLAND",
        "NEAR OCEAN",
        "NEAR BAY",
        "ISLAND",
    }


@pytest.mark.parametrize("version", [1, 2])
def test_sklearn_predictions_equal_in_process(stub, models, rows, version):
    response = stub.Predict(predict_request(rows, SKLEARN, version=version), timeout=30)
    expected = models.sklearn_models[version].predict(wire_frame(rows)).astype(np.float32)
    got = values(response)
    assert response.outputs[OUTPUT_NAME].dtype == tf.float32.as_datatype_enum
    assert got.shape == (len(rows),)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert response.model_spec.name == SKLEARN
    assert response.model_spec.version.value == version
    assert response.model_spec.signature_name == "serving_default"


@pytest.mark.parametrize(("label", "version"), [("stable", 1), ("canary", 2)])
def test_predict_by_label_names_the_version(stub, models, rows, label, version):
    response = stub.Predict(predict_request(rows, SKLEARN, label=label), timeout=30)
    assert response.model_spec.version.value == version
    expected = models.sklearn_models[version].predict(wire_frame(rows)).astype(np.float32)
    np.testing.assert_allclose(values(response), expected, rtol=1e-6)


def test_latest_is_the_highest_version(stub, rows):
    response = stub.Predict(predict_request(rows, SKLEARN), timeout=30)
    assert response.model_spec.version.value == 2


def test_saved_model_predictions_equal_the_formula(stub, rows):
    response = stub.Predict(predict_request(rows, KERAS, version=1), timeout=30)
    np.testing.assert_allclose(
        values(response), tiny_savedmodel_formula(rows, KERAS_SCALE), rtol=1e-6
    )
    assert (response.model_spec.name, response.model_spec.version.value) == (KERAS, 1)


def test_single_model_mode_serves_latest_without_batching(servers, models, rows):
    with grpc.insecure_channel(servers["single"].address("grpc")) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(predict_request(rows, SKLEARN), timeout=30)
    assert response.model_spec.version.value == 2
    expected = models.sklearn_models[2].predict(wire_frame(rows)).astype(np.float32)
    np.testing.assert_allclose(values(response), expected, rtol=1e-6)


def test_book_chapter_19_grpc_client(server, rows):
    """The book's client code, with only the model name and input names changed."""
    X_new = rows  # noqa: N806 (the book's name)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = KERAS
    request.model_spec.signature_name = "serving_default"
    for input_name in FEATURES:
        column = X_new[input_name].to_numpy()
        column = column.astype(np.float32) if input_name in NUMERIC_FEATURES else column.astype(str)
        request.inputs[input_name].CopyFrom(tf.make_tensor_proto(column))
    channel = grpc.insecure_channel(server.address("grpc"))
    predict_service = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    response = predict_service.Predict(request, timeout=10.0)
    outputs_proto = response.outputs["median_house_value"]
    y_pred = tf.make_ndarray(outputs_proto)
    channel.close()
    np.testing.assert_allclose(y_pred, tiny_savedmodel_formula(rows, KERAS_SCALE), rtol=1e-6)


def test_native_float64_columns_are_accepted_like_float32(stub, models, rows):
    """pandas' float64 columns sent as-is (DT_DOUBLE) give the float32 answer."""
    request = predict_request(rows, SKLEARN, version=1)
    for name in NUMERIC_FEATURES:
        request.inputs[name].CopyFrom(tf.make_tensor_proto(rows[name].to_numpy(np.float64)))
    response = stub.Predict(request, timeout=10.0)
    expected = models.sklearn_models[1].predict(wire_frame(rows)).astype(np.float32)
    np.testing.assert_allclose(values(response), expected, rtol=1e-6)


def test_output_filter_is_honoured(stub, rows):
    request = predict_request(rows, KERAS)
    request.output_filter.append(OUTPUT_NAME)
    assert list(stub.Predict(request, timeout=30).outputs) == [OUTPUT_NAME]
    request.output_filter[:] = ["price"]
    with pytest.raises(grpc.RpcError) as caught:
        stub.Predict(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "price" in caught.value.details()


@pytest.mark.parametrize("model", [SKLEARN, KERAS])
def test_metadata_is_the_real_signature(stub, model):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = model
    request.metadata_field.append("signature_def")
    response = stub.GetModelMetadata(request, timeout=30)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    signature = signature_map.signature_def["serving_default"]
    assert set(signature.inputs) == set(FEATURES)
    for name in NUMERIC_FEATURES:
        assert signature.inputs[name].dtype == tf.float32.as_datatype_enum
        assert [d.size for d in signature.inputs[name].tensor_shape.dim] == [-1]
    assert signature.inputs[CATEGORICAL_FEATURE].dtype == tf.string.as_datatype_enum
    assert list(signature.outputs) == [OUTPUT_NAME]
    assert signature.method_name == "tensorflow/serving/predict"
    assert response.model_spec.name == model


def test_status_lists_versions_and_resolves_labels(channel):
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = SKLEARN
    response = stub.GetModelStatus(request, timeout=30)
    states = {s.version: s.state for s in response.model_version_status}
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert states == {1: available, 2: available}
    request.model_spec.version_label = "canary"
    response = stub.GetModelStatus(request, timeout=30)
    assert [s.version for s in response.model_version_status] == [2]


def rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    return caught.value


def test_error_codes(stub, channel, rows):
    """Every error of TF Serving's that a client can cause, with its code and a clear message."""
    cases = []
    cases.append((predict_request(rows, "nope"), grpc.StatusCode.NOT_FOUND, "nope"))
    cases.append((predict_request(rows, SKLEARN, version=9), grpc.StatusCode.NOT_FOUND, "9"))
    cases.append(
        (predict_request(rows, SKLEARN, label="gold"), grpc.StatusCode.INVALID_ARGUMENT, "gold")
    )
    extra = predict_request(rows, KERAS)
    extra.inputs["rooms"].CopyFrom(extra.inputs["total_rooms"])
    cases.append((extra, grpc.StatusCode.INVALID_ARGUMENT, "Sent extra: {rooms}"))
    missing = predict_request(rows, SKLEARN)
    del missing.inputs["median_income"]
    cases.append(
        (missing, grpc.StatusCode.INVALID_ARGUMENT, "Missing but required: {median_income}")
    )
    text = predict_request(rows, SKLEARN)
    text.inputs["latitude"].CopyFrom(tf.make_tensor_proto(rows["latitude"].astype(str).to_numpy()))
    cases.append((text, grpc.StatusCode.INVALID_ARGUMENT, "to be float but string is provided"))
    numeric_category = predict_request(rows, SKLEARN)
    numeric_category.inputs["ocean_proximity"].CopyFrom(tf.make_tensor_proto(np.ones(len(rows))))
    cases.append(
        (numeric_category, grpc.StatusCode.INVALID_ARGUMENT, "to be string but double is provided")
    )
    shaped = predict_request(rows, KERAS)
    shaped.inputs["latitude"].CopyFrom(
        tf.make_tensor_proto(rows["latitude"].to_numpy(np.float32).reshape(-1, 1))
    )
    cases.append((shaped, grpc.StatusCode.INVALID_ARGUMENT, "latitude"))
    short = predict_request(rows, SKLEARN)
    short.inputs["population"].CopyFrom(tf.make_tensor_proto(np.ones(2, np.float32)))
    cases.append((short, grpc.StatusCode.INVALID_ARGUMENT, "different batch sizes"))
    cases.append(
        (
            predict_request(rows, SKLEARN, signature="classify"),
            grpc.StatusCode.FAILED_PRECONDITION,
            '"classify" not found',
        )
    )
    for request, code, text in cases:
        error = rpc_error(stub.Predict, request)
        assert (error.code(), text in error.details()) == (code, True), error.details()

    status_stub = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "nope"
    assert rpc_error(status_stub.GetModelStatus, request).code() == grpc.StatusCode.NOT_FOUND


async def test_full_queue_gives_unavailable(server, rows, split):
    """Queue holds 64 rows (32 × 2): a burst of 30-row requests must overflow it. The burst
    is large (120 calls) because the server drains fast: 40 calls once all fitted under load."""
    burst = split.test.head(30)
    async with grpc.aio.insecure_channel(server.address("grpc")) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        calls = [
            stub.Predict(predict_request(burst, SKLEARN, version=1), timeout=30) for _ in range(120)
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
    errors = [r for r in results if isinstance(r, Exception)]
    assert errors, "the queue never filled"
    for error in errors:
        assert isinstance(error, grpc.aio.AioRpcError), error
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "queue" in error.details()
    served = [r for r in results if not isinstance(r, Exception)]
    assert served and all(len(tf.make_ndarray(r.outputs[OUTPUT_NAME])) == 30 for r in served)
