"""The README's commands are the ones the Makefile and CI run, and it lists every command."""

from __future__ import annotations

import argparse
import re

from pipelines.cli import build_parser
from service.stack import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()
MAKEFILE = (REPO_ROOT / "Makefile").read_text()


def make_recipe(target: str) -> str:
    match = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", MAKEFILE, flags=re.MULTILINE)
    assert match, f"no {target} target"
    return match[1]


def test_the_two_commands() -> None:
    block = re.search(r"## The two commands\s+```bash\n(.*?)```", README, flags=re.DOTALL)
    assert block
    commands = [line.split("#")[0].strip() for line in block[1].splitlines() if line.strip()]
    assert commands == ["make run", "make test"]
    assert "housing serve stack" in make_recipe("run")
    assert "pytest" in make_recipe("test")
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, flags=re.MULTILINE)


def leaf_commands() -> list[str]:
    """Every runnable ``housing ...`` command of the real parser."""

    def walk(parser: argparse.ArgumentParser, prefix: str) -> list[str]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return [prefix]
        return [
            command
            for name, child in subs[0].choices.items()
            for command in walk(child, f"{prefix} {name}")
        ]

    return walk(build_parser(), "housing")


def test_readme_lists_every_command() -> None:
    missing = [
        command
        for command in leaf_commands()
        if f"`{command}" not in README and f"`{command.rsplit(' ', 1)[0]} …`" not in README
    ]
    assert not missing, f"README lacks: {missing}"
