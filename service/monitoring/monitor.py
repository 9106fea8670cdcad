"""Background drift monitor: recent prediction-log window vs the served version's reference.

Use from the gateway::

    monitor = DriftMonitor(MonitorSettings(log_path=...), registry)   # registry: CollectorRegistry
    monitor.start()          # runs now, then every ``interval_seconds`` (0: on demand only)
    monitor.run_once()       # on demand; returns the drift.json dict or raises MonitorError
    monitor.latest, monitor.latest_html, monitor.last_error
    monitor.stop()

The current window is the last ``window_seconds`` of ``settings.model``'s logged
predictions (at most ``max_rows``, newest kept). Its rows carry the model version that
served them: the monitor compares the rows of the most recent version with that version's
``reference.parquet`` (a model retrained on other data gets its own reference).
An Evidently run takes a few seconds of CPU in a background thread; keep the interval in
minutes on a busy gateway.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.contract import FEATURES, SKLEARN_MODEL
from core.paths import REPO_ROOT
from service.monitoring.drift import (
    COLUMN_P_VALUE,
    DATASET_DRIFT_SHARE,
    DriftConfig,
    DriftInputError,
    DriftResult,
)

log = logging.getLogger(__name__)


def default_models_dir() -> Path:
    return Path(os.environ.get("HOUSING_MODELS_DIR", REPO_ROOT / "models"))


class MonitorSettings(BaseSettings):
    """Drift monitor settings. Precedence: constructor arguments, then ``HOUSING_DRIFT_*``
    environment variables, then these defaults (``models_dir`` falls back to
    ``HOUSING_MODELS_DIR``)."""

    model_config = SettingsConfigDict(env_prefix="HOUSING_DRIFT_", protected_namespaces=())

    log_path: Path = Path("predictions.sqlite")
    """The prediction log (SQLite) the gateway writes."""
    models_dir: Path = Field(default_factory=default_models_dir)
    """Model repository holding ``<model>/<version>/reference.parquet``."""
    model: str = SKLEARN_MODEL
    """Which model's traffic to watch."""
    window_seconds: float = Field(default=3600.0, gt=0)
    """How far back the current window reaches."""
    max_rows: int = Field(default=5000, gt=0)
    """At most this many of the newest predictions in the window."""
    min_rows: int = Field(default=200, ge=30)
    """Fewer rows than this in the window: no report (too little evidence)."""
    interval_seconds: float = Field(default=300.0, ge=0)
    """Seconds between scheduled runs; 0 runs on demand only."""
    column_p_value: float = Field(default=COLUMN_P_VALUE, gt=0, lt=1)
    """A column drifts when its test's p-value is below this."""
    drift_share: float = Field(default=DATASET_DRIFT_SHARE, gt=0, le=1)
    """The dataset drifts when at least this share of the 9 columns drift."""


class MonitorError(RuntimeError):
    """No report could be made now (no traffic, too few rows, no reference)."""


class DriftMetrics:
    """The drift gauges, registered once into a given registry (shareable by monitors)."""

    def __init__(self, registry: CollectorRegistry):
        self.dataset_drift = Gauge(
            "housing_drift_dataset_drift",
            "1 when the latest drift run flagged dataset drift, else 0",
            ["model"],
            registry=registry,
        )
        self.share = Gauge(
            "housing_drift_share",
            "Share of the 9 feature columns flagged as drifted in the latest run",
            ["model"],
            registry=registry,
        )
        self.feature_score = Gauge(
            "housing_drift_feature_score",
            "Per-feature drift test p-value in the latest run (low means drift)",
            ["model", "feature"],
            registry=registry,
        )
        self.feature_drift = Gauge(
            "housing_drift_feature_drift",
            "1 when the feature drifted in the latest run, else 0",
            ["model", "feature"],
            registry=registry,
        )
        self.window_rows = Gauge(
            "housing_drift_window_rows",
            "Rows of current traffic compared in the latest run",
            ["model"],
            registry=registry,
        )
        self.version = Gauge(
            "housing_drift_model_version",
            "Model version whose reference the latest run used",
            ["model"],
            registry=registry,
        )
        self.last_run = Gauge(
            "housing_drift_last_run_timestamp_seconds",
            "Unix time of the latest successful drift run",
            ["model"],
            registry=registry,
        )
        self.runs = Counter(
            "housing_drift_runs",
            "Drift runs by outcome (ok, skipped: too little data or no reference, error)",
            ["model", "outcome"],
            registry=registry,
        )

    def record(self, model: str, summary: dict[str, Any], when: float) -> None:
        self.dataset_drift.labels(model).set(1 if summary["dataset_drift"] else 0)
        self.share.labels(model).set(summary["drift_share"])
        for feature in FEATURES:  # bounded label set: the 9 schema features only
            column = summary["columns"][feature]
            self.feature_score.labels(model, feature).set(column["score"])
            self.feature_drift.labels(model, feature).set(1 if column["drift_detected"] else 0)
        self.window_rows.labels(model).set(summary["current"]["rows"])
        self.version.labels(model).set(summary["monitor"]["version"])
        self.last_run.labels(model).set(when)


