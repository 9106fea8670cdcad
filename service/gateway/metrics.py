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

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

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


class GatewayMetrics:
    """The gateway's metrics; ``render()`` gives the /metrics payload."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["route", "model", "version", "code"]
        self.requests = Counter(
            "housing_gateway_requests_total",
            "HTTP requests answered, by route template, model, served version and status.",
            labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "housing_gateway_request_duration_seconds",
            "HTTP request latency, by route template, model, served version and status.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream_latency = Histogram(
            "housing_gateway_upstream_duration_seconds",
            "Upstream gRPC call latency (one Predict chunk or status call), by gRPC code.",
            ["model", "method", "code"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predicted_value = Histogram(
            "housing_gateway_predicted_value_usd",
            "Predicted median house values, USD.",
            ["model", "version"],
            buckets=VALUE_BUCKETS,
            registry=self.registry,
        )
        self.instances = Counter(
            "housing_gateway_instances_total",
            "Instances predicted, by model and served version.",
            ["model", "version"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "housing_gateway_in_flight_requests",
            "Requests being handled now (health and metrics paths excluded).",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.overload_rejections = Counter(
            "housing_gateway_overload_rejections_total",
            "Predictions refused with 503 because the worker was at its concurrency limit.",
            registry=self.registry,
        )
        self.out_of_range = Counter(
            "housing_gateway_out_of_range_total",
            "Served instances with a feature outside the training range, by feature.",
            ["model", "feature"],
            registry=self.registry,
        )
        self.prediction_log_failures = Counter(
            "housing_gateway_prediction_log_failures_total",
            "Predictions that could not be written to the prediction log.",
            registry=self.registry,
        )
        self.canary = Counter(
            "housing_gateway_canary_routing_total",
            "Requests routed by the canary split, by model and label chosen.",
            ["model", "label"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        if os.environ.get(MULTIPROC_ENV):
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)
            return generate_latest(merged)
        return generate_latest(self.registry)
