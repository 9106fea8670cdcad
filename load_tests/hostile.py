"""Hostile requests sent straight to a model server over gRPC and REST, and what they cost it.

One corpus, used by the tests (``tests/model_server/test_hostile.py``) and by this command,
which sends it to a model server and prints each answer and the server's memory before
and after. Every case must get a client error (the expected code), the server's resident
memory must stay within ``RSS_BUDGET_BYTES`` of where it started, and a good request must
still be answered afterwards.

    python -m load_tests.hostile --models-dir models       # starts the server as the stack does
    python -m load_tests.hostile --grpc 127.0.0.1:8500 --rest http://127.0.0.1:8501 --pid PID
    python -m load_tests.hostile --models-dir models --flood 200   # many large requests at once
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2

from core.contract import (
    CATEGORICAL_FEATURE,
    EXAMPLE_INSTANCE,
    FEATURES,
    NUMERIC_FEATURES,
    SKLEARN_MODEL,
)

PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
RSS_BUDGET_BYTES = 300 * 1024 * 1024
MAX_ROWS = 10_000  # the model server's default --max_request_rows
BIG_BYTES = 40 * 1024 * 1024
Code = grpc.StatusCode


# ---- gRPC ----------------------------------------------------------------------------


def tensor(values: list, dtype: int = types_pb2.DT_FLOAT, shape: list[int] | None = None):
    proto = tensor_pb2.TensorProto(dtype=dtype)
    dims = [len(values)] if shape is None else shape
    proto.tensor_shape.CopyFrom(
        tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims]
        )
    )
    if dtype == types_pb2.DT_STRING:
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in values)
    elif dtype == types_pb2.DT_DOUBLE:
        proto.double_val.extend(values)
    elif dtype == types_pb2.DT_FLOAT:
        proto.float_val.extend(values)
    return proto


def good_request(model: str, rows: int = 1) -> predict_pb2.PredictRequest:
    """A valid request: the example district ``rows`` times."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = "serving_default"
    for name in NUMERIC_FEATURES:
        request.inputs[name].CopyFrom(tensor([float(EXAMPLE_INSTANCE[name])] * rows))
    category = EXAMPLE_INSTANCE[CATEGORICAL_FEATURE]
    request.inputs[CATEGORICAL_FEATURE].CopyFrom(tensor([category] * rows, types_pb2.DT_STRING))
    return request


@dataclass(frozen=True)
class GrpcCase:
    name: str
    expected: grpc.StatusCode
    build: Callable[[str], bytes]
    """Model name → the serialized request (bytes, so a case can send what no stub would)."""


def changed(edit: Callable[[predict_pb2.PredictRequest], object], rows: int = 1):
    """A case builder: the good request, edited."""

    def build(model: str) -> bytes:
        request = good_request(model, rows)
        edit(request)
        return request.SerializeToString()

    return build


def set_input(name: str, proto: tensor_pb2.TensorProto):
    return lambda request: request.inputs[name].CopyFrom(proto)


def every_input(shape: list[int]):
    def edit(request: predict_pb2.PredictRequest) -> None:
        for name in NUMERIC_FEATURES:
            request.inputs[name].CopyFrom(tensor([1.0], shape=shape))
        request.inputs[CATEGORICAL_FEATURE].CopyFrom(
            tensor(["INLAND"], types_pb2.DT_STRING, shape=shape)
        )

    return edit


def unknown_rank(request: predict_pb2.PredictRequest) -> None:
    proto = tensor([1.0])
    proto.tensor_shape.Clear()
    proto.tensor_shape.unknown_rank = True
    request.inputs["latitude"].CopyFrom(proto)


def packed_wrong_size(request: predict_pb2.PredictRequest) -> None:
    proto = tensor([], shape=[1000])
    proto.tensor_content = b"\0" * 12
    request.inputs["latitude"].CopyFrom(proto)


def extra_inputs(request: predict_pb2.PredictRequest) -> None:
    for i in range(5000):
        request.inputs[f"x{i}"].CopyFrom(tensor([1.0]))


def spec(**fields: object):
    def edit(request: predict_pb2.PredictRequest) -> None:
        for key, value in fields.items():
            if key == "version":
                request.model_spec.version.value = int(value)  # type: ignore[call-overload]
            else:
                setattr(request.model_spec, key, value)

    return edit


