"""Container entry point for jobs that write into a bind-mounted host folder.

``python entrypoint.py --writable DIR [--writable DIR ...] [--owner-of PATH] -- COMMAND...``

Docker creates a missing bind-mount source owned by root, and a user's own folder belongs
to their uid, which the image cannot know. Started as root (compose sets ``user: "0:0"``
for the trainer and the load job), this script picks the uid the files should belong to
— ``HOUSING_UID``/``HOUSING_GID`` if set, else the owner of the first writable folder if it
is not root, else the owner of ``--owner-of`` (a read-only mount of the checkout) if not
root, else 10001 — hands the root-owned entries of each writable folder to it, drops
root for good (groups, gid, uid) and runs COMMAND. Started as any other uid, it changes
nothing and stops with one line if a writable folder is not writable.

Standard library only: the locust image runs it too.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

FALLBACK_ID = 10001


def fail(message: str) -> int:
    print(f"entrypoint: {message}", file=sys.stderr, flush=True)
    return 2


def env_id(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise ValueError(f"{name}={value!r} is not a numeric id")
    return int(value)


def target_ids(writable: list[Path], owner_of: Path | None) -> tuple[int, int]:
    """The uid/gid the written files should belong to (see the module docstring)."""
    uid, gid = env_id("HOUSING_UID"), env_id("HOUSING_GID")
    if uid is not None:
        return uid, gid if gid is not None else uid
    for candidate in (*writable[:1], *([owner_of] if owner_of else [])):
        try:
            info = candidate.stat()
        except OSError:
            continue
        if info.st_uid != 0:
            return info.st_uid, gid if gid is not None else info.st_gid
    return FALLBACK_ID, gid if gid is not None else FALLBACK_ID


def hand_over(folder: Path, uid: int, gid: int) -> int:
    """Give root-owned entries under ``folder`` (itself included) to uid:gid; the count.

    Entries owned by anyone else are left alone: they already belong to a user."""
    changed = 0
    for root, dirs, files in os.walk(folder):
        for path in (root, *(os.path.join(root, name) for name in (*dirs, *files))):
            info = os.lstat(path)
            if info.st_uid == 0:
                os.lchown(path, uid, gid)
                changed += 1
    return changed


def drop_to(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:  # pragma: no cover - kernel guarantees
        raise PermissionError("could not drop root")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="entrypoint", description=__doc__.split("\n\n")[0])
    parser.add_argument("--writable", type=Path, action="append", default=[], required=True)
    parser.add_argument("--owner-of", type=Path, default=None)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        return fail("no command after --")
    os.umask(0o022)  # files stay readable by the servers, which run as another uid
    if os.geteuid() == 0:
        try:
            uid, gid = target_ids(args.writable, args.owner_of)
        except ValueError as exc:
            return fail(str(exc))
        for folder in args.writable:
            folder.mkdir(parents=True, exist_ok=True)
            hand_over(folder, uid, gid)
        drop_to(uid, gid)
        if not os.access(os.environ.get("HOME", "/"), os.W_OK):
            os.environ["HOME"] = "/tmp"
    for folder in args.writable:
        with contextlib.suppress(OSError):  # not allowed: reported just below
            folder.mkdir(parents=True, exist_ok=True)
        if not (folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)):
            owner = folder.stat().st_uid if folder.exists() else "nobody (missing)"
            return fail(
                f"{folder} is not writable by uid {os.getuid()} (owner: {owner}); start the "
                "container as root (compose does) so it can fix the ownership, or "
                f"`chown {os.getuid()} <host folder>`"
            )
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        return fail(f"cannot run {command[0]}: {exc}")
    return 0  # pragma: no cover - execvp does not return


if __name__ == "__main__":
    sys.exit(main())
