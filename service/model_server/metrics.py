"""The model server's Prometheus metrics.

Per model *and version*: request counts by API and status code and latency histograms
(TF Serving has no per-version latency); per batch: requests merged and rows per model call,
which is how batching is observed without timing anything.
"""

from __future__ import annotations

from service.metrics import PER_VERSION, MetricSet

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
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class ServerMetrics(MetricSet):
    def __init__(self) -> None:
        super().__init__("model_server_")
        self.requests = self.counter(
            "requests",
            "Requests by model, version, API, transport and status code.",
            [*PER_VERSION, "api", "transport", "code"],
        )
        self.latency = self.histogram(
            "request_duration_seconds",
            "Time from request decoded to response ready, per model version.",
            [*PER_VERSION, "api"],
            LATENCY_BUCKETS,
        )
        self.batch_requests = self.histogram(
            "batch_requests", "Requests merged into one model call.", PER_VERSION, SIZE_BUCKETS
        )
        self.batch_rows = self.histogram(
            "batch_rows", "Rows in one model call.", PER_VERSION, SIZE_BUCKETS
        )
        self.model_seconds = self.histogram(
            "model_call_duration_seconds",
            "Time inside the model for one (possibly merged) call.",
            PER_VERSION,
            LATENCY_BUCKETS,
        )
        self.queued_rows = self.gauge(
            "batch_queue_rows", "Rows waiting in the batching queue.", PER_VERSION
        )
        self.rejected = self.counter(
            "batch_queue_rejections",
            "Requests refused because the batching queue was full.",
            PER_VERSION,
        )
        self.loads = self.counter(
            "version_loads", "Version loads by outcome (ok, error).", ["model", "outcome"]
        )
        self.load_seconds = self.histogram(
            "version_load_duration_seconds",
            "Time to load and warm up a version.",
            ["model"],
            LOAD_BUCKETS,
        )
        self.available = self.gauge(
            "version_available", "1 while a version is loaded and serving.", PER_VERSION
        )
        self.serving_form = self.gauge(
            "version_form",
            "1 for the form a loaded version predicts with (sklearn: compiled, plan or "
            "pipeline; TensorFlow: saved_model).",
            [*PER_VERSION, "form"],
        )
