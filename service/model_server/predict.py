"""The transport-free request path shared by gRPC and REST: validate, route, batch, run.

Validation follows TF Serving's rules and wording: the inputs must be exactly the
signature's, each with the signature's dtype, and a shape the signature allows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from tensorflow.core.protobuf import meta_graph_pb2

from core.contract import SIGNATURE_NAME
from service.model_server.errors import ServingError, invalid
from service.model_server.limits import InflightLimit
from service.model_server.manager import LoadedVersion, ModelManager
from service.model_server.metrics import ServerMetrics
from service.model_server.tensors import NUMPY_DTYPES, dtype_name, signature_spec

Columns = dict[str, np.ndarray]
Decoder = Callable[[meta_graph_pb2.SignatureDef], Columns]


@dataclass
class ServedPrediction:
    name: str
    version: int
    signature_name: str
    outputs: Columns
    signature: meta_graph_pb2.SignatureDef


def signature_of(loaded: LoadedVersion, signature_name: str) -> meta_graph_pb2.SignatureDef:
    signature = loaded.servable.signatures.get(signature_name)
    if signature is None:
        raise ServingError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f'Serving signature key "{signature_name}" not found.',
        )
    return signature


def _set_text(names: Iterable[str]) -> str:
    return "{" + ", ".join(sorted(names)) + "}"


def validate_inputs(signature: meta_graph_pb2.SignatureDef, inputs: Columns) -> int:
    """Check names, dtypes and shapes against the signature; return the batch size.

    Numeric inputs of another numeric dtype are cast in place to the signature's dtype.
    """
    spec = signature_spec(signature)
    if inputs.keys() != spec.names:
        expected, sent = set(spec.names), set(inputs)
        raise invalid(
            f"input size does not match signature: {len(sent)}!={len(expected)} "
            f"len({_set_text(sent)}) != len({_set_text(expected)}). "
            f"Sent extra: {_set_text(sent - expected)}. "
            f"Missing but required: {_set_text(expected - sent)}."
        )
    rows: dict[str, int] = {}
    for name in spec.sorted_names:
        info = spec.inputs[name]
        values = inputs[name]
        wanted = info.wanted
        is_string = values.dtype == object
        if (wanted is None) != is_string:
            sent_name = "string" if is_string else dtype_name(_tf_dtype(values.dtype))
            raise invalid(
                f"Expects arg[{info.index}] to be {dtype_name(info.dtype)} but {sent_name} is "
                f"provided (input '{name}')"
            )
        if wanted is not None and values.dtype != wanted:
            # Deliberately more lenient than TF Serving: numbers of another width (pandas'
            # float64, ints) are cast, so clients sending their data's native dtype work.
            values = inputs[name] = values.astype(wanted)
        if not info.allows(values.shape):
            raise invalid(
                f"input '{name}' has shape {list(values.shape)} but the signature expects "
                f"{list(info.dims or ())} (-1: any size)"
            )
        rows[name] = values.shape[0] if values.ndim else 1
    sizes = set(rows.values())
    if len(sizes) > 1:
        detail = ", ".join(f"{n}: {r}" for n, r in sorted(rows.items()))
        raise invalid(f"inputs have different batch sizes ({detail})")
    return sizes.pop() if sizes else 0


def _tf_dtype(dtype: np.dtype) -> int:
    for tf_dtype, np_dtype in NUMPY_DTYPES.items():
        if np_dtype == dtype:
            return tf_dtype
    return 0


def check_output_filter(signature: meta_graph_pb2.SignatureDef, output_filter: list[str]) -> None:
    for alias in output_filter:
        if alias not in signature.outputs:
            raise invalid(
                f"output tensor alias not found in signature: {alias} Outputs expected to be "
                f"in the set {_set_text(signature.outputs)}."
            )


class DataPlane:
    """Predict and metadata, whatever the transport."""

    def __init__(
        self, manager: ModelManager, metrics: ServerMetrics, inflight: InflightLimit | None = None
    ):
        self.manager = manager
        self.metrics = metrics
        self.inflight = inflight or InflightLimit(0)
        # Labelled metric children by label values: ``labels()`` costs more than the update.
        # Bounded: model names are known ones or "_unknown", versions are loaded ones.
        self._counted: dict[tuple[str, ...], Any] = {}
        self._timed: dict[tuple[str, ...], Any] = {}

    def signature(
        self, name: str, version: int | None, label: str | None, signature_name: str
    ) -> meta_graph_pb2.SignatureDef:
        loaded = self.manager.resolve(name, version, label)
        return signature_of(loaded, signature_name or SIGNATURE_NAME)

    async def predict(
        self,
        name: str,
        version: int | None,
        label: str | None,
        signature_name: str,
        decode: Decoder,
        output_filter: list[str],
        transport: str,
    ) -> ServedPrediction:
        """``decode`` turns the transport's request into columns once the signature is
        known, so shapes are checked against it before anything is allocated."""
        started = time.perf_counter()
        served_version = "none"
        code = grpc.StatusCode.OK
        try:
            with self.inflight.admit():
                loaded = self.manager.resolve(name, version, label)
                served_version = str(loaded.servable.version)
                signature_name = signature_name or SIGNATURE_NAME
                signature = signature_of(loaded, signature_name)
                inputs = decode(signature)
                rows = validate_inputs(signature, inputs)
                check_output_filter(signature, output_filter)
                outputs = await self._run(loaded, signature_name, inputs, rows)
            if output_filter:
                outputs = {k: v for k, v in outputs.items() if k in output_filter}
            return ServedPrediction(
                name, loaded.servable.version, signature_name, outputs, signature
            )
        except ServingError as exc:
            code = exc.code
            raise
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:
            code = grpc.StatusCode.INTERNAL
            raise ServingError(code, f"model failed: {type(exc).__name__}: {exc}") from exc
        finally:
            # Unknown names from clients must not create label values.
            model = name if name in self.manager.models else "_unknown"
            counted = (model, served_version, "predict", transport, code.name)
            counter = self._counted.get(counted)
            if counter is None:
                counter = self._counted[counted] = self.metrics.requests.labels(*counted)
            counter.inc()
            if code == grpc.StatusCode.OK:
                timed = (model, served_version, "predict")
                histogram = self._timed.get(timed)
                if histogram is None:
                    histogram = self._timed[timed] = self.metrics.latency.labels(*timed)
                histogram.observe(time.perf_counter() - started)

    async def _run(
        self, loaded: LoadedVersion, signature_name: str, inputs: Columns, rows: int
    ) -> Any:
        loaded.inflight += 1
        try:
            batcher = self.manager.batcher(loaded, signature_name)
            if batcher is not None:
                return await batcher.submit(inputs, rows)
            servable = loaded.servable
            labels = (servable.name, str(servable.version))
            started = time.perf_counter()
            outputs = await asyncio.get_running_loop().run_in_executor(
                self.manager.executor, servable.predict, signature_name, inputs
            )
            self.metrics.model_seconds.labels(*labels).observe(time.perf_counter() - started)
            self.metrics.batch_requests.labels(*labels).observe(1)
            self.metrics.batch_rows.labels(*labels).observe(rows)
            return outputs
        finally:
            loaded.inflight -= 1
