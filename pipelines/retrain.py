"""``housing pipeline retrain``: validate fresh data, train a candidate, compare, promote.

Steps (each recorded in the results JSON and a Markdown report):
1. validate the new data, stop before training if it fails; drift of its features against
   the current training data;
2. train a candidate with the production configuration on the new data (rows identical to
   the book's test split are removed so the held-out set stays held out);
3. evaluate candidate and production on the same held-out data: the book's test split,
   plus fresh labelled data when given, with confidence intervals;
4. publish the candidate (never auto-served: the served versions are pinned first) and
   move ``stable`` to it only if its RMSE is not worse than production's by more than the
   tolerance; otherwise label it ``candidate`` and say why.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import pandas as pd

from core.errors import UserError
from pipelines.common import DEFAULT_RUNS_DIR, run_dir, write_results

DEFAULT_TOLERANCE = 0.01  # relative RMSE increase still accepted (1 %)


def register(subparsers: argparse._SubParsersAction) -> None:
    from core.contract import KERAS_MODEL, SKLEARN_MODEL
    from pipelines.labels import add_repository_arguments

    parser = subparsers.add_parser(
        "retrain",
        help="validate new data, train a candidate, compare with production, promote or not",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data",
        required=True,
        help="labelled data with the housing columns: a CSV file or URL, or a housing.tgz",
    )
    parser.add_argument(
        "--model",
        choices=[SKLEARN_MODEL, KERAS_MODEL],
        default=SKLEARN_MODEL,
        help="which model to retrain (default: housing_sklearn)",
    )
    parser.add_argument(
        "--holdout",
        default=None,
        help="fresh labelled CSV evaluated together with the book's test split",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="promote when candidate RMSE <= production RMSE x (1 + tolerance) (default: 0.01)",
    )
    parser.add_argument(
        "--search",
        choices=["none", "grid", "random"],
        default="none",
        help="housing_sklearn: re-run the hyperparameter search instead of reusing the "
        "production configuration (default: none)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="housing_keras: epochs")
    parser.add_argument("--runs-dir", type=Path, default=None, help="where results go")
    add_repository_arguments(parser)
    parser.set_defaults(func=run_retrain)


def read_new_data(source: str) -> pd.DataFrame:
    """A CSV (path or URL) or a housing.tgz archive, parsed but not yet validated."""
    from training.data import DataError, extract_csv, read_source

    raw = read_source(source)
    if source.endswith((".tgz", ".tar.gz")):
        raw = extract_csv(raw)
    try:
        return pd.read_csv(io.BytesIO(raw))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot parse {source}: {exc}") from exc


def without_rows_of(frame: pd.DataFrame, excluded: pd.DataFrame) -> pd.DataFrame:
    """Drop rows of ``frame`` identical to a row of ``excluded`` (keeps the test set unseen)."""
    columns = list(excluded.columns)
    merged = frame.merge(
        excluded[columns].drop_duplicates(), how="left", on=columns, indicator=True
    )
    return frame[(merged["_merge"] == "left_only").to_numpy()].reset_index(drop=True)


def feature_drift(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, Any]:
    """Drift of the new data's features against the current training data (summary)."""
    from service.monitoring.drift import compare

    result = compare(reference, current).summary
    return {
        "dataset_drift": result["dataset_drift"],
        "drift_share": result["drift_share"],
        "drifted_columns": sorted(c for c, v in result["columns"].items() if v["drift_detected"]),
    }


def evaluate(version_dir: Path, holdout: pd.DataFrame) -> dict[str, Any]:
    from core.contract import TARGET
    from training.evaluation import regression_report
    from training.inference import load_predictor

    predictions = load_predictor(version_dir)(holdout)
    return regression_report(holdout[TARGET], predictions)