def grpc_corpus() -> list[GrpcCase]:
    big = 10**9
    return [
        GrpcCase("huge declared shape, one value", Code.RESOURCE_EXHAUSTED,
                 changed(set_input("latitude", tensor([1.0], shape=[50_000_000])))),
        GrpcCase("huge declared shape on every input", Code.RESOURCE_EXHAUSTED,
                 changed(every_input([big]))),
        GrpcCase("int64-max dimension", Code.RESOURCE_EXHAUSTED,
                 changed(every_input([2**63 - 1]))),
        GrpcCase("2-D shape whose product overflows int64", Code.INVALID_ARGUMENT,
                 changed(every_input([2**40, 2**40]))),
        GrpcCase("negative dimension", Code.INVALID_ARGUMENT,
                 changed(set_input("latitude", tensor([1.0], shape=[-5])))),
        GrpcCase("int64-min dimension", Code.INVALID_ARGUMENT,
                 changed(every_input([-(2**63)]))),
        GrpcCase("unknown rank", Code.INVALID_ARGUMENT, changed(unknown_rank)),
        GrpcCase("zero rows", Code.INVALID_ARGUMENT, changed(every_input([0]))),
        GrpcCase("one row over the row limit", Code.RESOURCE_EXHAUSTED,
                 changed(lambda r: None, rows=MAX_ROWS + 1)),
        GrpcCase("inputs of different lengths", Code.INVALID_ARGUMENT,
                 changed(set_input("latitude", tensor([1.0, 2.0, 3.0])))),
        GrpcCase("declared shape and values count disagree", Code.INVALID_ARGUMENT,
                 changed(set_input("latitude", tensor([1.0, 2.0, 3.0], shape=[5])))),
        GrpcCase("tensor_content of the wrong size", Code.INVALID_ARGUMENT,
                 changed(packed_wrong_size)),
        GrpcCase("string for a float input", Code.INVALID_ARGUMENT,
                 changed(set_input("latitude", tensor(["north"], types_pb2.DT_STRING)))),
        GrpcCase("float for the string input", Code.INVALID_ARGUMENT,
                 changed(set_input(CATEGORICAL_FEATURE, tensor([1.0])))),
        GrpcCase("dtype number unknown to TF", Code.INVALID_ARGUMENT,
                 changed(set_input("latitude", tensor([], dtype=999, shape=[1])))),
        GrpcCase("resource dtype", Code.INVALID_ARGUMENT,
                 changed(set_input("latitude", tensor([], types_pb2.DT_RESOURCE, [1])))),
        GrpcCase("infinity", Code.INVALID_ARGUMENT,
                 changed(set_input("median_income", tensor([float("inf")])))),
        GrpcCase("double beyond float32's range", Code.INVALID_ARGUMENT,
                 changed(set_input("total_rooms", tensor([1e300], types_pb2.DT_DOUBLE)))),
        GrpcCase("category that is not UTF-8", Code.INVALID_ARGUMENT,
                 changed(set_input(CATEGORICAL_FEATURE,
                                   tensor([b"\xff\xfe"], types_pb2.DT_STRING)))),
        GrpcCase("5,000 unknown inputs", Code.INVALID_ARGUMENT, changed(extra_inputs)),
        GrpcCase("missing input", Code.INVALID_ARGUMENT,
                 changed(lambda r: r.inputs.pop("median_income"))),
        GrpcCase("unknown signature", Code.FAILED_PRECONDITION,
                 changed(spec(signature_name="__saved_model_init_op"))),
        GrpcCase("unknown model", Code.NOT_FOUND, changed(spec(name="../../etc/passwd"))),
        GrpcCase("100 kB model name", Code.NOT_FOUND, changed(spec(name="m" * 100_000))),
        GrpcCase("unknown version", Code.NOT_FOUND, changed(spec(version=2**62))),
        GrpcCase("unknown label", Code.INVALID_ARGUMENT, changed(spec(version_label="gold"))),
        GrpcCase("unknown output in output_filter", Code.INVALID_ARGUMENT,
                 changed(lambda r: r.output_filter.append("price"))),
        GrpcCase("2 MB category string", Code.RESOURCE_EXHAUSTED,
                 changed(set_input(CATEGORICAL_FEATURE,
                                   tensor([b"x" * 2_000_000], types_pb2.DT_STRING)))),
        GrpcCase("bytes that are not a PredictRequest", Code.INVALID_ARGUMENT,
                 lambda model: b"\xff\xff\xff\xff"),
        GrpcCase("40 MB message", Code.RESOURCE_EXHAUSTED,
                 changed(set_input(CATEGORICAL_FEATURE,
                                   tensor([b"x" * BIG_BYTES], types_pb2.DT_STRING)))),
    ]  # fmt: skip


