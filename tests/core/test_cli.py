"""The ``housing`` command table: a server's command line imports only its own group."""

from __future__ import annotations

import subprocess
import sys

import pytest

from core.cli import COMMANDS, build_parser


def modules_imported_for(argv: list[str]) -> set[str]:
    """Project command modules imported while parsing ``argv``, in a fresh interpreter."""
    code = (
        "import sys; from core.cli import build_parser, COMMANDS; "
        f"build_parser({argv!r}).parse_args({argv!r}); "
        "print(' '.join(m for _, _, ms in COMMANDS for m in ms if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_a_server_command_imports_only_its_group():
    serve = next(modules for group, _, modules in COMMANDS if group == "serve")
    assert modules_imported_for(["serve", "gateway"]) == set(serve)


def test_the_full_tree_still_knows_every_group():
    help_text = build_parser([]).format_help()
    for group, _, _ in COMMANDS:
        if group is not None:
            assert group in help_text


@pytest.mark.parametrize("argv", [["batch-score", "--help"], ["--quiet", "data", "--help"]])
def test_top_level_commands_and_flags_still_parse(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser(argv).parse_args(argv)
    assert exit_.value.code == 0
    assert "usage: housing" in capsys.readouterr().out
