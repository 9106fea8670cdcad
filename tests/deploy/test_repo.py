"""The README's commands are the ones the Makefile and CI run, and it lists every command."""

from __future__ import annotations

import re

from core.paths import REPO_ROOT
from tests.deploy.readme_commands import SECTION, leaf_commands

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


def test_readme_lists_every_command() -> None:
    section = SECTION.search(README)
    assert section, "README.md lacks the <!-- commands --> section"
    missing = [command for command, _ in leaf_commands() if f"`{command}`" not in section[2]]
    assert not missing, (
        f"README lacks {missing}: run .venv/bin/python -m tests.deploy.readme_commands"
    )


def test_readme_settings_table_matches_the_settings_classes() -> None:
    from tests.deploy.readme_settings import SECTION as SETTINGS
    from tests.deploy.readme_settings import render

    section = SETTINGS.search(README)
    assert section, "README.md lacks the <!-- settings --> section"
    assert section[2] == render(), (
        "README's settings table is stale: run .venv/bin/python -m tests.deploy.readme_settings"
    )
    for name in ("HOUSING_CANARY_PERCENT", "HOUSING_MODELS_DIR", "HOUSING_VERTEX_PROJECT"):
        assert f"`{name}`" in section[2]


# A repository path in code or docs (``deploy/local/services.py``), not a placeholder
# (``docker/NAME.Dockerfile``, ``ops-<minor>.json``) or the Dockerfile syntax directive.
REPO_PATH = re.compile(
    r"(?<![\w/.-])((?:core|training|service|pipelines|deploy|load_tests|tests|docker|data)"
    r"/[\w/.-]*\w)(?![\w-]*[<*])"
)
NOT_PATHS = {"docker/dockerfile"}


def test_no_reference_to_a_file_that_does_not_exist() -> None:
    import subprocess

    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    suffixes = (".py", ".md", ".yml", ".yaml", ".toml", ".Dockerfile", ".config", "Makefile")
    missing = []
    for name in tracked:
        path = REPO_ROOT / name
        if not name.endswith(suffixes) or not path.is_file():
            continue
        for ref in {m[1] for m in REPO_PATH.finditer(path.read_text(errors="replace"))}:
            if ref not in NOT_PATHS and "NAME" not in ref and not (REPO_ROOT / ref).exists():
                missing.append(f"{name}: {ref}")
    assert not missing, missing


LAYERS = ["core", "training", "service", "pipelines", "deploy", "load_tests", "tests"]


def test_imports_only_run_down_the_layers() -> None:
    """core, training, service, pipelines, deploy, load_tests, tests: see ARCHITECTURE.md."""
    import ast

    upward = []
    for layer in LAYERS:
        for path in (REPO_ROOT / layer).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in LAYERS and LAYERS.index(top) > LAYERS.index(layer):
                        upward.append(f"{path.relative_to(REPO_ROOT)} imports {name}")
    assert not upward, upward


def test_processes_are_started_by_the_one_launcher() -> None:
    """Only core/process.py starts processes that outlive a call; the rest use ManagedProcess."""
    needles = ("subprocess." + "Popen(", "create_subprocess" + "_exec")  # not this file itself
    found = []
    for layer in LAYERS:
        for path in (REPO_ROOT / layer).rglob("*.py"):
            text = path.read_text()
            if any(n in text for n in needles):
                found.append(str(path.relative_to(REPO_ROOT)))
    assert found == ["core/process.py"], found
