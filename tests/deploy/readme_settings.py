"""Render the README's settings table from the settings classes and the real parsers.

``.venv/bin/python -m tests.deploy.readme_settings`` rewrites the table between the
``<!-- settings -->`` markers of README.md; ``test_repo`` fails when it is out of date.
Each row: the environment variable, the flag that overrides it, the default, the meaning
(the field's docstring).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, SecretStr
from pydantic_settings import BaseSettings

from core.cli import build_parser
from core.paths import REPO_ROOT
from core.settings import SharedSettings
from deploy.local.settings import StackSettings
from deploy.vertex.settings import VertexSettings
from service.gateway.settings import GatewaySettings
from service.monitoring.monitor import MonitorSettings

README_PATH = REPO_ROOT / "README.md"
SECTION = re.compile(r"(<!-- settings -->\n)(.*?)(<!-- /settings -->)", flags=re.DOTALL)

# (who reads them, class, the commands whose flags override them; None: every command)
DEPLOYABLES: list[tuple[str, type[BaseSettings], tuple[str, ...] | None]] = [
    ("every command and server", SharedSettings, None),
    ("gateway", GatewaySettings, ("serve gateway",)),
    ("drift monitor (in the gateway)", MonitorSettings, ()),
    ("local stack", StackSettings, ("serve stack",)),
    ("Vertex AI", VertexSettings, ("vertex upload",)),
]
SINGULAR_FLAGS = {"upstreams": "upstream", "cors_origins": "cors_origin"}


def commands() -> dict[str, argparse.ArgumentParser]:
    """``serve gateway`` -> its parser, for every runnable command."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            found[prefix.strip()] = parser
        for name, child in subs[0].choices.items() if subs else []:
            walk(child, f"{prefix} {name}")

    walk(build_parser(), "")
    return found


def env_name(cls: type[BaseSettings], name: str) -> str:
    alias = cls.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"{cls.model_config.get('env_prefix', '')}{name}".upper()


def flags(name: str, parsers: list[argparse.ArgumentParser]) -> str:
    dests = {name, SINGULAR_FLAGS.get(name, name)}
    options = {
        action.option_strings[0]
        for parser in parsers
        for action in parser._actions
        if action.dest in dests and action.option_strings
    }
    return ", ".join(f"`{option}`" for option in sorted(options))


def shown(value: Any) -> str:
    if isinstance(value, Path):
        value = value.relative_to(REPO_ROOT) if value.is_relative_to(REPO_ROOT) else value
        return f"`{value}/`" if not value.suffix else f"`{value}`"
    if value is None or value == "":
        return "—"
    if isinstance(value, list | dict):
        return f"`{json.dumps([] if value == [] else value)}`"
    if isinstance(value, SecretStr):
        return "(secret)"
    return f"`{str(value).lower() if isinstance(value, bool) else value}`"


def render() -> str:
    parsers = commands()
    rows = ["| variable | flag | default | meaning |", "|---|---|---|---|"]
    for who, cls, command_names in DEPLOYABLES:
        rows.append(f"| **{who}** (`{cls.__name__}`) | | | |")
        scope = list(parsers.values()) if command_names is None else [
            parsers[name] for name in command_names
        ]  # fmt: skip
        for name, field in cls.model_fields.items():
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            default = field.get_default(call_default_factory=True)
            value = f"`{extra['shown_default']}`" if "shown_default" in extra else shown(default)
            meaning = " ".join((field.description or "").split()).replace("|", "\\|")
            rows.append(f"| `{env_name(cls, name)}` | {flags(name, scope)} | {value} | {meaning} |")
    return "\n".join(rows) + "\n"


def rewrite(path: Path = README_PATH) -> bool:
    text = path.read_text()
    updated = SECTION.sub(lambda m: m[1] + render() + m[3], text)
    path.write_text(updated)
    return updated != text


if __name__ == "__main__":
    print("README.md updated" if rewrite() else "README.md already up to date")
    sys.exit(0)
