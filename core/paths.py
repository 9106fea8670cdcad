"""Where the checkout and its default folders are. Resolved when called, never at import."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
