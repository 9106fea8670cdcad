"""Prometheus metrics of one app instance, in its own ``CollectorRegistry``.

A registry per app (not the global one) keeps tests and several apps in one process
independent. Labels are bounded: route *templates* (not raw paths), model names from the
routing table only, versions the upstream reported, HTTP status codes.

Several workers (``housing serve gateway --workers N``): the supervisor sets
``PROMETHEUS_MULTIPROC_DIR`` before the workers start, so prometheus-client keeps every
value in per-process files there, and ``render()`` sums all workers' files: any worker's
/metrics is the whole gateway's.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, generate_latest, multiprocess

from service.metrics import PER_VERSION, MetricSet

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # set by ``cli.supervise`` for its workers

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
VALUE_BUCKETS = (
    25_000,
    50_000,
    75_000,
    100_000,
    150_000,
    200_000,
    250_000,
    300_000,
    350_000,
    400_000,
    450_000,
    500_000,
    750_000,
    1_000_000,
)


class GatewayMetrics(MetricSet):
    """The gateway's metrics; ``render()`` gives the /metrics payload (all workers')."""

    def __init__(self) -> None:
        super().__init__("housing_gateway_", auto_describe=True)
        labels = ["route", "model", "version", "code"]
        self.requests = self.counter(
            "requests_total",
            "HTTP requests answered, by route template, model, served version and status.",
            labels,
        )
        self.latency = self.histogram(
            "request_duration_seconds",
            "HTTP request latency, by route template, model, served version and status.",
            labels,
            LATENCY_BUCKETS,
        )
        self.upstream_latency = self.histogram(
            "upstream_duration_seconds",
            "Upstream gRPC call latency (one Predict chunk or status call), by gRPC code.",
            ["model", "method", "code"],
            LATENCY_BUCKETS,
        )
        self.predicted_value = self.histogram(
            "predicted_value_usd",
            "Predicted median house values, USD.",
            PER_VERSION,
            VALUE_BUCKETS,
        )
        self.instances = self.counter(
            "instances_total", "Instances predicted, by model and served version.", PER_VERSION
        )
        self.in_flight = self.gauge(
            "in_flight_requests",
            "Requests being handled now (health and metrics paths excluded).",
            multiprocess_mode="livesum",
        )
        self.overload_rejections = self.counter(
            "overload_rejections_total",
            "Predictions refused with 503 because the worker was at its concurrency limit.",
        )
        self.out_of_range = self.counter(
            "out_of_range_total",
            "Served instances with a feature outside the training range, by feature.",
            ["model", "feature"],
        )
        self.prediction_log_failures = self.counter(
            "prediction_log_failures_total",
            "Predictions that could not be written to the prediction log.",
        )
        self.canary = self.counter(
            "canary_routing_total",
            "Requests routed by the canary split, by model and label chosen.",
            ["model", "label"],
        )

    def render(self) -> bytes:
        if os.environ.get(MULTIPROC_ENV):
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)
            return generate_latest(merged)
        return super().render()