def train_candidate(
    model: str, models_dir: Path, split, production: dict[str, Any] | None, args
) -> int:
    """Train on ``split.train`` with the production version's full configuration (the
    hyperparameters in its manifest; ``--epochs`` / ``--search`` override); return the new
    version."""
    from core.contract import SKLEARN_MODEL

    hyperparameters = (production or {}).get("hyperparameters", {})
    if model == SKLEARN_MODEL:
        from pipelines.train_sklearn import train_sklearn

        inherit = args.search == "none"
        result = train_sklearn(
            models_dir,
            search=args.search,
            split=split,
            model_type=hyperparameters.get("model_type") if inherit else None,
            params=hyperparameters.get("params") if inherit else None,
            pipeline_params=hyperparameters.get("pipeline_params") if inherit else None,
        )
    else:
        from pipelines.train_keras import train_keras

        result = train_keras(models_dir, split=split, **keras_configuration(hyperparameters, args))
    return int(result["version"])


def keras_configuration(hyperparameters: dict[str, Any], args) -> dict[str, Any]:
    """``train_keras`` options repeating a manifest's Keras hyperparameters."""
    from dataclasses import fields

    from training.keras_models import ModelConfig
    from training.keras_preprocessing import PreprocessingConfig

    options: dict[str, Any] = {}
    for name in ("arch", "epochs", "batch_size", "seed"):
        if name in hyperparameters:
            options[name] = hyperparameters[name]
    if args.epochs:
        options["epochs"] = args.epochs
    overrides = {
        f.name: hyperparameters[f.name]
        for f in fields(ModelConfig)
        if f.name in hyperparameters and f.name != "arch"
    }
    if isinstance(overrides.get("preprocessing"), dict):
        known = {f.name for f in fields(PreprocessingConfig)}
        settings = {k: v for k, v in overrides["preprocessing"].items() if k in known}
        if isinstance(settings.get("neighbours"), list):
            settings["neighbours"] = tuple(settings["neighbours"])
        overrides["preprocessing"] = PreprocessingConfig(**settings)
    if overrides:
        options["overrides"] = overrides
    return options


def decide(
    candidate_rmse: float, production_rmse: float | None, tolerance: float
) -> tuple[bool, str]:
    if production_rmse is None:
        return True, "no production version yet"
    limit = production_rmse * (1 + tolerance)
    if candidate_rmse <= limit:
        return True, (
            f"candidate RMSE {candidate_rmse:,.0f} <= production {production_rmse:,.0f} "
            f"x (1 + {tolerance:g}) = {limit:,.0f}"
        )
    return False, (
        f"candidate RMSE {candidate_rmse:,.0f} is worse than production {production_rmse:,.0f} "
        f"by more than the tolerance {tolerance:g} (limit {limit:,.0f})"
    )


def retrain(args: argparse.Namespace) -> dict[str, Any]:
    from core.contract import FEATURES
    from pipelines import promotion
    from pipelines.labels import server_watch
    from training.data import Split, load_csv, load_split, validate_frame
    from training.repository import ModelRepository
    from training.validation import validate_training_data

    repo = ModelRepository(args.models_dir)
    out = run_dir("retrain", args.runs_dir or DEFAULT_RUNS_DIR)
    results: dict[str, Any] = {"model": args.model, "data": args.data, "run_dir": str(out)}

    new_data = read_new_data(args.data)
    validation = validate_training_data(new_data)
    results["validation"] = validation.as_dict()
    if not validation.ok:
        results["status"] = "rejected: invalid data"
        finish(out, results)
        raise UserError(
            f"new data failed validation ({len(validation.errors)} problems, first: "
            f"{validation.errors[0]}); see {out / 'report.md'}"
        )
    new_data = validate_frame(new_data)
    book = load_split()
    results["drift"] = feature_drift(book.train[list(FEATURES)], new_data[list(FEATURES)])

    holdout = book.test
    if args.holdout:
        holdout = pd.concat([holdout, load_csv(args.holdout)[list(book.test.columns)]])
    train = without_rows_of(new_data[list(book.train.columns)], holdout)
    results["train_rows"] = int(len(train))
    results["holdout_rows"] = int(len(holdout))

    production, chosen_by = (
        repo.default_choice(args.model) if repo.versions(args.model) else (None, "no versions")
    )
    results["production_chosen_by"] = chosen_by
    if production is not None:
        promotion.pin_served(repo, args.model)
        if promotion.STABLE not in repo.labels(args.model):
            # Name what serves today, so a candidate that is loaded but not promoted
            # never becomes the default (TF Serving's default is the highest version).
            promotion.promote(repo, args.model, production, reason="baseline before retraining")
    production_manifest = repo.manifest(args.model, production) if production else None
    candidate = train_candidate(
        args.model,
        repo.root,
        Split(train=train, test=book.test, source=args.data),
        production_manifest,
        args,
    )
    promotion.audit(repo, "publish", args.model, version=candidate, source=args.data)

    results["candidate"] = {
        "version": candidate,
        "metrics": evaluate(repo.version_dir(args.model, candidate), holdout),
    }
    production_rmse = None
    if production is not None:
        metrics = evaluate(repo.version_dir(args.model, production), holdout)
        results["production"] = {"version": production, "metrics": metrics}
        production_rmse = metrics["test_rmse"]
    promote, reason = decide(
        results["candidate"]["metrics"]["test_rmse"], production_rmse, args.tolerance
    )
    label = promotion.STABLE if promote else promotion.CANDIDATE
    entry = promotion.promote(
        repo, args.model, candidate, label, watch=server_watch(args), reason=reason
    )
    results.update(
        status="promoted" if promote else "not promoted",
        label=label,
        reason=reason,
        applied=entry["applied"],
    )
    finish(out, results)
    return results


