"""Prometheus metrics, in a registry owned by one server instance (no global state).

Per model *and version*: request counts by API and status code and latency histograms
(TF Serving has no per-version latency); per batch: requests merged and rows per model call,
which is how batching is observed without timing anything.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "model_server_requests",
            "Requests by model, version, API, transport and status code.",
            ["model", "version", "api", "transport", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "model_server_request_duration_seconds",
            "Time from request decoded to response ready, per model version.",
            ["model", "version", "api"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "model_server_batch_requests",
            "Requests merged into one model call.",
            ["model", "version"],
            buckets=SIZE_BUCKETS,
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "model_server_batch_rows",
            "Rows in one model call.",
            ["model", "version"],
            buckets=SIZE_BUCKETS,
            registry=self.registry,
        )
        self.model_seconds = Histogram(
            "model_server_model_call_duration_seconds",
            "Time inside the model for one (possibly merged) call.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queued_rows = Gauge(
            "model_server_batch_queue_rows",
            "Rows waiting in the batching queue.",
            ["model", "version"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "model_server_batch_queue_rejections",
            "Requests refused because the batching queue was full.",
            ["model", "version"],
            registry=self.registry,
        )
        self.loads = Counter(
            "model_server_version_loads",
            "Version loads by outcome (ok, error).",
            ["model", "outcome"],
            registry=self.registry,
        )
        self.load_seconds = Histogram(
            "model_server_version_load_duration_seconds",
            "Time to load and warm up a version.",
            ["model"],
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=self.registry,
        )
        self.available = Gauge(
            "model_server_version_available",
            "1 while a version is loaded and serving.",
            ["model", "version"],
            registry=self.registry,
        )

        self.serving_form = Gauge(
            "model_server_version_form",
            "1 for the form a loaded version predicts with (sklearn: compiled, plan or "
            "pipeline; TensorFlow: saved_model).",
            ["model", "version", "form"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
