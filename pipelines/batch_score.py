"""``housing batch-score``: score a CSV, Parquet or JSONL file against a model server over gRPC.

Streams the input in chunks of ``--batch-size`` rows (one Predict call each), keeps up to
``--concurrency`` calls in flight, writes Parquet or CSV output in input order with the
prediction in ``predicted_median_house_value`` and the answering version in ``model_version``,
rejected rows to an errors file, and a summary JSON. Without ``--version``/``--label`` it asks
for the ``stable`` label (the server's default only for a model without labels) and pins the
version of the first answer for the whole run. ``--resume`` continues an interrupted run with
the same version, without scoring a row twice or missing one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from core.contract import DEFAULT_LABEL
from core.errors import UserError
from pipelines.common import write_results

OUTPUT_SUFFIXES = (".csv", ".parquet")


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def target(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return text


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "batch-score",
        help="score a file against a model server over gRPC (resumable)",
        description=__doc__,
    )
    parser.add_argument("--input", type=Path, required=True, help=".csv, .parquet or .jsonl")
    parser.add_argument("--output", type=Path, required=True, help=".parquet or .csv")
    parser.add_argument("--model", required=True, help="model name, e.g. housing_sklearn")
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--version",
        type=positive,
        help=f"model version (default: the {DEFAULT_LABEL!r} label's, pinned for the run)",
    )
    which.add_argument("--label", help=f"version label, e.g. canary (default {DEFAULT_LABEL})")
    parser.add_argument(
        "--target",
        type=target,
        default="localhost:8500",
        help="gRPC HOST:PORT (default localhost:8500)",
    )
    parser.add_argument(
        "--batch-size", type=positive, default=2000, help="rows per chunk and request (2000)"
    )
    parser.add_argument(
        "--concurrency", type=positive, default=4, help="requests in flight (default 4)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue an interrupted run of the same output"
    )
    parser.add_argument(
        "--errors", type=Path, help="rejected rows, .csv or .parquet (default OUTPUT.errors.csv)"
    )
    parser.add_argument("--summary", type=Path, help="summary JSON (default OUTPUT.summary.json)")
    parser.add_argument("--id-column", help="input column carried through to the output")
    parser.add_argument(
        "--deadline", type=float, default=30.0, help="seconds per gRPC attempt (default 30)"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=300.0,
        help="seconds for all attempts of one chunk, retries included (default 300)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=10,
        help="retries of an UNAVAILABLE upstream, with exponential backoff (default 10)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from pipelines.batch.runner import Job, score

    if args.output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise UserError(f"--output {args.output}: must end in .parquet or .csv")
    errors = args.errors or args.output.with_name(args.output.name + ".errors.csv")
    if errors.suffix.lower() not in OUTPUT_SUFFIXES:
        raise UserError(f"--errors {errors}: must end in .csv or .parquet")
    if args.input.resolve() in (args.output.resolve(), errors.resolve()):
        raise UserError("--input must differ from --output and --errors")
    if args.deadline <= 0 or args.budget <= 0 or args.retries < 0:
        raise UserError("--deadline and --budget must be positive and --retries non-negative")
    job = Job(
        input=args.input,
        output=args.output,
        errors=errors,
        model=args.model,
        target=args.target,
        version=args.version,
        label=args.label,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        id_column=args.id_column,
        resume=args.resume,
        deadline=args.deadline,
        budget=args.budget,
        retries=args.retries,
        progress=not args.no_progress,
    )
    summary = asyncio.run(score(job))
    summary_path = args.summary or args.output.with_name(args.output.name + ".summary.json")
    write_results(summary_path, summary)
    print(json.dumps(summary, indent=2))
    return 0
