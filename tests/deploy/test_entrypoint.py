"""docker/entrypoint.py, the trainer's and the load job's entry, with real uids and files.

Compose starts those containers as root against a bind-mounted host folder that Docker
may have created root-owned; the entrypoint must leave the written files to the host
user and never run the job as root. This machine runs the tests as root, so each case
starts the entrypoint as root or, through ``setpriv``, as an ordinary uid.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.paths import REPO_ROOT

ENTRYPOINT = REPO_ROOT / "docker" / "entrypoint.py"
USER_ID = 4242  # the host user who cloned the checkout
OTHER_ID = 4343
SETPRIV = shutil.which("setpriv")
# The entrypoint is standard library only (the locust image runs it too): the system
# interpreter runs it here, since the test venv's may not be reachable by other uids.
PYTHON = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if Path(p).exists()), "")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or SETPRIV is None or not PYTHON,
    reason="needs root, setpriv and a system python3 to switch uids",
)

# The job: write a file into the models folder and report who it ran as.
JOB = (
    "import os, pathlib, sys; "
    "folder = pathlib.Path(sys.argv[1]); "
    "(folder / 'housing_sklearn').mkdir(exist_ok=True); "
    "(folder / 'housing_sklearn' / 'model.txt').write_text('model'); "
    "print(os.getuid(), os.getgid(), os.getgroups())"
)


@pytest.fixture
def area() -> Iterator[Path]:
    """A folder every uid can traverse (pytest's own tmp folders are root-only)."""
    path = Path(tempfile.mkdtemp(prefix="housing-entrypoint-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def checkout(area: Path, uid: int) -> Path:
    folder = area / "checkout-docker"
    folder.mkdir()
    os.chown(folder, uid, uid)
    return folder


def run(
    models: Path,
    owner_of: Path | None = None,
    as_uid: int | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    script = ENTRYPOINT
    if as_uid is not None:
        # The checkout may sit where only root can enter (a clone in `mktemp -d`): run a
        # readable copy, as the image runs its world-readable /app copy.
        script = models.parent / "entrypoint.py"
        shutil.copyfile(ENTRYPOINT, script)
        script.chmod(0o644)
    argv = [PYTHON, str(script), "--writable", str(models)]
    if owner_of is not None:
        argv += ["--owner-of", str(owner_of)]
    argv += ["--", PYTHON, "-c", JOB, str(models)]
    if as_uid is not None:
        argv = [str(SETPRIV), f"--reuid={as_uid}", f"--regid={as_uid}", "--clear-groups", *argv]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HOUSING_")}
    return subprocess.run(
        argv,
        env={**environment, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ran_as(result: subprocess.CompletedProcess[str]) -> tuple[int, int, str]:
    assert result.returncode == 0, result.stderr
    uid, gid, groups = result.stdout.split(maxsplit=2)
    return int(uid), int(gid), groups.strip()


def owners(folder: Path) -> set[int]:
    return {folder.stat().st_uid} | {p.stat().st_uid for p in folder.rglob("*")}


def test_root_owned_folder_goes_to_the_checkout_owner(area: Path) -> None:
    """What Docker does with a missing ./models: created root-owned, with a root-owned
    leftover inside; the job runs as the checkout's owner and everything ends up theirs."""
    models = area / "models"
    models.mkdir()
    (models / "models.config").write_text("")
    assert owners(models) == {0}

    result = run(models, owner_of=checkout(area, USER_ID))

    assert ran_as(result) == (USER_ID, USER_ID, "[]")
    assert owners(models) == {USER_ID}
    assert (models / "housing_sklearn" / "model.txt").stat().st_mode & 0o044 == 0o044


def test_missing_folder_is_created_for_the_checkout_owner(area: Path) -> None:
    models = area / "runs" / "load"
    assert ran_as(run(models, owner_of=checkout(area, USER_ID)))[0] == USER_ID
    assert owners(models) == {USER_ID}


def test_user_owned_folder_keeps_its_owner(area: Path) -> None:
    models = area / "models"
    models.mkdir()
    os.chown(models, OTHER_ID, OTHER_ID)
    (models / "mine.txt").write_text("x")
    os.chown(models / "mine.txt", OTHER_ID, OTHER_ID)

    result = run(models, owner_of=checkout(area, USER_ID))

    assert ran_as(result)[:2] == (OTHER_ID, OTHER_ID)
    assert owners(models) == {OTHER_ID}


def test_housing_uid_wins(area: Path) -> None:
    models = area / "models"
    models.mkdir()
    result = run(
        models,
        owner_of=checkout(area, USER_ID),
        env={"HOUSING_UID": "5151", "HOUSING_GID": "5252"},
    )
    assert ran_as(result)[:2] == (5151, 5252)
    assert owners(models) == {5151}


def test_all_root_falls_back_to_the_image_user_not_root(area: Path) -> None:
    models = area / "models"
    models.mkdir()
    result = run(models, owner_of=checkout(area, 0))
    assert ran_as(result)[:2] == (10001, 10001)


def test_bad_housing_uid_is_one_line(area: Path) -> None:
    result = run(area / "models", env={"HOUSING_UID": "me"})
    assert result.returncode == 2
    assert result.stderr.strip() == "entrypoint: HOUSING_UID='me' is not a numeric id"


def test_non_root_start_against_a_root_owned_folder_fails_clearly(area: Path) -> None:
    """Started as an ordinary uid (e.g. `user:` overridden), it cannot fix ownership: it
    says so in one line, names the folder and the fix, and the job never runs."""
    models = area / "models"
    models.mkdir()
    result = run(models, as_uid=USER_ID)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert f"{models} is not writable by uid {USER_ID} (owner: 0)" in line
    assert not (models / "housing_sklearn").exists()


def test_non_root_start_against_its_own_folder_just_runs(area: Path) -> None:
    models = area / "models"
    models.mkdir()
    os.chown(models, USER_ID, USER_ID)
    result = run(models, as_uid=USER_ID, env={"HOUSING_UID": "1"})  # ignored: not root
    assert ran_as(result)[:2] == (USER_ID, USER_ID)
    assert owners(models) == {USER_ID}