def send_grpc(channel: grpc.Channel, payload: bytes) -> grpc.StatusCode:
    call = channel.unary_unary(
        PREDICT_METHOD,
        request_serializer=lambda data: data,
        response_deserializer=predict_pb2.PredictResponse.FromString,
    )
    try:
        call(payload, timeout=60)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


# ---- REST ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RestCase:
    name: str
    expected: int
    body: Callable[[], bytes]
    path: str = "/v1/models/{model}:predict"
    chunked: bool = False
    """Sent without Content-Length, in 1 MiB chunks: the server must count as it reads."""


def row(**changes: object) -> dict:
    return {**EXAMPLE_INSTANCE, **changes}


def body(payload: object) -> Callable[[], bytes]:
    return lambda: json.dumps(payload).encode()


def raw(text: str | bytes) -> Callable[[], bytes]:
    return lambda: text.encode() if isinstance(text, str) else text


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def rest_corpus() -> list[RestCase]:
    good = {"instances": [EXAMPLE_INSTANCE]}
    columns = {name: [EXAMPLE_INSTANCE[name]] for name in FEATURES}
    return [
        RestCase("JSON nested 100,000 deep", 400, raw(nested(100_000))),
        RestCase("instances nested 500 deep", 400, raw('{"instances": ' + nested(500) + "}")),
        RestCase("an input nested 200 deep", 400,
                 raw('{"inputs": {"latitude": ' + nested(200) + "}}")),
        RestCase("ragged input", 400, body({"inputs": {**columns, "latitude": [[1], [2, 3]]}})),
        RestCase("invalid base64", 400,
                 body({"instances": [row(ocean_proximity={"b64": "!!not base64!!"})]})),
        RestCase("base64 that is not a string", 400,
                 body({"instances": [row(ocean_proximity={"b64": [1, 2]})]})),
        RestCase("base64 of bytes that are not UTF-8", 400,
                 body({"instances": [row(ocean_proximity={"b64": "//79"})]})),
        RestCase("lone surrogate in a string", 400,
                 raw('{"instances": [{"ocean_proximity": "\\ud800"}]}')),
        RestCase("body that is not UTF-8", 400, raw(b'{"instances": [{"x": "\xff\xfe"}]}')),
        RestCase("not JSON", 400, raw("{instances: [")),
        RestCase("empty body", 400, raw("")),
        RestCase("JSON list body", 400, body([good])),
        RestCase("1e400 (inf once parsed)", 400, raw(json.dumps(good).replace("8.3252", "1e400"))),
        RestCase("beyond float32's range", 400, body({"instances": [row(total_rooms=1e39)]})),
        RestCase("Infinity literal", 400,
                 raw(json.dumps({"instances": [row(latitude=float("inf"))]}))),
        RestCase("-Infinity in a column", 400,
                 raw(json.dumps({"inputs": {**columns, "latitude": [float("-inf")]}}))),
        RestCase("integer with 5,000 digits", 400,
                 raw(json.dumps(good).replace("880.0", "9" * 5000))),
        RestCase("string for a number", 400, body({"instances": [row(median_income="high")]})),
        RestCase("boolean for a number", 400, body({"instances": [row(median_income=True)]})),
        RestCase("number for the category", 400, body({"instances": [row(ocean_proximity=7)]})),
        RestCase("null for the category", 400, body({"instances": [row(ocean_proximity=None)]})),
        RestCase("columns of different lengths", 400,
                 body({"inputs": {**columns, "latitude": [1.0, 2.0]}})),
        RestCase("instances with different keys", 400,
                 body({"instances": [EXAMPLE_INSTANCE, row(extra=1)]})),
        RestCase("unknown input", 400, body({"instances": [row(rooms=[[1, [2]]])]})),
        RestCase("both inputs and instances", 400, body({**good, "inputs": columns})),
        RestCase("2 MB category string", 413,
                 body({"instances": [row(ocean_proximity="x" * 2_000_000)]})),
        RestCase("one row over the row limit", 413,
                 body({"instances": [EXAMPLE_INSTANCE] * (MAX_ROWS + 1)})),
        RestCase("40 MB body", 413, lambda: b" " * BIG_BYTES),
        RestCase("40 MB chunked body", 413, lambda: b" " * BIG_BYTES, chunked=True),
        RestCase("unknown signature", 400, body({**good, "signature_name": "nope"})),
        RestCase("signature_name not a string", 400, body({**good, "signature_name": ["x"]})),
        RestCase("unknown model", 404, body(good), "/v1/models/nope:predict"),
        RestCase("version with 40 digits", 404, body(good),
                 "/v1/models/{model}/versions/" + "9" * 40 + ":predict"),
        RestCase("unknown label", 400, body(good), "/v1/models/{model}/labels/gold:predict"),
    ]  # fmt: skip


