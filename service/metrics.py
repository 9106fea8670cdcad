"""Prometheus metrics in a registry owned by one server instance (no global state), so tests
and several servers in one process stay independent. Both servers declare their metrics
through :class:`MetricSet`: names under one prefix, every metric in the instance's registry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

PER_VERSION = ("model", "version")  # the labels of a metric kept per served model version


class MetricSet:
    """One server's metrics; subclasses declare them in ``__init__``, ``render()`` gives the
    /metrics payload."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(
        self, prefix: str, registry: CollectorRegistry | None = None, auto_describe: bool = False
    ) -> None:
        """Metrics named ``prefix...`` in ``registry``, or in a registry of their own."""
        self.prefix = prefix
        self.registry = (
            registry if registry is not None else CollectorRegistry(auto_describe=auto_describe)
        )

    def counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(self.prefix + name, doc, labels, registry=self.registry)

    def histogram(
        self, name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> Histogram:
        return Histogram(self.prefix + name, doc, labels, buckets=buckets, registry=self.registry)

    def gauge(
        self,
        name: str,
        doc: str,
        labels: Sequence[str] = (),
        multiprocess_mode: Literal["all", "livesum", "livemostrecent"] = "all",
    ) -> Gauge:
        return Gauge(
            self.prefix + name,
            doc,
            labels,
            registry=self.registry,
            multiprocess_mode=multiprocess_mode,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
