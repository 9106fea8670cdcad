"""The Dockerfiles pass hadolint and follow the project's image rules."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.paths import REPO_ROOT

DOCKERFILES = sorted((REPO_ROOT / "docker").glob("*.Dockerfile"))
HADOLINT = Path(sys.executable).parent / "hadolint"


def test_one_dockerfile_per_deployable() -> None:
    names = {path.name for path in DOCKERFILES}
    assert names == {
        "gateway.Dockerfile",
        "model-server.Dockerfile",
        "trainer.Dockerfile",
        "serving.Dockerfile",
    }


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(dockerfile: Path) -> None:
    result = subprocess.run(
        [str(HADOLINT), "--failure-threshold", "info", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_rules(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    stages = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert len(stages) >= 2, "multi-stage"
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, flags=re.MULTILINE)
    assert base and re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base[1])
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "runs as a non-root user"
    assert re.search(r"^HEALTHCHECK\s", text, flags=re.MULTILINE)
    assert not re.search(r"^COPY\s+.*\bmodels\b", text, flags=re.MULTILINE), "models are mounted"
    assert not re.search(r"(?i)^(ENV|ARG)\s+\S*(SECRET|PASSWORD|TOKEN|API_KEY)", text, re.M)


def test_dockerignore_keeps_local_state_out() -> None:
    entries = {
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", "models", "runs", "logs", ".git"} <= entries


PACKAGES = ("core", "training", "pipelines", "service", "deploy")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_hold_every_package_and_start_the_real_cli(dockerfile: Path) -> None:
    """Both stages copy every project package (the install needs them, and the runtime runs
    the source), and the entry module is one that exists: a moved CLI breaks the image."""
    text = dockerfile.read_text()
    build, runtime = re.split(r"^FROM\s+\S+\s+AS\s+runtime\s*$", text, flags=re.MULTILINE)
    for stage, body in (("build", build), ("runtime", runtime)):
        copied = set(re.findall(r"^COPY\s+(\w+)/\s+\1/\s*$", body, flags=re.MULTILINE))
        assert set(PACKAGES) <= copied, f"{stage} stage lacks {set(PACKAGES) - copied}"
    entry = re.search(r"^ENTRYPOINT\s+(\[.*?\])\s*$", text.replace("\\\n", " "), re.M | re.S)
    assert entry, "no ENTRYPOINT"
    argv = json.loads(entry[1])
    module = argv[argv.index("-m") + 1]
    assert (REPO_ROOT / Path(*module.split("."))).with_suffix(".py").is_file(), module
    for script in (arg for arg in argv if arg.endswith(".py")):
        relative = Path(script).relative_to("/app")
        assert (REPO_ROOT / relative).is_file() and f"COPY {relative} {relative}" in text


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_take_the_protocol_modules_their_install_generated(dockerfile: Path) -> None:
    """The checkout has no core/tfserving_protos stubs: the build stage's ``pip install``
    generates them (setup.py), and the runtime stage copies them over its ``core/``."""
    text = dockerfile.read_text()
    build, runtime = re.split(r"^FROM\s+\S+\s+AS\s+runtime\s*$", text, flags=re.MULTILINE)
    assert re.search(r"^COPY\s[^\n]*\bsetup\.py\b", build, flags=re.MULTILINE)
    assert re.search(r"^RUN pip install\b", build, flags=re.MULTILINE)
    stubs = "COPY --from=build /src/core/tfserving_protos/ core/tfserving_protos/"
    assert stubs in runtime
    assert runtime.index("COPY core/ core/") < runtime.index(stubs), "copied over, not under"


def test_the_vertex_serving_image_opts_out_of_gateway_keys() -> None:
    """Its gateway binds 0.0.0.0 (stack --bind=0.0.0.0) behind Vertex AI's own IAM check:
    without the opt-out (or keys) the gateway refuses to start."""
    text = (REPO_ROOT / "docker" / "serving.Dockerfile").read_text().replace("\\\n", " ")
    assert "--bind=0.0.0.0" in text
    assert re.search(r"^ENV\s.*\bHOUSING_ALLOW_UNAUTHENTICATED=true\b", text, flags=re.M)
