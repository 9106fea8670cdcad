"""The one user-facing error type: a bad flag, file or input that the user can fix."""

from __future__ import annotations


class UserError(Exception):
    """A failure the user can act on: the CLI prints the message on one line and exits 2."""
