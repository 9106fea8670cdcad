"""The transport-free core: what a prediction *is*, independent of HTTP and of gRPC.

Routes call a ``Predictor``; ``GatewayPredictor`` implements it over ``TFServingUpstream``
(the TF Serving gRPC client, in production and tests). It picks the version (explicit
version or label, else the canary split over the ``canary``/``stable`` labels), splits
large batches into chunks sent concurrently, flags out-of-range inputs, records metrics
and writes the served predictions to the prediction log before the answer is acknowledged.

One deadline budget (``deadline_seconds``) bounds everything one request does: every
upstream attempt, a label fallback, the redo of chunks answered by another version, the
model-status check and the prediction-log commit wait.

A version that is not loaded yet is a 503 ``model_loading`` with Retry-After, never a 404:
NOT_FOUND for a label (it points at an unloaded version), for the server's default policy
(nothing loaded yet) or for an explicit version that model status reports as START or
LOADING. Only an explicit version the server does not know is a 404.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc

from core.contract import DEFAULT_LABEL, FEATURES
from core.tfserving import Deadline, Prediction, VersionState
from service.prediction_log import DAY, PredictionLog, PredictionRecord, Retention

from .errors import GatewayError, InvalidInput, ModelLoading, ModelNotFound, UpstreamError
from .metrics import GatewayMetrics
from .ranges import out_of_range
from .schemas import Instance
from .settings import GatewaySettings
from .upstream import TFServingUpstream

log = logging.getLogger("service.gateway")

STABLE, CANARY = DEFAULT_LABEL, "canary"
# Short: once `promote` adds labels, default traffic must follow them within seconds.
LABELS_MISSING_TTL = 2.0
LOADING_STATES = ("START", "LOADING")


@dataclass(frozen=True)
class Selection:
    """Which version to ask for: an explicit version, a label, or neither (policy)."""

    version: int | None = None
    label: str | None = None


@dataclass(frozen=True)
class PredictionResult:
    model: str
    version: int | None
    values: list[float]
    out_of_range: list[list[str]]
    label: str | None = None


@dataclass(frozen=True)
class ReadinessResult:
    ready: bool
    models: dict[str, str]
    warnings: tuple[str, ...] = ()
    """What is wrong but does not stop serving (e.g. the prediction log cannot write)."""


class Predictor(Protocol):
    """What the HTTP layer needs; nothing here knows about requests or channels."""

    routes: dict[str, str]

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def predict(
        self, model: str, instances: Sequence[Instance], selection: Selection, request_id: str
    ) -> PredictionResult: ...

    async def model_status(self, model: str, request_id: str) -> list[VersionState]: ...

    async def readiness(self, request_id: str) -> ReadinessResult: ...


def canary_bucket(request_id: str) -> float:
    """A stable number in [0, 100) for a request id: the same id always routes the same way."""
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000 / 100


class GatewayPredictor:
    """``Predictor`` over the model servers, with chunking, canary, log and metrics; its
    limits, deadline and canary share come from the gateway's settings."""

    def __init__(
        self, upstream: TFServingUpstream, settings: GatewaySettings, metrics: GatewayMetrics
    ) -> None:
        self.upstream = upstream
        self.settings = settings
        self.routes = dict(settings.upstreams)
        self.metrics = metrics
        self.prediction_log: PredictionLog | None = None
        self._labels_missing: dict[tuple[str, str], float] = {}
        self._ready: tuple[float, ReadinessResult] | None = None

    async def start(self) -> None:
        await self.upstream.start()
        settings = self.settings
        if settings.prediction_log_file is not None:
            retention = Retention(
                max_age_seconds=settings.prediction_log_max_age_days * DAY,
                max_rows=settings.prediction_log_max_rows,
                every_seconds=settings.prediction_log_retention_seconds,
            )
            self.prediction_log = await asyncio.to_thread(
                PredictionLog, str(settings.prediction_log_file), retention=retention
            )

    async def close(self) -> None:
        await self.upstream.close()
        if self.prediction_log is not None:
            await asyncio.to_thread(self.prediction_log.close)
            self.prediction_log = None

    def _check_model(self, model: str) -> None:
        if model not in self.routes:
            shown = model if len(model) <= 64 else model[:64] + "..."
            raise ModelNotFound(
                f"unknown model {shown!r}; served models: {', '.join(sorted(self.routes))}"
            )

    def _default_label(self, model: str, selection: Selection, request_id: str) -> str | None:
        """The label to ask for when the client chose neither version nor label.

        ``stable`` by default, not the server's default policy: TF Serving serves the
        highest loaded version, which may be a canary or an unpromoted candidate. The
        canary's share asks for ``canary``; without that label it goes to ``stable``.
        """
        if selection.version is not None or selection.label is not None:
            return None
        label: str | None = STABLE
        if (
            self.settings.canary_percent > 0
            and canary_bucket(request_id) < self.settings.canary_percent
        ):
            label = CANARY
        return self._known(model, label)

    def _known(self, model: str, label: str | None) -> str | None:
        """``label``, or its fallback while the label is known to be missing."""
        if self._missing(model, STABLE):
            return None  # no stable label: a model without labels, served by policy
        if label == CANARY and self._missing(model, CANARY):
            return STABLE
        return label

    def _missing(self, model: str, label: str) -> bool:
        """Whether ``label`` is known to be missing. When that knowledge expires, the request
        asking now probes the label and the others keep to the fallback until the TTL runs
        out again: one failing call per TTL, not one per request in flight at the expiry."""
        key = (model, label)
        expires = self._labels_missing.get(key)
        if expires is None:
            return False
        now = time.monotonic()
        if expires > now:
            return True
        self._labels_missing[key] = now + LABELS_MISSING_TTL  # this request probes
        return False

    @staticmethod
    def _fallback(label: str) -> str | None:
        """canary -> stable -> the server's default policy (a model without labels)."""
        return STABLE if label == CANARY else None

    async def predict(
        self, model: str, instances: Sequence[Instance], selection: Selection, request_id: str
    ) -> PredictionResult:
        self._check_model(model)
        deadline = Deadline(self.settings.deadline_seconds)
        chosen = self._default_label(model, selection, request_id)
        label = chosen or selection.label
        missing: list[str] = []
        while True:
            try:
                served = await self._predict_chunks(
                    model, instances, selection.version, label, request_id, deadline
                )
                break
            except UpstreamError as exc:
                if exc.grpc_code is grpc.StatusCode.INVALID_ARGUMENT and chosen is not None:
                    # The server does not know the label we chose (TF Serving answers
                    # INVALID_ARGUMENT for an unknown label): try the next one.
                    missing.append(chosen)
                    chosen = label = self._fallback(chosen)
                    continue
                if exc.grpc_code is grpc.StatusCode.NOT_FOUND:
                    raise await self._not_found(
                        model, selection.version, label, request_id, deadline, exc
                    ) from None
                raise
        for name in missing:  # remembered only once a fallback answered
            self._labels_missing[(model, name)] = time.monotonic() + LABELS_MISSING_TTL
        if chosen is not None:  # the label answered (a probe found it again)
            self._labels_missing.pop((model, chosen), None)
        if self.settings.canary_percent > 0 and chosen is not None:
            self.metrics.canary.labels(model, chosen).inc()
        result = self._result(model, instances, served, chosen or selection.label)
        await self._log(result, instances, request_id, deadline)
        return result

    async def _not_found(
        self,
        model: str,
        version: int | None,
        label: str | None,
        request_id: str,
        deadline: Deadline,
        exc: UpstreamError,
    ) -> GatewayError:
        """NOT_FOUND for a routed model: still loading (503 + Retry-After) or no such version."""
        if version is None:
            what = f"the version labelled {label!r}" if label else "a version of the model"
            return ModelLoading(
                f"{what} is not loaded yet; retry later", self.settings.retry_after_seconds
            )
        try:
            states = await self.upstream.model_status(model, request_id, deadline)
        except GatewayError:
            states = []
        if any(s.version == version and s.state in LOADING_STATES for s in states):
            return ModelLoading(
                f"version {version} is loading; retry later", self.settings.retry_after_seconds
            )
        return exc

    async def _predict_chunks(
        self,
        model: str,
        instances: Sequence[Instance],
        version: int | None,
        label: str | None,
        request_id: str,
        deadline: Deadline,
    ) -> list[Prediction]:
        chunks = [
            instances[i : i + self.settings.chunk_size]
            for i in range(0, len(instances), self.settings.chunk_size)
        ]

        async def one(chunk: Sequence[Instance], pinned: int | None) -> Prediction:
            columns = {name: [getattr(inst, name) for inst in chunk] for name in FEATURES}
            return await self.upstream.predict(
                model,
                columns,
                version=pinned,
                label=label if pinned is None else None,
                request_id=request_id,
                deadline=deadline,
            )

        if len(chunks) == 1:
            return [await one(chunks[0], version)]
        gate = asyncio.Semaphore(self.settings.max_concurrent_chunks)

        async def gated(chunk: Sequence[Instance], pinned: int | None) -> Prediction:
            async with gate:
                return await one(chunk, pinned)

        served = list(await asyncio.gather(*(gated(chunk, version) for chunk in chunks)))
        # A version switch mid-request would mix versions: re-ask the odd chunks pinned to
        # the first chunk's version, so one answer always comes from one version.
        first = served[0].version
        if version is None and first is not None:
            odd = [i for i, s in enumerate(served) if s.version != first]
            redone = await asyncio.gather(*(gated(chunks[i], first) for i in odd))
            for i, again in zip(odd, redone, strict=True):
                served[i] = again
        return served

    def _result(
        self,
        model: str,
        instances: Sequence[Instance],
        served: list[Prediction],
        label: str | None,
    ) -> PredictionResult:
        values = [v for part in served for v in part.values]
        bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
        if bad:  # the input drove the model out of its domain: the client's to change
            shown = ", ".join(f"instances[{i}]" for i in bad[:10])
            raise InvalidInput(
                f"model {model} cannot give a finite prediction for {shown}",
                code="unpredictable_input",
            )
        version = served[0].version
        version_label = str(version) if version is not None else ""
        flags = [out_of_range(inst) for inst in instances]
        histogram = self.metrics.predicted_value.labels(model, version_label)
        for value in values:
            histogram.observe(value)
        self.metrics.instances.labels(model, version_label).inc(len(values))
        for flagged in flags:
            for feature in flagged:
                self.metrics.out_of_range.labels(model, feature).inc()
        return PredictionResult(model, version, values, flags, label)

    async def _log(
        self,
        result: PredictionResult,
        instances: Sequence[Instance],
        request_id: str,
        deadline: Deadline,
    ) -> None:
        """Append the served predictions and wait for the commit: acknowledged = durable.

        The wait is bounded by what is left of the request's deadline; a commit not
        confirmed by then is counted and logged like a failed one."""
        if self.prediction_log is None:
            return
        now = time.time()
        records = [
            # vars(): the instance's validated fields as a dict, as model_dump() gives
            # them for this flat model, at a tenth of the cost
            PredictionRecord(request_id, result.model, result.version, dict(vars(inst)), value, now)
            for inst, value in zip(instances, result.values, strict=True)
        ]
        try:
            committed = asyncio.wrap_future(self.prediction_log.append(records))
            # shield: a timeout stops the wait, never the write itself
            await asyncio.wait_for(asyncio.shield(committed), timeout=deadline.remaining())
        except Exception as exc:  # the answer is still right; the loss is counted and logged
            self.metrics.prediction_log_failures.inc(len(records))
            log.error(
                "prediction log write failed",
                extra={"request_id": request_id, "records": len(records), "error": repr(exc)},
            )

    async def model_status(self, model: str, request_id: str) -> list[VersionState]:
        self._check_model(model)
        return await self.upstream.model_status(model, request_id)

    def _warnings(self) -> tuple[str, ...]:
        warning = self.prediction_log.warning() if self.prediction_log is not None else None
        return (warning,) if warning else ()

    async def readiness(self, request_id: str) -> ReadinessResult:
        """Ready when every routed model has an AVAILABLE version (cached briefly), with
        the current warnings."""
        result = await self._model_readiness(request_id)
        warnings = self._warnings()
        return dataclasses.replace(result, warnings=warnings) if warnings else result

    async def _model_readiness(self, request_id: str) -> ReadinessResult:
        now = time.monotonic()
        if self._ready is not None and self._ready[0] > now:
            return self._ready[1]
        names = sorted(self.routes)
        answers = await asyncio.gather(
            *(self.upstream.model_status(name, request_id) for name in names),
            return_exceptions=True,
        )
        models: dict[str, str] = {}
        for name, answer in zip(names, answers, strict=True):
            if isinstance(answer, GatewayError):
                models[name] = answer.message
            elif isinstance(answer, BaseException):
                raise answer
            elif any(v.state == "AVAILABLE" for v in answer):
                models[name] = "AVAILABLE"
            else:
                states = ", ".join(f"v{v.version} {v.state}" for v in answer) or "no versions"
                models[name] = f"no AVAILABLE version ({states})"
        result = ReadinessResult(all(s == "AVAILABLE" for s in models.values()), models)
        self._ready = (now + self.settings.ready_cache_seconds, result)
        return result
