"""``python -m service.model_server``: the same flags as ``housing serve model-server``.

Parses only this command's flags, so the server starts without importing the other
commands' modules.
"""

from __future__ import annotations

import argparse
import sys

from core.cli import run_handler
from service.model_server.cli import HELP, add_arguments, handle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.model_server", description=HELP)
    add_arguments(parser)
    return run_handler(handle, parser.parse_args(argv), prog="model-server")


if __name__ == "__main__":
    sys.exit(main())
