"""``housing monitor drift|performance|simulate-drift``: drift reports, live RMSE, demo traffic."""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from core.errors import UserError
from core.settings import shared
from pipelines.common import add_models_dir

LOG_PREFIX = "log:"
LOG_KEYS = {"since", "until", "limit", "model", "version"}
DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

CURRENT_HELP = """\
current data: a CSV or Parquet FILE, or a prediction-log window
log:PATH[?since=T&until=T&limit=N&model=NAME&version=V] where PATH is the gateway's
SQLite prediction log and T is a duration back from now (30m, 1h, 2d), Unix seconds or an
ISO-8601 time; limit keeps the newest N rows. Example: 'log:logs/predictions.sqlite3?since=1h'"""
REFERENCE_HELP = """\
reference data: a CSV or Parquet FILE, or MODEL[:VERSION] for the reference.parquet saved
with that model version in --models-dir (e.g. housing_sklearn:3; no version: the version
served by default, i.e. the stable label, else the latest)"""


def register(subparsers: argparse._SubParsersAction) -> None:
    drift = subparsers.add_parser(
        "drift",
        help="Evidently data drift report: writes drift.json, drift.html and drift.png",
        description=(
            "Compare current data with a reference on the 9 features (Evidently "
            "DataDriftPreset: K-S for the 8 numbers, chi-square homogeneity for "
            "ocean_proximity; a column drifts at p < --column-p-value, the dataset when at "
            "least --drift-share of the columns do). Exit 0, or 1 with --fail-on-drift "
            "when drift is found; 2 on bad input."
        ),
    )
    drift.add_argument(
        "--reference", required=True, metavar="FILE|MODEL[:VERSION]", help=REFERENCE_HELP
    )
    drift.add_argument("--current", required=True, metavar="FILE|log:PATH[?...]", help=CURRENT_HELP)
    drift.add_argument(
        "--output-dir",
        required=True,
        type=Path,
        help="folder for drift.json, drift.html and drift.png (per-feature p-values)",
    )
    drift.add_argument(
        "--fail-on-drift", action="store_true", help="exit 1 when dataset drift is detected"
    )
    add_models_dir(drift)
    drift.add_argument(
        "--column-p-value",
        type=float,
        default=None,
        help="a column drifts when its test's p-value is below this (default: 0.0001)",
    )
    drift.add_argument(
        "--drift-share",
        type=float,
        default=None,
        help="dataset drift when at least this share of columns drift (default: 0.1, i.e. any)",
    )
    drift.add_argument(
        "--min-rows",
        type=int,
        default=None,
        help="refuse samples with fewer rows than this (default: 30)",
    )
    drift.set_defaults(func=run_drift)

    perf = subparsers.add_parser(
        "performance",
        help="join delayed ground-truth labels to the prediction log: RMSE by version and window",
        description=(
            "Labels: CSV or Parquet with request_id and median_house_value (and instance, "
            "the 0-based position, for multi-instance requests). Prints RMSE/MAE per model "
            "version (Evidently regression metrics) and per time window."
        ),
    )
    perf.add_argument("--labels", required=True, type=Path, help="ground-truth labels file")
    default_log = shared().prediction_log_path
    perf.add_argument(
        "--log",
        default=default_log,
        type=Path,
        help=f"prediction log (default: $HOUSING_PREDICTION_LOG_PATH or {default_log})",
    )
    perf.add_argument(
        "--window", default="1h", help="time window for the per-window RMSE, e.g. 30m, 1h, 1d"
    )
    perf.add_argument("--model", default=None, help="only this model's predictions")
    perf.add_argument("--output", type=Path, default=None, help="also write the report as JSON")
    perf.set_defaults(func=run_performance)

    sim = subparsers.add_parser(
        "simulate-drift",
        help="send shifted test-split traffic through the gateway, then ask for a drift report",
        description=(
            "POST test-split rows to the gateway's predict API in batches: 'income' multiplies "
            "median_income by 1.5, 'ocean' resamples the ocean_proximity mix to ~60%% INLAND, "
            "'both' does both, 'none' sends unshifted rows. Then POST "
            "/v1/monitoring/drift:run and print the drift flag."
        ),
    )
    sim.add_argument(
        "--gateway", required=True, help="gateway base URL, e.g. http://127.0.0.1:8000"
    )
    sim.add_argument("--requests", type=int, default=50, help="HTTP requests to send (1-10000)")
    sim.add_argument("--batch", type=int, default=10, help="instances per request (1-1000)")
    sim.add_argument("--shift", choices=["income", "ocean", "both", "none"], default="both")
    sim.add_argument("--model", default=None, help="model name (default: the gateway's default)")
    sim.add_argument("--seed", type=int, default=0, help="random seed for the rows")
    sim.add_argument(
        "--api-key-env",
        default="HOUSING_API_KEY",
        help="environment variable holding the gateway API key, if it needs one "
        "(keys stay off the command line; default: HOUSING_API_KEY)",
    )
    sim.add_argument("--no-report", action="store_true", help="do not trigger a drift report")
    sim.set_defaults(func=run_simulate)


# ---- argument parsing ----------------------------------------------------------------------