def finish(out: Path, results: dict[str, Any]) -> None:
    write_results(out / "results.json", results)
    (out / "report.md").write_text(markdown_report(results))


def markdown_report(results: dict[str, Any]) -> str:
    lines = [
        f"# Retraining {results['model']}",
        "",
        f"- data: `{results['data']}`",
        f"- status: **{results.get('status', 'running')}**",
    ]
    if results.get("reason"):
        lines.append(f"- why: {results['reason']}")
    validation = results.get("validation", {})
    lines += [
        "",
        "## Data validation",
        "",
        f"{validation.get('rows', 0):,} rows, " + ("passed" if validation.get("ok") else "FAILED"),
    ]
    lines += [f"- error: {e}" for e in validation.get("errors", [])]
    lines += [f"- warning: {w}" for w in validation.get("warnings", [])]
    if "production_chosen_by" in results:
        lines.append(f"- production version chosen by: {results['production_chosen_by']}")
    if "drift" in results:
        drift = results["drift"]
        lines += [
            "",
            "## Drift against the current training data",
            "",
            f"dataset drift: {drift['dataset_drift']}, share {drift['drift_share']:.2f}, "
            f"columns: {', '.join(drift['drifted_columns']) or 'none'}",
        ]
    rows = [(k, results[k]) for k in ("production", "candidate") if k in results]
    if rows:
        lines += [
            "",
            f"## Held-out evaluation ({results['holdout_rows']:,} rows)",
            "",
            "| | version | RMSE | 95% CI (t) | 95% CI (bootstrap) |",
            "|---|---|---|---|---|",
        ]
        for name, entry in rows:
            m = entry["metrics"]
            t_lo, t_hi = m["test_rmse_ci95_t"]
            b_lo, b_hi = m["test_rmse_ci95_bootstrap"]
            lines.append(
                f"| {name} | {entry['version']} | {m['test_rmse']:,.0f} | "
                f"{t_lo:,.0f}–{t_hi:,.0f} | {b_lo:,.0f}–{b_hi:,.0f} |"
            )
    return "\n".join(lines) + "\n"


def run_retrain(args: argparse.Namespace) -> int:
    if args.tolerance < 0:
        raise UserError("--tolerance must be 0 or more")
    results = retrain(args)
    summary = {k: results[k] for k in ("status", "label", "reason", "applied", "run_dir")}
    summary["candidate_version"] = results["candidate"]["version"]
    summary["production_version"] = results.get("production", {}).get("version")
    summary["production_chosen_by"] = results["production_chosen_by"]
    print(json.dumps(summary))
    return 0
