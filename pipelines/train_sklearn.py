"""``housing train sklearn``: train, evaluate on the book's test split, publish a version.

``--search none`` trains the configuration chosen by cross-validation (see
``training.sklearn_models.SELECTION``); ``grid``/``random`` run the book's forest searches
and publish the best forest; ``baselines`` and ``compare`` only cross-validate (the book's
10-fold table, and the comparison that chose the default) and publish nothing.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import console
from core.errors import UserError
from pipelines.common import add_models_dir, add_runs_dir, audit_publish, run_dir, write_results

PUBLISHING_SEARCHES = ("none", "grid", "random")
CV_ONLY_SEARCHES = ("baselines", "compare")
RUN_NAME = "train-sklearn"

if TYPE_CHECKING:
    from training.data import Split


def register(subparsers: argparse._SubParsersAction) -> None:
    from training.sklearn_models import DEFAULT_MODEL_TYPE, MODEL_TYPES

    parser = subparsers.add_parser(
        "sklearn",
        help="train a scikit-learn pipeline and publish the next housing_sklearn version",
        description=(
            "Train on the book's training split, score the book's test split (RMSE with t and "
            "bootstrap 95% CIs), and publish models/housing_sklearn/<next version>/ with "
            "model.joblib, manifest.json and reference.parquet."
        ),
    )
    parser.add_argument(
        "--search",
        choices=PUBLISHING_SEARCHES + CV_ONLY_SEARCHES,
        default="none",
        help=(
            "none: train the CV-selected configuration directly (about 2 minutes); "
            "grid / random: the book's GridSearchCV / RandomizedSearchCV (n_iter=10, cv=3) "
            "over the forest, then publish the best forest (tens of minutes); "
            "baselines: the book's 10-fold CV table (linear, tree, forest), publishes nothing; "
            "compare: the 5-fold CV comparison behind the default model, publishes nothing"
        ),
    )
    parser.add_argument(
        "--model-type",
        choices=sorted(MODEL_TYPES),
        default=DEFAULT_MODEL_TYPE,
        help=f"model for --search none (default: {DEFAULT_MODEL_TYPE}, the CV-selected one)",
    )
    add_models_dir(parser)
    parser.add_argument(
        "--sample",
        type=int,
        default=None,
        help="train on a random sample of N training rows (quick runs); the test split stays full",
    )
    parser.add_argument(
        "--n-jobs", type=int, default=-1, help="parallel jobs (default: -1, every core)"
    )
    parser.add_argument(
        "--no-compile",
        dest="compile_trees",
        action="store_false",
        help=(
            "skip the compiled trees (trees.so, built with gcc; the model server's fast form) "
            "and publish only the joblib pipeline"
        ),
    )
    add_runs_dir(parser, "train-sklearn")
    parser.set_defaults(func=run_train_sklearn)


def run_train_sklearn(args: argparse.Namespace) -> int:
    if args.sample is not None and args.sample < 100:
        raise UserError(f"--sample must be at least 100 rows, got {args.sample}")
    if args.search in CV_ONLY_SEARCHES:
        results = cross_validate(args.search, args.n_jobs, args.runs_dir)
        for name, row in results["models"].items():
            book = row.get("book_rmse_mean")
            versus = f"  (book {book:,.0f}, {row['relative_to_book']:+.1%})" if book else ""
            print(f"{name:>24}: CV RMSE {row['rmse_mean']:,.0f} ± {row['rmse_std']:,.0f}{versus}")
        print(f"results: {results['results_path']}")
        return 0
    results = train_sklearn(
        args.models_dir,
        search=args.search,
        sample=args.sample,
        n_jobs=args.n_jobs,
        runs_dir=args.runs_dir,
        model_type=args.model_type,
        compile_trees=args.compile_trees,
    )
    audit_publish(results, "housing train sklearn")
    metrics = results["metrics"]
    low, high = metrics["test_rmse_ci95_t"]
    boot_low, boot_high = metrics["test_rmse_ci95_bootstrap"]
    print(f"published {results['model']} version {results['version']} at {results['path']}")
    print(
        f"test RMSE {metrics['test_rmse']:,.0f} USD  95% CI t [{low:,.0f}, {high:,.0f}]  "
        f"bootstrap [{boot_low:,.0f}, {boot_high:,.0f}]  ({metrics['test_rows']} rows)"
    )
    print(
        f"artifact {results['artifact']['size_bytes'] / 1e6:.1f} MB, predict "
        f"{results['serving']['predict_1_row_seconds'] * 1e3:.1f} ms/row, "
        f"{results['serving']['predict_1000_rows_seconds'] * 1e3:.1f} ms/1000 rows; "
        f"trained in {results['train_seconds']:.0f} s"
    )
    compiled = results["compiled"]
    if "sha256" in compiled:
        timing = compiled.get("serving", {})
        print(
            f"compiled trees {compiled['path']} ({compiled['trees']} trees, max relative "
            f"difference {compiled['max_relative_difference']:.1g} on {compiled['checked_rows']} "
            f"test rows): "
            + ", ".join(
                f"{timing[key] * 1e3:.2f} ms/{label}"
                for key, label in (
                    ("predict_1_row_seconds", "row"),
                    ("predict_64_rows_seconds", "64 rows"),
                )
                if key in timing
            )
        )
    else:
        print(f"no compiled trees: {compiled.get('skipped')}")
    print(f"results: {results['results_path']}")
    return 0


def train_sklearn(
    models_dir: Path,
    search: str = "none",
    sample: int | None = None,
    n_jobs: int = -1,
    runs_dir: Path | None = None,
    model_type: str | None = None,
    params: dict[str, Any] | None = None,
    split: Split | None = None,
    pipeline_params: dict[str, Any] | None = None,
    compile_trees: bool = True,
) -> dict[str, Any]:
    """Train, score the full book test split, publish the next version; return the results.

    ``sample`` trains on that many random training rows (fast tests); ``params`` overrides
    the builder's keyword arguments (e.g. fewer iterations); ``split`` saves reloading it;
    ``pipeline_params`` are set on the built pipeline (a search's best parameters). The
    manifest records ``params`` and ``pipeline_params``, so a retrain can repeat them.
    ``compile_trees`` also publishes the compiled trees (``training.compiled``).
    """
    from threadpoolctl import threadpool_limits

    from pipelines.model_card import write_card_after_training
    from training import search as searches
    from training import sklearn_models
    from training.data import features_and_target, load_split
    from training.sklearn_export import describe, publish_sklearn

    if search not in PUBLISHING_SEARCHES:
        raise UserError(f"search must be one of {PUBLISHING_SEARCHES}, got {search!r}")
    model_type = model_type or sklearn_models.DEFAULT_MODEL_TYPE
    if model_type not in sklearn_models.MODEL_TYPES:
        raise UserError(f"unknown model type {model_type!r}")
    split = split or load_split()
    train = split.train
    if sample is not None:
        if not 0 < sample <= len(train):
            raise UserError(f"sample must be between 1 and {len(train)}, got {sample}")
        train = train.sample(n=sample, random_state=42)
        split = replace(split, train=train)  # the manifest records the rows actually fitted
    X, y = features_and_target(train)  # noqa: N806 (sklearn's naming)

    started = time.perf_counter()
    search_results: dict[str, Any] | None = None
    # n_jobs also caps the OpenMP threads of the boosters (None: every core).
    with (
        threadpool_limits(limits=n_jobs if n_jobs > 0 else None, user_api="openmp"),
        console.heartbeat(f"training {model_type} ({search} search)"),
    ):
        if search == "none":
            model = sklearn_models.build(model_type, n_jobs=n_jobs, **(params or {}))
            if pipeline_params:
                model.set_params(**pipeline_params)
            model.fit(X, y)
            model_type_published = model_type
        else:
            build_search = searches.grid_search if search == "grid" else searches.randomized_search
            searcher = build_search(n_jobs=n_jobs)
            searcher.fit(X, y)
            model = searcher.best_estimator_
            search_results = searches.search_summary(searcher)
            model_type_published = "forest"
    train_seconds = time.perf_counter() - started

    preprocessor = model.named_steps["preprocessing"]
    hyperparameters: dict[str, Any] = {
        "model_type": model_type_published,
        "search": search,
        "params": dict(params or {}),
        "train_rows": int(len(X)),
        "n_clusters": int(preprocessor.named_transformers_["geo"].n_clusters),
        "feature_blocks": list(preprocessor.named_transformers_),
        "neighbour_ks": list(getattr(preprocessor.named_transformers_.get("neighbours"), "ks", [])),
        "regressor": describe(model),
    }
    extra_metrics: dict[str, Any] = {}
    hyperparameters["pipeline_params"] = dict(pipeline_params or {})
    if search_results is not None:
        hyperparameters["search_best_params"] = search_results["best_params"]
        hyperparameters["pipeline_params"] = search_results["best_params"]
        extra_metrics["cv_rmse"] = search_results["best_cv_rmse"]
        extra_metrics["cv_folds"] = 3
    elif sample is None and not params and model_type in sklearn_models.SELECTION["cv_rmse"]:
        evidence = sklearn_models.SELECTION
        hyperparameters["selection"] = evidence
        extra_metrics["cv_rmse"] = evidence["cv_rmse"][model_type]["mean"]
        extra_metrics["cv_rmse_std"] = evidence["cv_rmse"][model_type]["std"]
        extra_metrics["cv_folds"] = evidence["folds"]
    extra_metrics["train_seconds"] = round(train_seconds, 1)

    version, path, manifest = publish_sklearn(
        model, split, Path(models_dir), hyperparameters, extra_metrics, compile_trees=compile_trees
    )
    card = write_card_after_training(Path(models_dir), manifest["model"], version, split.test)
    results = {
        "model": manifest["model"],
        "version": version,
        "path": str(path),
        "metrics": manifest["metrics"],
        "artifact": manifest["artifact"],
        "serving": manifest["serving"],
        "compiled": manifest["compiled"],
        "hyperparameters": hyperparameters,
        "train_seconds": train_seconds,
        "sample": sample,
        "search": search_results,
        "card": None if card is None else str(card / "card.md"),
    }
    results_path = (run_dir(RUN_NAME, runs_dir) if runs_dir else run_dir(RUN_NAME)) / (
        "results.json"
    )
    results["results_path"] = str(write_results(results_path, results))
    return results


def cross_validate(what: str, n_jobs: int = -1, runs_dir: Path | None = None) -> dict[str, Any]:
    """``baselines`` (the book's 10-fold table) or ``compare`` (the default's selection)."""
    from training import search as searches
    from training.data import features_and_target, load_split

    X, y = features_and_target(load_split().train)  # noqa: N806
    if what == "baselines":
        models = searches.run_baselines(X, y, n_jobs=n_jobs)
    elif what == "compare":
        models = searches.run_comparison(X, y, n_jobs=n_jobs)
    else:
        raise UserError(f"unknown cross-validation {what!r}")
    results: dict[str, Any] = {"what": what, "models": models}
    folder = run_dir(f"{RUN_NAME}-{what}", runs_dir) if runs_dir else run_dir(f"{RUN_NAME}-{what}")
    results["results_path"] = str(write_results(folder / "results.json", results))
    return results