def parse_time(value: str, now: float) -> float:
    """A duration back from now (``90s``, ``30m``, ``1h``, ``2d``), Unix seconds or ISO-8601."""
    match = DURATION.match(value)
    if match:
        return now - float(match.group(1)) * UNIT_SECONDS[match.group(2)]
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise UserError(
            f"bad time {value!r}: use a duration (30m, 1h), Unix seconds or ISO-8601"
        ) from None


def parse_duration(value: str) -> float:
    match = DURATION.match(value)
    if not match or float(match.group(1)) <= 0:
        raise UserError(f"bad duration {value!r}: use e.g. 90s, 30m, 1h, 1d")
    return float(match.group(1)) * UNIT_SECONDS[match.group(2)]


def parse_log_spec(spec: str, now: float) -> tuple[Path, dict[str, Any]]:
    """``log:PATH?since=..&limit=..`` -> (path, read_window keyword arguments + version)."""
    body = spec[len(LOG_PREFIX) :]
    path_text, _, query = body.partition("?")
    if not path_text:
        raise UserError(f"--current {spec!r}: give the log path, e.g. log:logs/predictions.sqlite3")
    options: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if key not in LOG_KEYS:
            raise UserError(
                f"--current: unknown option {key!r} (use {', '.join(sorted(LOG_KEYS))})"
            )
        if key in {"since", "until"}:
            options[key] = parse_time(value, now)
        elif key in {"limit", "version"}:
            if not value.isdigit() or int(value) <= 0:
                raise UserError(f"--current: {key} must be a positive integer, got {value!r}")
            options[key] = int(value)
        else:
            options[key] = value
    return Path(path_text), options


def read_table(path: Path, what: str):
    import pandas as pd

    if not path.is_file():
        raise UserError(f"{what} file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in {".parquet", ".pq"}:
            return pd.read_parquet(path)
        if suffix in {".csv", ".gz", ".txt"}:
            return pd.read_csv(path)
    except Exception as exc:
        raise UserError(f"cannot read {what} {path}: {exc}".splitlines()[0]) from None
    raise UserError(f"{what} {path}: unsupported format (use .csv or .parquet)")


def load_reference(spec: str, models_dir: Path | None):
    """A file, or the reference.parquet of MODEL[:VERSION]; returns (frame, description)."""
    path = Path(spec)
    if path.is_file() or path.suffix.lower() in {".csv", ".parquet", ".pq"}:
        return read_table(path, "reference"), {"source": str(path)}
    from training.reference import REFERENCE_NAME, read_reference
    from training.repository import ModelRepository

    name, _, version_text = spec.partition(":")
    repo = ModelRepository(models_dir)
    if not repo.model_dir(name).is_dir():
        raise UserError(f"--reference {spec!r} is neither a file nor a model in {repo.root}")
    if version_text:
        if not version_text.isdigit():
            raise UserError(f"--reference {spec!r}: version must be an integer")
        version = int(version_text)
        if version not in repo.versions(name):
            raise UserError(f"--reference: {name} has no version {version} in {repo.root}")
    else:
        served = repo.default_version(name)  # what a request naming no version gets
        if served is None:
            raise UserError(f"--reference: {name} has no served version in {repo.root}")
        version = served
    version_dir = repo.version_dir(name, version)
    if not (version_dir / REFERENCE_NAME).is_file():
        raise UserError(f"--reference: no {REFERENCE_NAME} in {version_dir}")
    return read_reference(version_dir), {
        "source": f"{name}:{version}",
        "model": name,
        "version": version,
    }


def load_current(spec: str):
    """A file, or a prediction-log window; returns (frame, description)."""
    if not spec.startswith(LOG_PREFIX):
        return read_table(Path(spec), "current"), {"source": spec}
    from service.prediction_log import read_window

    path, options = parse_log_spec(spec, time.time())
    if not path.is_file():
        raise UserError(f"prediction log not found: {path}")
    version = options.pop("version", None)
    frame = read_window(path, **options)
    if version is not None:
        frame = frame[frame["version"] == version]
    if frame.empty:
        raise UserError(f"--current {spec!r}: the prediction-log window is empty")
    described = {k: v for k, v in options.items()}
    return frame, {"source": spec, **described, **({"version": version} if version else {})}


# ---- handlers ---------------------------------------------------------------------------


def run_drift(args: argparse.Namespace) -> int:
    from pipelines import figures
    from service.monitoring.drift import DriftConfig, compare

    reference, ref_info = load_reference(args.reference, args.models_dir)
    current, cur_info = load_current(args.current)
    defaults = DriftConfig()
    config = DriftConfig(
        column_threshold=defaults.column_threshold
        if args.column_p_value is None
        else _fraction(args.column_p_value, "--column-p-value"),
        drift_share=defaults.drift_share
        if args.drift_share is None
        else _fraction(args.drift_share, "--drift-share"),
        min_rows=defaults.min_rows if args.min_rows is None else max(2, args.min_rows),
    )
    result = compare(reference, current, config, ref_info, cur_info)
    json_path, html_path = result.save(args.output_dir)
    png_path = args.output_dir / "drift.png"
    png_path.write_bytes(figures.png_bytes(p_value_figure(result.summary)))
    summary = result.summary
    drifted = [name for name, col in summary["columns"].items() if col["drift_detected"]]
    print(
        f"dataset drift: {'YES' if summary['dataset_drift'] else 'no'} "
        f"({summary['drifted_columns']}/{summary['number_of_columns']} columns"
        f"{': ' + ', '.join(drifted) if drifted else ''}; "
        f"{summary['reference']['rows']} reference vs {summary['current']['rows']} current rows)"
    )
    print(f"wrote {json_path}, {html_path} and {png_path}")
    return 1 if args.fail_on_drift and summary["dataset_drift"] else 0


def p_value_figure(summary: dict[str, Any]):
    """Each feature's drift test as -log10(p-value), drifted ones red, the cut-off dashed."""
    import math

    from pipelines import figures

    columns = summary["columns"]
    names = list(columns)[::-1]
    strength = [-math.log10(max(columns[n]["score"], 1e-300)) for n in names]
    colours = ["#c44e52" if columns[n]["drift_detected"] else "#4c72b0" for n in names]
    figure = figures.new_figure(7, 4)
    ax = figure.subplots()
    ax.barh(names, strength, color=colours)
    cut = -math.log10(summary["thresholds"]["column_p_value"])
    ax.axvline(cut, color="black", linestyle="--", linewidth=1, label=f"p = {10**-cut:g}")
    ax.set_xlabel("-log10(p-value) of the drift test (longer: stronger evidence)")
    ax.set_title(
        f"Drift: {summary['drifted_columns']} of {summary['number_of_columns']} features "
        f"({summary['current']['rows']} rows vs {summary['reference']['rows']} reference)"
    )
    ax.legend(loc="lower right")
    return figure


def _fraction(value: float, flag: str) -> float:
    if not 0 < value <= 1:
        raise UserError(f"{flag} must be in (0, 1], got {value}")
    return value


def run_performance(args: argparse.Namespace) -> int:
    from service.monitoring.performance import performance, read_labels
    from service.prediction_log import read_window

    window = parse_duration(args.window)
    labels = read_labels(args.labels)
    if not args.log.is_file():
        raise UserError(f"prediction log not found: {args.log}")
    log = read_window(args.log, model=args.model)
    if log.empty:
        raise UserError(f"prediction log {args.log} has no predictions")
    report = performance(log, labels, window)
    if report["joined_rows"] == 0:
        raise UserError(
            f"no label matches a logged request_id ({report['labels']} labels, "
            f"{report['logged_rows']} logged predictions)"
        )
    print(
        f"joined {report['joined_rows']} of {report['labels']} labels to "
        f"{report['logged_rows']} logged predictions"
    )
    for row in report["by_version"]:
        print(
            f"{row['model']} v{row['version']}: rows={row['rows']} rmse={row['rmse']:,.0f} "
            f"mae={row['mae']:,.0f} (evidently: {row['evidently']})"
        )
    for row in report["by_window"]:
        start = datetime.fromtimestamp(row["window_start"]).isoformat(timespec="seconds")
        print(
            f"  {start} {row['model']} v{row['version']}: "
            f"rows={row['rows']} rmse={row['rmse']:,.0f}"
        )
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.output}")
    return 0


