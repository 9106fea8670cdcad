"""The ``housing`` command: every flow of the project as a subcommand.

Each command module exposes ``register(subparsers)``, adding its parser with
``set_defaults(func=...)``. The table names modules as strings, imported only when the
parser is built, so this bottom-layer module imports nothing of the project and any layer
(the local stack's trainer step, ``python -m service.model_server``) can run a command.
Modules import heavy libraries (TensorFlow, scikit-learn) inside their handlers, so
``housing --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from core.errors import UserError

# (group name or None for a top-level command, help text, modules that register into it)
COMMANDS: list[tuple[str | None, str, list[str]]] = [
    ("data", "fetch, validate and explore the dataset", ["pipelines.data", "pipelines.explore"]),
    (
        "train",
        "train, evaluate and export a model version",
        ["pipelines.train_keras", "pipelines.train_sklearn"],
    ),
    (None, "", ["pipelines.batch_score", "pipelines.evaluate", "pipelines.model_card"]),
    (
        "serve",
        "run the model server or the gateway",
        ["service.model_server.cli", "deploy.local.cli", "service.gateway.cli"],
    ),
    ("monitor", "data drift and live performance", ["pipelines.monitor"]),
    (
        "pipeline",
        "retrain, promote and roll back model versions",
        ["pipelines.labels", "pipelines.retrain"],
    ),
    ("vertex", "deploy and run on Google Cloud Vertex AI", ["deploy.vertex.cli"]),
]


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole command tree; or, when ``argv`` names a group (``serve ...``), that group
    alone, so a server starts without importing every other command's module."""
    words = [word for word in (argv or []) if not word.startswith("-")]
    named = {group for group, _, _ in COMMANDS if group is not None}
    only = words[0] if words and words[0] in named else None
    parser = argparse.ArgumentParser(
        prog="housing",
        description="California housing service: train, serve, monitor and deploy.",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bars or heartbeat lines"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="keep TensorFlow's native start-up messages (oneDNN, CUDA probing) on stderr",
    )
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group, help_text, modules in COMMANDS:
        if only is not None and group != only:
            continue
        if group is None:
            target = top
        elif modules:
            group_parser = top.add_parser(group, help=help_text, description=help_text)
            target = group_parser.add_subparsers(
                dest="subcommand", metavar="SUBCOMMAND", required=True
            )
        else:
            continue
        for module in modules:
            importlib.import_module(module).register(target)
    return parser


def main(argv: list[str] | None = None) -> int:
    from core import console

    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    console.configure(quiet=args.quiet)
    # Servers keep their stderr untouched (operators read it raw); commands filter it.
    if args.verbose or args.command == "serve" or not _is_real_stderr():
        return run_handler(args.func, args, prog="housing")
    noise = console.NativeNoiseFilter().start()
    try:
        return run_handler(args.func, args, prog="housing")
    finally:
        noise.stop()


def _is_real_stderr() -> bool:
    """False under test capture (sys.stderr replaced): the descriptor is not what prints."""
    try:
        return sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


def run_handler(
    func: Callable[[argparse.Namespace], int | None], args: argparse.Namespace, prog: str
) -> int:
    """Run one command: a :class:`UserError` is one line on stderr and exit status 2."""
    try:
        result = func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
