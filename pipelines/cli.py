"""The ``housing`` command: every flow of the project as a subcommand.

Each command module exposes ``register(subparsers)``, adding its parser with
``set_defaults(func=...)``. Modules import heavy libraries (TensorFlow, scikit-learn)
inside their handlers, so ``housing --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (group name or None for a top-level command, help text, modules that register into it)
COMMANDS: list[tuple[str | None, str, list[str]]] = [
    ("data", "fetch, verify and validate the dataset", ["pipelines.data_cmd"]),
    (
        "train",
        "train, evaluate and export a model version",
        ["pipelines.train_keras", "pipelines.train_sklearn"],
    ),
    (None, "", ["pipelines.batch_score", "pipelines.evaluate_cmd"]),
    (
        "serve",
        "run the model server or the gateway",
        ["service.model_server.cli", "service.stack", "service.gateway.cli"],
    ),
    ("monitor", "data drift and live performance", ["pipelines.monitor_cmd"]),
    (
        "pipeline",
        "retrain, promote and roll back model versions",
        ["pipelines.labels_cmd", "pipelines.retrain"],
    ),
    ("vertex", "deploy and run on Google Cloud Vertex AI", ["deploy.vertex.cli"]),
]

# Errors whose message is enough for the user: one line, exit status 2.
USER_ERRORS = (
    "pipelines.common:CommandError",
    "training.data:DataError",
    "training.repository:RepositoryError",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="housing",
        description="California housing service: train, serve, monitor and deploy.",
    )
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group, help_text, modules in COMMANDS:
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


def user_error_types() -> tuple[type[BaseException], ...]:
    types = []
    for spec in USER_ERRORS:
        module, name = spec.split(":")
        types.append(getattr(importlib.import_module(module), name))
    return tuple(types)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if isinstance(exc, user_error_types()):
            print(f"housing: error: {exc}", file=sys.stderr)
            return 2
        raise
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