def run_simulate(args: argparse.Namespace) -> int:
    import httpx

    from core import console
    from service.monitoring.simulate import send, shifted_rows, trigger_report
    from training.data import load_split

    if not 1 <= args.requests <= 10_000:
        raise UserError("--requests must be between 1 and 10000")
    if not 1 <= args.batch <= 1000:
        raise UserError("--batch must be between 1 and 1000")
    frame = shifted_rows(load_split().test, args.requests * args.batch, args.shift, args.seed)
    api_key = os.environ.get(args.api_key_env)
    headers = {"x-api-key": api_key} if api_key else {}
    # The report compares exactly this run's rows: older traffic in the log (an earlier
    # shifted run, real users) would otherwise decide the flag.
    started = time.time()
    try:
        with httpx.Client(base_url=args.gateway, timeout=30, headers=headers) as client:
            with console.bar(total=len(frame), unit="row", desc="simulate-drift") as bar:
                codes = send(client, frame, args.model, args.batch, bar.update)
            print(f"sent {len(frame)} rows in {args.requests} requests: status codes {codes}")
            if args.no_report:
                return 0
            report = trigger_report(client, args.model, since=started)
    except httpx.HTTPError as exc:
        raise UserError(f"gateway {args.gateway}: {exc}") from None
    if report is None or "dataset_drift" not in report:
        print(f"no drift report: {report}")
        return 0
    drifted = [n for n, c in report["columns"].items() if c["drift_detected"]]
    window = report["window"]
    print(
        f"dataset drift: {'YES' if report['dataset_drift'] else 'no'} "
        f"(drifted columns: {', '.join(drifted) or 'none'}); window: {window['model']} "
        f"version {window['version']}, {window['rows_compared']} rows from "
        f"{window['since_iso']} to {window['until_iso']}"
    )
    return 0
