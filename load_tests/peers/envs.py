"""Separate virtual environments for the peer servers (never project dependencies).

Each peer lives in its own venv under a cache folder outside the repository
(``~/.cache/housing-peers/<peer>``, or ``$HOUSING_PEERS_CACHE``), so its pins can never
leak into the project's environment. The project's scikit-learn, numpy, pandas and scipy
versions are pinned in every peer venv (a joblib pipeline only unpickles faithfully with
the library versions it was fitted with), and a ``.pth`` file makes the repository's
``training`` package importable, which the pipeline's custom transformers need.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from core.paths import REPO_ROOT

CACHE = Path(os.environ.get("HOUSING_PEERS_CACHE", Path.home() / ".cache" / "housing-peers"))
PINNED_FROM_PROJECT = ("scikit-learn", "numpy", "pandas", "scipy", "joblib")


@dataclass(frozen=True)
class PeerEnv:
    """One peer's venv: its name and the packages it needs besides the project's pins."""

    name: str
    packages: tuple[str, ...]

    @property
    def path(self) -> Path:
        return CACHE / self.name

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def bin(self, program: str) -> Path:
        return self.path / "bin" / program

    @property
    def stamp(self) -> Path:
        return self.path / ".housing-installed"


PEERS: dict[str, PeerEnv] = {
    # uvloop 0.22 removed the implicit event loop MLServer 1.7's workers still ask for.
    "mlserver": PeerEnv("mlserver", ("mlserver", "mlserver-sklearn", "uvloop<0.22")),
    "mlflow": PeerEnv("mlflow", ("mlflow",)),
}


def project_pins() -> list[str]:
    """``name==version`` for the libraries the pickled pipeline depends on."""
    return [f"{name}=={metadata.version(name)}" for name in PINNED_FROM_PROJECT]


def wanted(env: PeerEnv) -> str:
    return "\n".join([*env.packages, *project_pins(), str(REPO_ROOT)])


def ensure(env: PeerEnv, quiet: bool = True) -> PeerEnv:
    """Create and fill the venv once; reinstall only when the wanted set changes."""
    if env.stamp.is_file() and env.stamp.read_text() == wanted(env):
        return env
    if not env.python.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(env.path)
    pip = [str(env.python), "-m", "pip", "install", "--disable-pip-version-check"]
    if quiet:
        pip.append("--quiet")
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, *env.packages, *project_pins()], check=True)
    site = subprocess.run(
        [str(env.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "housing_repo.pth").write_text(f"{REPO_ROOT}\n")
    env.stamp.write_text(wanted(env))
    return env


def main(argv: list[str] | None = None) -> int:
    """Create the named peer venvs (all by default): ``python -m load_tests.peers.envs``."""
    names = (argv if argv is not None else sys.argv[1:]) or list(PEERS)
    for name in names:
        print(f"[peers] preparing {name} venv in {PEERS[name].path}", flush=True)
        ensure(PEERS[name], quiet=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