def send_rest(client: httpx.Client, case: RestCase, model: str) -> int:
    data = case.body()
    mib = 1024 * 1024
    content = (data[i : i + mib] for i in range(0, len(data), mib)) if case.chunked else data
    try:
        response = client.post(
            case.path.format(model=model),
            content=content,
            headers={"content-type": "application/json"},
        )
    except httpx.HTTPError:
        return 0  # the connection broke: not an answer
    if response.status_code >= 400 and "error" not in response.json():
        return -response.status_code  # not TF Serving's {"error": ...} body
    return response.status_code


# ---- the run -------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@dataclass
class Outcome:
    transport: str
    case: str
    expected: str
    got: str

    @property
    def ok(self) -> bool:
        return self.expected == self.got


@dataclass
class Report:
    rounds: int
    rss_before: int
    rss_after: int = 0
    serves_after: bool = False
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def wrong(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def rss_growth(self) -> int:
        return self.rss_after - self.rss_before

    @property
    def passed(self) -> bool:
        return not self.wrong and self.serves_after and self.rss_growth < RSS_BUDGET_BYTES


def serves(channel: grpc.Channel, model: str) -> bool:
    code = send_grpc(channel, good_request(model).SerializeToString())
    return code == grpc.StatusCode.OK


def run(grpc_target: str, rest_url: str, pid: int, model: str = SKLEARN_MODEL, rounds: int = 2):
    """Send the whole corpus ``rounds`` times over both transports; measure RSS around it."""
    options = [("grpc.max_send_message_length", -1)]
    with (
        grpc.insecure_channel(grpc_target, options=options) as channel,
        httpx.Client(base_url=rest_url, timeout=60) as client,
    ):
        if not serves(channel, model):
            raise RuntimeError(f"{grpc_target} does not serve {model} before the corpus")
        report = Report(rounds, rss_bytes(pid))
        for _ in range(rounds):
            for case in grpc_corpus():
                got = send_grpc(channel, case.build(model))
                report.outcomes.append(Outcome("grpc", case.name, case.expected.name, got.name))
            for rest_case in rest_corpus():
                status = send_rest(client, rest_case, model)
                report.outcomes.append(
                    Outcome("rest", rest_case.name, str(rest_case.expected), str(status))
                )
        report.rss_after = rss_bytes(pid)
        report.serves_after = serves(channel, model)
    return report


@dataclass
class Flood:
    codes: dict[str, int]
    rss_before: int
    rss_peak: int
    rss_after: int


def flood(grpc_target: str, pid: int, model: str, count: int, size: int) -> Flood:
    """``count`` requests at once, each with a ``size``-byte category: what many large
    messages in flight cost the server (RSS sampled every 50 ms)."""
    request = good_request(model)
    request.inputs[CATEGORICAL_FEATURE].string_val[:] = [b"x" * size]
    payload = request.SerializeToString()

    async def send_all() -> list[str]:
        options = [("grpc.max_send_message_length", -1)]
        async with grpc.aio.insecure_channel(grpc_target, options=options) as channel:
            call = channel.unary_unary(PREDICT_METHOD, request_serializer=lambda data: data)

            async def one() -> str:
                try:
                    await call(payload, timeout=120)
                except grpc.aio.AioRpcError as error:
                    return error.code().name
                return "OK"

            return await asyncio.gather(*(one() for _ in range(count)))

    before = rss_bytes(pid)
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], rss_bytes(pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        codes = asyncio.run(send_all())
    finally:
        done.set()
        sampler.join()
    return Flood(dict(Counter(codes)), before, peak[0], rss_bytes(pid))


@dataclass
class Target:
    grpc: str
    rest: str
    pid: int


@contextlib.contextmanager
def stack_model_server(models_dir: Path, logs_dir: Path, model: str) -> Iterator[Target]:
    """The project's model server started exactly as ``housing serve stack`` starts it
    (same flags, batching and monitoring files), on free loopback ports."""
    from core.process import free_port
    from deploy.local.services import SERVICES, local_layout
    from deploy.local.supervisor import Supervisor

    ports = {"grpc": free_port(), "rest": free_port()}
    layout = local_layout(models_dir, logs_dir, ports={"model-server": ports}, served=(model,))
    service = SERVICES["model-server"]
    supervisor = Supervisor(layout, [service])
    try:
        process = supervisor.start(service)
        supervisor.wait_ready(process, service, time.monotonic() + 180)
        yield Target(f"127.0.0.1:{ports['grpc']}", f"http://127.0.0.1:{ports['rest']}", process.pid)
    finally:
        supervisor.stop()


def print_report(report: Report) -> None:
    for o in report.outcomes[: len(report.outcomes) // report.rounds]:
        mark = "ok " if o.ok else "BAD"
        print(f"{mark} {o.transport:4} {o.got:>18} (expected {o.expected:>18})  {o.case}")
    mib = 1024 * 1024
    print(
        f"cases: {len(report.outcomes)} sent, {len(report.wrong)} with an unexpected answer; "
        f"RSS {report.rss_before / mib:.0f} MiB -> {report.rss_after / mib:.0f} MiB "
        f"({report.rss_growth / mib:+.0f} MiB, budget {RSS_BUDGET_BYTES / mib:.0f}); "
        f"serves afterwards: {report.serves_after}"
    )
    for o in report.wrong:
        print(f"UNEXPECTED {o.transport} {o.case}: got {o.got}, expected {o.expected}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=Path("models"),
        help="start a model server over this repository as the stack does",
    )
    parser.add_argument("--grpc", help="send to a running server instead: HOST:PORT")
    parser.add_argument("--rest", help="its REST base URL (with --grpc)")
    parser.add_argument("--pid", type=int, help="its process id, for the RSS figures")
    parser.add_argument("--model", default=SKLEARN_MODEL)
    parser.add_argument("--rounds", type=int, default=2, help="times the corpus is sent")
    parser.add_argument(
        "--flood",
        type=int,
        metavar="N",
        help="instead of the corpus: N requests at once (see --flood-bytes)",
    )
    parser.add_argument(
        "--flood-bytes",
        type=int,
        default=1_000_000,
        help="size of each flood request's category string (1,000,000)",
    )
    args = parser.parse_args(argv)  # fmt: skip
    with contextlib.ExitStack() as stack:
        if args.grpc:
            if not (args.rest and args.pid):
                parser.error("--grpc needs --rest and --pid")
            target = Target(args.grpc, args.rest, args.pid)
        else:
            logs = stack.enter_context(tempfile.TemporaryDirectory())
            target = stack.enter_context(
                stack_model_server(args.models_dir.resolve(), Path(logs), args.model)
            )
        if args.flood:
            result = flood(target.grpc, target.pid, args.model, args.flood, args.flood_bytes)
            mib = 1024 * 1024
            print(
                f"{args.flood} requests of {args.flood_bytes:,} bytes at once: {result.codes}; "
                f"RSS {result.rss_before / mib:.0f} MiB, peak {result.rss_peak / mib:.0f}, "
                f"after {result.rss_after / mib:.0f}"
            )
            return 0
        report = run(target.grpc, target.rest, target.pid, args.model, args.rounds)
    print_report(report)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
