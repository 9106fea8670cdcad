"""The gateway's drift monitor: windows of the prediction log vs the served version's reference.

Use from the gateway::

    monitor = DriftMonitor(MonitorSettings(log_path=..., models=[...]), registry)
    monitor.start()     # gauges published now; a round every ``interval_seconds`` (0: none)
    monitor.run_once(model, since=..., until=...)   # on demand; the drift.json dict
    monitor.latest(model), monitor.history.listing(model, 20)
    monitor.stop()

What a report compares is explicit and written into it (``window``): the rows of one
model logged in [since, until) (default: the last ``window_seconds``), at most the newest
``max_rows`` (``truncated`` says when more were there), served by the model's default
version (``ModelRepository.default_version``: the ``stable`` label, else the highest served
version), against that version's ``reference.parquet``; rows other versions served (a
canary) are left out and counted.

Every model in ``models`` is watched. Several gateway workers share one monitor: the worker
holding ``leader.lock`` in the history folder runs the schedule (another takes over when it
dies), and a run, scheduled or on demand from any worker, holds ``run.lock``, so two never
overlap; a second request while one runs gets :class:`MonitorBusy`. Reports are files
(:class:`ReportHistory`), so every worker serves the same latest report and history.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.contract import FEATURES, KERAS_MODEL, SKLEARN_MODEL
from core.settings import DEFAULT_PREDICTION_LOG, default_models_dir
from service.metrics import MetricSet
from service.monitoring.drift import (
    COLUMN_P_VALUE,
    DATASET_DRIFT_SHARE,
    DriftConfig,
    DriftInputError,
    DriftResult,
)
from service.monitoring.history import ReportHistory
from service.monitoring.locks import FileLock

log = logging.getLogger(__name__)

HISTORY_DIR_NAME = "drift-reports"
OUTCOMES = ("ok", "skipped", "busy", "error")


class MonitorSettings(BaseSettings):
    """Drift monitor settings. Precedence: constructor arguments, then ``HOUSING_DRIFT_*``
    environment variables, then these defaults (``models_dir`` falls back to
    ``HOUSING_MODELS_DIR``)."""

    model_config = SettingsConfigDict(
        env_prefix="HOUSING_DRIFT_", protected_namespaces=(), use_attribute_docstrings=True
    )

    log_path: Path = Path(DEFAULT_PREDICTION_LOG)
    """The prediction log (SQLite) the gateway writes."""
    models_dir: Path = Field(default_factory=default_models_dir)
    """Model repository holding ``<model>/<version>/reference.parquet``."""
    models: list[str] = Field(default_factory=lambda: [SKLEARN_MODEL, KERAS_MODEL], min_length=1)
    """Every model whose traffic is watched (the gateway passes its routed models)."""
    window_seconds: float = Field(default=3600.0, gt=0)
    """A scheduled report compares the last this many seconds of traffic."""
    max_rows: int = Field(default=5000, gt=0)
    """At most this many of the newest predictions in a window."""
    min_rows: int = Field(default=200, ge=30)
    """Fewer rows than this in the window: no report (too little evidence)."""
    interval_seconds: float = Field(default=300.0, ge=0)
    """Seconds between scheduled runs; 0 runs on demand only."""
    history_dir: Path | None = None
    """Where reports are kept (default: ``drift-reports/`` next to the prediction log)."""
    history_keep: int = Field(default=500, ge=1)
    """Reports kept per model (the oldest are deleted)."""
    labels_path: Path | None = None
    """Delayed ground truth (CSV/Parquet: request_id, median_house_value[, instance]): when
    set, each scheduled round also publishes the live RMSE per model version."""
    column_p_value: float = Field(default=COLUMN_P_VALUE, gt=0, lt=1)
    """A column drifts when its test's p-value is below this."""
    drift_share: float = Field(default=DATASET_DRIFT_SHARE, gt=0, le=1)
    """The dataset drifts when at least this share of the 9 columns drift."""

    def history_root(self) -> Path:
        return self.history_dir or self.log_path.parent / HISTORY_DIR_NAME


class MonitorError(RuntimeError):
    """No report could be made now (no traffic, too few rows, no reference)."""


class MonitorBusy(MonitorError):
    """Another drift run (in this or another gateway worker) is in progress."""


