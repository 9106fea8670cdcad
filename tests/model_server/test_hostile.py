"""Hostile input sent straight to a real model server, started as ``housing serve stack``
starts it: only client errors, the input named, memory flat, and it still serves."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import numpy as np
import pandas as pd
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

from core.contract import KERAS_MODEL, SKLEARN_MODEL
from core.process import ManagedProcess, http_ok
from load_tests import hostile, stack
from load_tests.grpc_payloads import predict_request
from service.model_server.batching import Batcher
from service.model_server.config import BatchingOptions
from tests.model_server.helpers import instances

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def stack_server(models, tmp_path_factory) -> Iterator[hostile.Target]:
    logs = tmp_path_factory.mktemp("hostile")
    with hostile.stack_model_server(models.root, logs, SKLEARN_MODEL) as target:
        yield target


@pytest.mark.parametrize("model", [SKLEARN_MODEL, KERAS_MODEL])
def test_corpus_gets_only_client_errors_and_memory_stays_flat(stack_server, model):
    report = hostile.run(stack_server.grpc, stack_server.rest, stack_server.pid, model, rounds=2)
    assert len(report.outcomes) == 2 * (len(hostile.grpc_corpus()) + len(hostile.rest_corpus()))
    wrong = [(o.transport, o.case, f"got {o.got}", f"expected {o.expected}") for o in report.wrong]
    assert not wrong
    assert report.rss_growth < hostile.RSS_BUDGET_BYTES, report
    assert report.serves_after


def grpc_details(target: str, case_name: str) -> str:
    case = next(c for c in hostile.grpc_corpus() if c.name == case_name)
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(hostile.PREDICT_METHOD, request_serializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as caught:
            call(case.build(SKLEARN_MODEL), timeout=30)
    assert caught.value.code() == case.expected
    return caught.value.details()


@pytest.mark.parametrize(
    ("case", "named"),
    [
        ("huge declared shape, one value", "'latitude': 50000000 rows, larger than the limit"),
        ("negative dimension", "tensor parsing error: latitude"),
        ("unknown rank", "tensor parsing error: latitude"),
        ("declared shape and values count disagree", "'latitude'"),
        ("dtype number unknown to TF", "'latitude': unsupported dtype unknown dtype 999"),
        ("infinity", "'median_income'"),
        ("double beyond float32's range", "'total_rooms'"),
        ("category that is not UTF-8", "'ocean_proximity'"),
        ("2 MB category string", "'ocean_proximity': a string of 2000000 bytes is larger than"),
        ("5,000 unknown inputs", "input size does not match signature: 5009!=9"),
    ],
)
def test_grpc_errors_name_the_input(stack_server, case, named):
    details = grpc_details(stack_server.grpc, case)
    assert named in details
    assert len(details) <= 1001  # a 5,000-name list is cut: clients refuse > 8 KiB trailers


@pytest.mark.parametrize(
    ("case", "named"),
    [
        ("invalid base64", "'ocean_proximity'"),
        ("lone surrogate in a string", "'ocean_proximity'"),
        ("beyond float32's range", "'total_rooms'"),
        ("Infinity literal", "'latitude'"),
        ("JSON nested 100,000 deep", "nested too deeply"),
        ("one row over the row limit", "10001 rows, larger than the limit of 10000"),
        ("40 MB body", "larger than 4194304 bytes"),
    ],
)
def test_rest_errors_name_the_input(stack_server, case, named):
    rest_case = next(c for c in hostile.rest_corpus() if c.name == case)
    response = httpx.post(
        stack_server.rest + rest_case.path.format(model=SKLEARN_MODEL),
        content=rest_case.body(),
        timeout=30,
    )
    assert response.status_code == rest_case.expected
    assert named in response.json()["error"]


async def test_a_request_the_model_fails_on_fails_alone_in_a_merged_batch():
    """The real Batcher: three queued requests merge into one call that fails; re-run one by
    one, only the request the model cannot take gets the error."""
    calls: list[list[float]] = []

    def run(columns):
        calls.append(columns["x"].tolist())
        if (columns["x"] < 0).any():
            raise ValueError("negative x")
        return {"y": columns["x"] * 2}

    options = BatchingOptions(
        max_batch_size=8, batch_timeout_micros=200_000, max_enqueued_batches=2, num_batch_threads=1
    )
    with ThreadPoolExecutor(1) as executor:
        batcher = Batcher(run, options, executor, lambda *_: None, lambda _: None)
        try:
            results = await asyncio.gather(
                *(batcher.submit({"x": np.array([x])}, 1) for x in (1.0, -1.0, 3.0)),
                return_exceptions=True,
            )
        finally:
            await batcher.close()
    assert calls[0] == [1.0, -1.0, 3.0]  # merged first
    assert results[0]["y"].tolist() == [2.0]
    assert isinstance(results[1], ValueError)
    assert results[2]["y"].tolist() == [6.0]


@pytest.fixture(scope="module")
def capped_server(models, tmp_path_factory) -> Iterator[ManagedProcess]:
    """No batching, at most 2 Predict calls in flight."""
    server = stack.model_server(
        models.repo.config_path,
        tmp_path_factory.mktemp("capped") / "model-server.log",
        extra=["--max_concurrent_predicts=2"],
    ).start()
    rest = server.url("rest")
    server.wait_ready(http_ok(f"{rest}/v1/models/{SKLEARN_MODEL}"), 180)
    yield server
    server.stop()


def test_concurrency_cap_refuses_with_resource_exhausted_and_retry_after(capped_server, split):
    # Requests big enough (the row limit) that 20 sent at once overlap on any machine: a
    # small one finishes before the next is decoded and the cap is never reached.
    rows = pd.concat([split.test] * 3).head(10_000)
    grpc_request = predict_request(rows, SKLEARN_MODEL, version=1)
    body = {"instances": instances(rows)}
    target = capped_server.address("grpc")

    async def burst():
        async with (
            grpc.aio.insecure_channel(target) as channel,
            httpx.AsyncClient(base_url=capped_server.url("rest"), timeout=60) as http,
        ):
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            grpc_calls = [stub.Predict(grpc_request, timeout=60) for _ in range(20)]
            rest_calls = [
                http.post(f"/v1/models/{SKLEARN_MODEL}:predict", json=body) for _ in range(20)
            ]
            return await asyncio.gather(
                asyncio.gather(*grpc_calls, return_exceptions=True), asyncio.gather(*rest_calls)
            )

    grpc_results, rest_results = asyncio.run(burst())
    refused = [r for r in grpc_results if isinstance(r, Exception)]
    assert refused, "the cap never refused a gRPC call"
    assert len(refused) < len(grpc_results)
    for error in refused:
        assert isinstance(error, grpc.aio.AioRpcError), error
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "limit 2" in error.details()
    statuses = [r.status_code for r in rest_results]
    assert 429 in statuses and 200 in statuses, statuses
    assert set(statuses) == {200, 429}
    for response in rest_results:
        if response.status_code == 429:
            assert response.headers["retry-after"] == "1"
            assert "limit 2" in response.json()["error"]
