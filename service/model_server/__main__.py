"""``python -m service.model_server``: the same flags as ``housing serve model-server``.

Parses only this command's flags, so the server starts without importing the other
commands' modules.
"""

from __future__ import annotations

import argparse
import sys

from pipelines.cli import user_error_types
from service.model_server.cli import HELP, add_arguments, handle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.model_server", description=HELP)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return handle(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if isinstance(exc, user_error_types()):
            print(f"model-server: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