class DriftMetrics(MetricSet):
    """The drift gauges, registered once into a given registry (shareable by monitors).

    With several gateway workers (prometheus multiprocess mode) a gauge shows the value
    most recently set by a live worker: the one that ran the latest report.
    """

    def __init__(self, registry: CollectorRegistry):
        super().__init__("housing_", registry)

        def gauge(name: str, doc: str, labels: list[str]) -> Gauge:
            return self.gauge(name, doc, labels, multiprocess_mode="livemostrecent")

        self.dataset_drift = gauge(
            "drift_dataset_drift",
            "1 when the latest drift run flagged dataset drift, 0 when not, NaN before one",
            ["model"],
        )
        self.share = gauge(
            "drift_share",
            "Share of the 9 feature columns flagged as drifted in the latest run",
            ["model"],
        )
        self.feature_score = gauge(
            "drift_feature_score",
            "Per-feature drift test p-value in the latest run (low means drift)",
            ["model", "feature"],
        )
        self.feature_drift = gauge(
            "drift_feature_drift",
            "1 when the feature drifted in the latest run, else 0",
            ["model", "feature"],
        )
        self.window_rows = gauge(
            "drift_window_rows",
            "Rows of current traffic compared in the latest run",
            ["model"],
        )
        self.window_seconds = gauge(
            "drift_window_seconds",
            "Length of the time window the latest run compared",
            ["model"],
        )
        self.version = gauge(
            "drift_model_version",
            "Model version whose reference the latest run used",
            ["model"],
        )
        self.last_run = gauge(
            "drift_last_run_timestamp_seconds",
            "Unix time of the latest successful drift run",
            ["model"],
        )
        self.live_rmse = gauge(
            "live_rmse_usd",
            "RMSE of logged predictions that have a delayed label, by served version",
            ["model", "version"],
        )
        self.live_labelled = gauge(
            "live_labelled_predictions",
            "Logged predictions joined to a delayed label, by served version",
            ["model", "version"],
        )
        self.runs = self.counter(
            "drift_runs",
            "Drift runs by outcome (ok; skipped: too little data or no reference; busy: "
            "another run was in progress; error)",
            ["model", "outcome"],
        )

    def publish_empty(self, model: str) -> None:
        """Every series exists from start-up: NaN until a first report, counters at 0."""
        nan = math.nan
        for g in (self.dataset_drift, self.share, self.version, self.window_seconds, self.last_run):
            g.labels(model).set(nan)
        self.window_rows.labels(model).set(0)
        for feature in FEATURES:
            self.feature_score.labels(model, feature).set(nan)
            self.feature_drift.labels(model, feature).set(nan)
        for outcome in OUTCOMES:
            self.runs.labels(model, outcome)

    def record(self, model: str, summary: dict[str, Any], when: float) -> None:
        self.dataset_drift.labels(model).set(1 if summary["dataset_drift"] else 0)
        self.share.labels(model).set(summary["drift_share"])
        for feature in FEATURES:  # bounded label set: the 9 schema features only
            column = summary["columns"][feature]
            self.feature_score.labels(model, feature).set(column["score"])
            self.feature_drift.labels(model, feature).set(1 if column["drift_detected"] else 0)
        window = summary["window"]
        self.window_rows.labels(model).set(window["rows_compared"])
        self.window_seconds.labels(model).set(window["until"] - window["since"])
        self.version.labels(model).set(window["version"])
        self.last_run.labels(model).set(when)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


