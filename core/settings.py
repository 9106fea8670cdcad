"""Settings every deployable shares, read from the environment when asked, never at import.

The scheme: ``HOUSING_`` for what the whole service shares (these) and for the gateway,
the one long-running deployable most settings belong to; a sub-prefix where a deployable
has its own namespace (``HOUSING_DRIFT_`` for the drift monitor, ``HOUSING_VERTEX_`` for
Google Cloud); ``AIP_*`` only as Vertex AI names them. Each deployable has one
pydantic-settings class (``GatewaySettings``, ``MonitorSettings``, ``StackSettings``,
``VertexSettings``, this one); nothing else reads ``os.environ`` for configuration. The
README's settings table is rendered from these classes and checked by a test.
"""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from core.paths import REPO_ROOT

DEFAULT_PREDICTION_LOG = "logs/predictions.sqlite3"
"""The prediction log's one default path (relative to the working directory)."""


class SharedSettings(BaseSettings):
    """Paths and identity that every command and server of the project agrees on."""

    model_config = SettingsConfigDict(
        env_prefix="HOUSING_", extra="ignore", use_attribute_docstrings=True
    )

    models_dir: Path = REPO_ROOT / "models"
    """Model repository: ``<name>/<version>/`` folders, ``models.config``, audit log."""

    prediction_log_path: str = DEFAULT_PREDICTION_LOG
    """SQLite prediction log the gateway writes and drift reports read."""

    actor: str | None = None
    """Who promotes or rolls back, in ``models/audit.jsonl`` (default: the OS user)."""


def shared() -> SharedSettings:
    """The shared settings as the environment has them now."""
    return SharedSettings()


def default_models_dir() -> Path:
    """``HOUSING_MODELS_DIR``, else the checkout's ``models/``; resolved at each call."""
    return shared().models_dir