class DriftMonitor:
    """Runs drift reports on a schedule and on demand; keeps the latest JSON and HTML."""

    def __init__(
        self,
        settings: MonitorSettings,
        registry: CollectorRegistry | None = None,
        metrics: DriftMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ):
        if metrics is None:
            if registry is None:
                raise ValueError("DriftMonitor needs a CollectorRegistry or DriftMetrics")
            metrics = DriftMetrics(registry)
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.config = DriftConfig(
            column_threshold=settings.column_p_value,
            drift_share=settings.drift_share,
            min_rows=settings.min_rows,
        )
        self.latest: dict[str, Any] | None = None
        self.latest_html: str | None = None
        self.last_error: str | None = None
        self._run_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._references: dict[int, Any] = {}

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the schedule (no-op when ``interval_seconds`` is 0 or already started)."""
        if self.settings.interval_seconds <= 0 or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="drift-monitor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the schedule; waits for a run in progress (bounded by ``timeout``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except MonitorError:
                pass  # recorded in last_error and the runs counter
            except Exception:
                log.exception("drift run failed")
            self._stop.wait(self.settings.interval_seconds)

    # ---- one run -----------------------------------------------------------------------

    def run_once(self) -> dict[str, Any]:
        """Compare the current window with its reference now; returns the drift.json dict."""
        model = self.settings.model
        with self._run_lock:
            try:
                result = self._compare()
            except (MonitorError, DriftInputError) as exc:
                self.last_error = str(exc)
                self.metrics.runs.labels(model, "skipped").inc()
                raise MonitorError(str(exc)) from exc
            except Exception as exc:
                self.last_error = f"drift run failed: {exc}"
                self.metrics.runs.labels(model, "error").inc()
                raise
            now = self.clock()
            self.latest = result.summary
            self.latest_html = result.html()
            self.last_error = None
            self.metrics.record(model, result.summary, now)
            self.metrics.runs.labels(model, "ok").inc()
            return result.summary

    def _compare(self) -> DriftResult:
        from service.monitoring.drift import compare
        from service.prediction_log import read_window

        s = self.settings
        until = self.clock()
        since = until - s.window_seconds
        if not s.log_path.exists():
            raise MonitorError(f"no prediction log at {s.log_path} yet")
        window = read_window(s.log_path, since=since, until=until, model=s.model, limit=s.max_rows)
        if window.empty:
            raise MonitorError(
                f"no predictions of model {s.model} in the last {s.window_seconds:g} s"
            )
        version = self._served_version(window)
        if window["version"].notna().any():
            window = window[window["version"] == version]
        if len(window) < s.min_rows:
            raise MonitorError(
                f"only {len(window)} predictions of {s.model} version {version} in the last "
                f"{s.window_seconds:g} s; a drift report needs at least {s.min_rows}"
            )
        reference = self._reference(version)
        result = compare(
            reference,
            window,
            self.config,
            reference_info={"source": f"{s.model}:{version}", "model": s.model, "version": version},
            current_info={
                "source": f"log:{s.log_path}",
                "since": float(window["ts"].min()),
                "until": float(window["ts"].max()),
            },
        )
        result.summary["monitor"] = {
            "model": s.model,
            "version": version,
            "window_seconds": s.window_seconds,
            "max_rows": s.max_rows,
            "ran_at": until,
        }
        return result

    def _served_version(self, window) -> int:
        """The version that served the newest logged row (else the repository's latest)."""
        versions = window["version"].dropna()
        if not versions.empty:
            return int(versions.iloc[-1])
        from training.repository import ModelRepository

        latest = ModelRepository(self.settings.models_dir).latest_version(self.settings.model)
        if latest is None:
            raise MonitorError(
                f"no versions of {self.settings.model} in {self.settings.models_dir}"
            )
        return latest

    def _reference(self, version: int):
        if version not in self._references:
            from training.reference import REFERENCE_NAME, read_reference

            version_dir = self.settings.models_dir / self.settings.model / str(version)
            if not (version_dir / REFERENCE_NAME).is_file():
                raise MonitorError(f"no {REFERENCE_NAME} in {version_dir}")
            self._references[version] = read_reference(version_dir)
        return self._references[version]

    def status(self) -> dict[str, Any]:
        """What the routes say before the first report (or after a skipped run)."""
        return {
            "model": self.settings.model,
            "running": self._thread is not None,
            "interval_seconds": self.settings.interval_seconds,
            "last_error": self.last_error,
            "has_report": self.latest is not None,
        }
