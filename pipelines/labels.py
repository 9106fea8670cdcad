"""``housing pipeline promote`` and ``housing pipeline rollback``: move version labels."""

from __future__ import annotations

import argparse
import json

from pipelines.common import add_models_dir


def add_repository_arguments(parser: argparse.ArgumentParser) -> None:

    add_models_dir(parser)
    parser.add_argument(
        "--server",
        metavar="HOST:PORT",
        default=None,
        help="a running model server or TF Serving (gRPC) to follow: wait until the target "
        "version is AVAILABLE before the label moves, and return once that server serves the "
        "label on it; without it models.config is rewritten at once and servers apply it at "
        "their next config poll (still moving the label only once the version is AVAILABLE)",
    )
    parser.add_argument(
        "--wait-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for each step on --server (default: 120; the local stack "
        "polls its config every 30 s)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    promote = subparsers.add_parser(
        "promote",
        help="point a label (stable, canary, ...) at a model version",
        description="Move a version label in models.config the way TF Serving requires: load "
        "the version first, then move the label. A label other than stable on a model "
        "without stable first pins stable to the version served today. Running servers pick "
        "the change up by polling; with --server the command returns once that server "
        "serves it.",
    )
    promote.add_argument("--model", required=True, help="model name, e.g. housing_sklearn")
    promote.add_argument("--version", type=int, required=True, help="version to label")
    promote.add_argument("--label", default="stable", help="label to move (default: stable)")
    promote.add_argument("--reason", default="", help="why, recorded in the audit trail")
    add_repository_arguments(promote)
    promote.set_defaults(func=run_promote)

    rollback = subparsers.add_parser(
        "rollback",
        help="point stable back at the version it had before the last promotion",
        description="Undo the last promotion to stable (the audit trail keeps the history).",
    )
    rollback.add_argument("--model", required=True, help="model name, e.g. housing_sklearn")
    add_repository_arguments(rollback)
    rollback.set_defaults(func=run_rollback)


def server_watch(args: argparse.Namespace):
    from pipelines.promotion import GrpcServerWatch

    return GrpcServerWatch(args.server, args.wait_timeout) if args.server else None


def run_promote(args: argparse.Namespace) -> int:
    from pipelines.promotion import promote
    from training.repository import ModelRepository

    repo = ModelRepository(args.models_dir)
    entry = promote(
        repo, args.model, args.version, args.label, watch=server_watch(args), reason=args.reason
    )
    print(json.dumps(entry, sort_keys=True))
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    from pipelines.promotion import rollback
    from training.repository import ModelRepository

    entry = rollback(ModelRepository(args.models_dir), args.model, watch=server_watch(args))
    print(json.dumps(entry, sort_keys=True))
    return 0