class DriftMonitor:
    """Runs drift reports on a schedule and on demand, for every watched model."""

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
        root = settings.history_root()
        self.history = ReportHistory(root, settings.history_keep)
        self.leader = FileLock(root / "leader.lock")
        self.last_error: dict[str, str | None] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._references: dict[tuple[str, int], Any] = {}

    @property
    def models(self) -> list[str]:
        return list(self.settings.models)

    # ---- lifecycle ---------------------------------------------------------------------

    def publish(self) -> None:
        """Gauges for every model: the latest kept report's values, else NaN."""
        for model in self.models:
            self.metrics.publish_empty(model)
            latest = self.history.latest(model)
            if latest is not None and "window" in latest[1]:
                self.metrics.record(model, latest[1], latest[1]["window"]["ran_at"])

    def start(self) -> None:
        """Publish the gauges; start the schedule (unless ``interval_seconds`` is 0)."""
        self.publish()
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
        self.leader.release()

    def _loop(self) -> None:
        # The first round comes one interval after start-up: a fresh gateway has no traffic
        # to compare yet, and the kept reports' gauges are already published.
        self.leader.try_acquire()
        while not self._stop.wait(self.settings.interval_seconds):
            if self.leader.try_acquire():
                self.run_all()

    def run_all(self) -> dict[str, Any]:
        """One scheduled round: every model's report, or why there is none; then the live
        RMSE when labels are configured."""
        out: dict[str, Any] = {}
        for model in self.models:
            try:
                out[model] = self.run_once(model)
            except MonitorError as exc:
                out[model] = str(exc)  # recorded in last_error and the runs counter
            except Exception as exc:
                log.exception("drift run for %s failed", model)
                out[model] = str(exc)
        if self.settings.labels_path is not None:
            try:
                self.publish_live_rmse()
            except Exception:
                log.exception("live RMSE from %s failed", self.settings.labels_path)
        return out

    def publish_live_rmse(self) -> list[dict[str, Any]]:
        """Join the labels to the log; set the live RMSE gauges; return the per-version rows."""
        from service.monitoring.performance import join, read_labels, version_errors
        from service.prediction_log import read_window

        labels_path, log_path = self.settings.labels_path, self.settings.log_path
        if labels_path is None or not labels_path.is_file() or not log_path.is_file():
            return []
        rows = version_errors(join(read_window(log_path), read_labels(labels_path)))
        for row in rows:
            if row["model"] in self.models:
                version = "" if row["version"] is None else str(row["version"])
                self.metrics.live_rmse.labels(row["model"], version).set(row["rmse"])
                self.metrics.live_labelled.labels(row["model"], version).set(row["rows"])
        return rows

    # ---- one run -----------------------------------------------------------------------

    def run_once(
        self, model: str | None = None, since: float | None = None, until: float | None = None
    ) -> dict[str, Any]:
        """Compare ``model``'s traffic in [since, until) (default: the last window_seconds)
        with its served version's reference now; returns the drift.json dict."""
        model = model or self.models[0]
        if model not in self.models:
            raise MonitorError(f"model {model!r} is not watched; models: {', '.join(self.models)}")
        run_lock = FileLock(self.history.root / "run.lock")
        if not run_lock.try_acquire():
            self.metrics.runs.labels(model, "busy").inc()
            raise MonitorBusy("a drift run is in progress; try again when it has finished")
        try:
            now = self.clock()
            until = now if until is None else until
            since = until - self.settings.window_seconds if since is None else since
            if not since < until:
                raise MonitorError(f"empty window: since ({since}) must be before until ({until})")
            result = self._compare(model, since, until, now)
            self.history.save(model, result, now)
        except (MonitorError, DriftInputError) as exc:
            self.last_error[model] = str(exc)
            self.metrics.runs.labels(model, "skipped").inc()
            raise MonitorError(str(exc)) from exc
        except Exception as exc:
            self.last_error[model] = f"drift run failed: {exc}"
            self.metrics.runs.labels(model, "error").inc()
            raise
        finally:
            run_lock.release()
        self.last_error[model] = None
        self.metrics.record(model, result.summary, now)
        self.metrics.runs.labels(model, "ok").inc()
        return result.summary

    def _compare(self, model: str, since: float, until: float, now: float) -> DriftResult:
        from service.monitoring.drift import compare
        from service.prediction_log import read_window

        s = self.settings
        span = f"{_iso(since)} to {_iso(until)}"
        if not s.log_path.exists():
            raise MonitorError(f"no prediction log at {s.log_path} yet")
        rows = read_window(s.log_path, since=since, until=until, model=model, limit=s.max_rows + 1)
        truncated = len(rows) > s.max_rows
        rows = rows.iloc[1:] if truncated else rows  # newest max_rows kept (oldest first)
        if rows.empty:
            raise MonitorError(f"no predictions of model {model} from {span}")
        version = self._default_version(model)
        logged_versions = rows["version"].notna()
        window = rows[rows["version"] == version] if logged_versions.any() else rows
        if len(window) < s.min_rows:
            raise MonitorError(
                f"only {len(window)} predictions of {model} version {version} from {span}; "
                f"a drift report needs at least {s.min_rows}"
            )
        described = {
            "model": model,
            "version": version,
            "since": since,
            "until": until,
            "since_iso": _iso(since),
            "until_iso": _iso(until),
            "max_rows": s.max_rows,
            "truncated": truncated,
            "rows_compared": int(len(window)),
            "rows_other_versions": int(len(rows) - len(window)),
            "first_row_ts": float(window["ts"].min()),
            "last_row_ts": float(window["ts"].max()),
            "ran_at": now,
        }
        result = compare(
            self._reference(model, version),
            window,
            self.config,
            reference_info={"source": f"{model}:{version}", "model": model, "version": version},
            current_info={"source": f"log:{s.log_path}", "since": since, "until": until},
        )
        result.summary["window"] = described
        return result

    def _default_version(self, model: str) -> int:
        """The version served when a request names none: its traffic and reference are
        what the report compares."""
        from training.repository import ModelRepository, RepositoryError

        try:
            version = ModelRepository(self.settings.models_dir).default_version(model)
        except RepositoryError as exc:
            raise MonitorError(str(exc)) from exc
        if version is None:
            raise MonitorError(f"no served version of {model} in {self.settings.models_dir}")
        return version

    def _reference(self, model: str, version: int) -> Any:
        key = (model, version)
        if key not in self._references:
            from training.reference import REFERENCE_NAME, read_reference

            version_dir = self.settings.models_dir / model / str(version)
            if not (version_dir / REFERENCE_NAME).is_file():
                raise MonitorError(f"no {REFERENCE_NAME} in {version_dir}")
            self._references[key] = read_reference(version_dir)
        return self._references[key]

    # ---- what the routes read ----------------------------------------------------------

    def latest(self, model: str) -> dict[str, Any] | None:
        found = self.history.latest(model)
        return None if found is None else found[1]

    def latest_html(self, model: str) -> str | None:
        found = self.history.latest(model)
        path = None if found is None else self.history.path(model, found[0], "html")
        return None if path is None else path.read_text()

    def status(self, model: str) -> dict[str, Any]:
        """What the routes say before the first report (or after a skipped run)."""
        return {
            "model": model,
            "models": self.models,
            "scheduled": self._thread is not None,
            "interval_seconds": self.settings.interval_seconds,
            "window_seconds": self.settings.window_seconds,
            "leader": self.leader.held,
            "last_error": self.last_error.get(model),
            "reports": len(self.history.ids(model)),
        }
