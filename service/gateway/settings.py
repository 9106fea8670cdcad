"""Gateway settings: one pydantic-settings class, env prefix ``HOUSING_``.

Precedence, highest first: command-line flags (``housing serve gateway --port ...``, passed
to the constructor) > environment variables (``HOUSING_PORT=...``) > a ``.env`` file in the
working directory > the defaults below. Complex values (``HOUSING_UPSTREAMS``,
``HOUSING_API_KEYS``, ``HOUSING_CORS_ORIGINS``) are JSON. One exception for Vertex AI:
``AIP_HTTP_PORT``, when set, overrides the port whatever else says, because Vertex only
routes traffic to that port.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.contract import KERAS_MODEL, SKLEARN_MODEL
from core.settings import DEFAULT_PREDICTION_LOG

MODEL_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,128}$"
TARGET_PATTERN = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


class GatewaySettings(BaseSettings):
    """Everything the gateway needs to know, read once at start-up."""

    model_config = SettingsConfigDict(
        env_prefix="HOUSING_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        use_attribute_docstrings=True,
    )

    host: str = "127.0.0.1"
    """Interface to bind. Loopback by default; any other address needs API keys or
    ``allow_unauthenticated`` (containers pass ``--host 0.0.0.0`` with one of them)."""

    allow_unauthenticated: bool = False
    """Serve a non-loopback address without API keys (for a platform that authenticates
    in front of the gateway, e.g. a Vertex AI endpoint). Off: such a bind refuses to start."""

    port: int = Field(default=8000, ge=1, le=65535)
    """TCP port to listen on (AIP_HTTP_PORT overrides it when set)."""

    workers: int = Field(default=1, ge=1, le=64)
    """Server processes (spawned, each with its own gRPC channels; metrics merged). One by
    default: on 2 cores beside the model server, with `make bench`, one worker served more
    one-row requests than two (809 vs 774 req/s, p99 40 vs 60 ms) and as many 20-row ones
    (≈ 500 req/s); two cost more CPU per request (more wake-ups, uneven connections).
    Raise it where the gateway saturates a core and cores are left over."""

    upstreams: dict[str, str] = Field(
        default_factory=lambda: {SKLEARN_MODEL: "localhost:8500", KERAS_MODEL: "localhost:8500"}
    )
    """Routing table: model name -> gRPC target "host:port" (TF Serving or the model server).
    Only these models are served; any other name is a 404 without an upstream call."""

    default_model: str = SKLEARN_MODEL
    """Model used by POST /v1/predict and the Vertex AI predict route."""

    api_keys: list[SecretStr] = Field(default_factory=list)
    """Accepted API keys (JSON list). Empty: authentication is off."""

    metrics_keys: list[SecretStr] = Field(default_factory=list)
    """Scrape-only keys (JSON list): accepted on /metrics and nowhere else, so Prometheus
    can scrape an authenticated gateway without a key that can predict. API keys work too."""

    deadline_seconds: float = Field(default=5.0, gt=0, le=300)
    """Deadline budget of one request: every upstream attempt, retry, label fallback and
    redo, and the prediction-log commit wait, all together."""

    retries: int = Field(default=2, ge=0, le=10)
    """Extra attempts after an UNAVAILABLE upstream answer (no other code is retried), within
    the deadline and a retry budget (retries at most a tenth of recent calls)."""

    retry_backoff_seconds: float = Field(default=0.05, ge=0, le=10)
    """First backoff between retries; doubles on each attempt, with jitter."""

    retry_after_seconds: int = Field(default=1, ge=0, le=3600)
    """Value of the Retry-After header on 503 and 429 answers."""

    max_instances: int = Field(default=1000, ge=1, le=1_000_000)
    """Most instances in one request; more is a 413."""

    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    """Largest request body in bytes, checked before parsing; larger is a 413."""

    chunk_size: int = Field(default=256, ge=1)
    """Instances per upstream Predict call; a larger batch is split into concurrent chunks."""

    max_concurrent_chunks: int = Field(default=8, ge=1)
    """Chunks of one request in flight at once."""

    max_in_flight_predictions: int = Field(default=64, ge=1, le=100_000)
    """Prediction requests one worker handles at once; beyond it and its small queue the
    gateway answers 503 with Retry-After instead of piling work on the model server."""

    max_queued_predictions: int = Field(default=16, ge=0, le=100_000)
    """Prediction requests that may wait for a free slot (then 503); 0 rejects at once."""

    body_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    """A prediction's body must arrive within this many seconds (else 408); it is read in
    full before the request takes a slot, so slow senders cannot hold slots."""

    prediction_log_path: str = DEFAULT_PREDICTION_LOG
    """SQLite file of served predictions, for the drift monitor. Empty disables the log."""

    prediction_log_max_age_days: float = Field(default=30.0, gt=0)
    """Records older than this are deleted from the prediction log."""

    prediction_log_max_rows: int = Field(default=5_000_000, ge=1)
    """At most this many records are kept in the prediction log (oldest deleted first)."""

    prediction_log_retention_seconds: float = Field(default=60.0, gt=0)
    """Seconds between retention runs; each deletes a bounded number of records."""

    models_dir: Path | None = None
    """Model repository folder (reference samples for drift). Default: the shared one."""

    drift_interval_seconds: float = Field(default=300.0, ge=0)
    """Seconds between scheduled drift reports (every routed model, the last
    ``HOUSING_DRIFT_WINDOW_SECONDS`` of its traffic); 0: on demand only."""

    cors_origins: list[str] = Field(default_factory=list)
    """Origins allowed by CORS (JSON list). Empty: no cross-origin access at all."""

    canary_percent: float = Field(default=0.0, ge=0, le=100)
    """Share of requests (0-100) without an explicit version or label sent to the upstream
    label "canary"; the rest go to "stable". Sticky per request id."""

    ready_cache_seconds: float = Field(default=1.0, ge=0, le=60)
    """How long a readiness answer from the upstreams is reused."""

    log_level: str = "info"
    """Logging level: debug, info, warning or error."""

    aip_http_port: int | None = Field(
        default=None,
        validation_alias=AliasChoices("AIP_HTTP_PORT", "aip_http_port"),
        ge=1,
        le=65535,
    )
    """Vertex AI: port the container must listen on (overrides ``port``)."""

    aip_predict_route: str | None = Field(
        default=None, validation_alias=AliasChoices("AIP_PREDICT_ROUTE", "aip_predict_route")
    )
    """Vertex AI: extra POST path served like /v1/predict."""

    aip_health_route: str | None = Field(
        default=None, validation_alias=AliasChoices("AIP_HEALTH_ROUTE", "aip_health_route")
    )
    """Vertex AI: extra GET path answered like /readyz."""

    @field_validator("upstreams")
    @classmethod
    def _check_upstreams(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("at least one upstream model is required")
        for name, target in value.items():
            if not re.match(MODEL_NAME_PATTERN, name):
                raise ValueError(f"invalid model name {name!r}")
            if not TARGET_PATTERN.match(target):
                raise ValueError(f"upstream for {name!r} must be HOST:PORT, got {target!r}")
        return value

    @field_validator("aip_predict_route", "aip_health_route")
    @classmethod
    def _check_route(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("a route must start with '/'")
        return value or None

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error", "critical"}:
            raise ValueError("log level must be debug, info, warning, error or critical")
        return value.lower()

    @model_validator(mode="after")
    def _check_default_model(self) -> GatewaySettings:
        if self.default_model not in self.upstreams:
            raise ValueError(
                f"default model {self.default_model!r} has no upstream "
                f"(routed: {', '.join(sorted(self.upstreams))})"
            )
        return self

    @model_validator(mode="after")
    def _check_exposure(self) -> GatewaySettings:
        if not is_loopback(self.host) and not self.api_keys and not self.allow_unauthenticated:
            raise ValueError(
                f"host {self.host} is reachable from other machines and no API keys are set: "
                "set HOUSING_API_KEYS, bind 127.0.0.1, or pass --allow-unauthenticated "
                "when something in front of the gateway authenticates"
            )
        return self

    @property
    def listen_port(self) -> int:
        """The port actually bound: Vertex AI's AIP_HTTP_PORT wins when set."""
        return self.aip_http_port or self.port

    @property
    def prediction_log_file(self) -> Path | None:
        return Path(self.prediction_log_path) if self.prediction_log_path.strip() else None

    def api_key_bytes(self) -> list[bytes]:
        return [key.get_secret_value().encode() for key in self.api_keys]

    def metrics_key_bytes(self) -> list[bytes]:
        return [key.get_secret_value().encode() for key in self.metrics_keys]


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything
