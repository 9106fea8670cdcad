"""Render the README's command table from the real ``housing`` parser.

``.venv/bin/python -m tests.deploy.readme_commands`` rewrites the table between the
``<!-- commands -->`` markers of README.md; ``test_repo`` fails when a command is missing.
"""

from __future__ import annotations

import argparse
import re
import sys

from core.cli import build_parser
from core.paths import REPO_ROOT

README_PATH = REPO_ROOT / "README.md"
SECTION = re.compile(r"(<!-- commands -->\n)(.*?)(<!-- /commands -->)", flags=re.DOTALL)


def leaf_commands() -> list[tuple[str, str]]:
    """(``housing ...`` command, help) for every runnable command of the real parser."""

    def walk(parser: argparse.ArgumentParser, prefix: str, help_text: str):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            yield prefix, help_text
            return
        helps = {choice.dest: choice.help or "" for choice in subs[0]._choices_actions}
        for name, child in subs[0].choices.items():
            yield from walk(child, f"{prefix} {name}", helps.get(name, ""))

    return list(walk(build_parser(), "housing", ""))


def render() -> str:
    rows = ["| command | does |", "|---|---|"]
    for command, help_text in leaf_commands():
        escaped = help_text.replace("|", "\\|")
        rows.append(f"| `{command}` | {escaped} |")
    return "\n".join(rows) + "\n"


def main() -> int:
    text = README_PATH.read_text()
    if not SECTION.search(text):
        print("README.md has no <!-- commands --> section", file=sys.stderr)
        return 1
    README_PATH.write_text(SECTION.sub(lambda m: m[1] + render() + m[3], text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
