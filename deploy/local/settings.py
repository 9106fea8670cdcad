"""``housing serve stack`` settings taken from the environment (flags override them).

Vertex AI tells the serving container where its model and port are through ``AIP_*``
variables; the canary share is the gateway's ``HOUSING_CANARY_PERCENT``, passed on to it.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StackSettings(BaseSettings):
    """Defaults of the stack's flags that the environment may set."""

    model_config = SettingsConfigDict(extra="ignore", use_attribute_docstrings=True)

    storage_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("AIP_STORAGE_URI", "storage_uri")
    )
    """gs:// folder of one model version to install and serve alone (set by Vertex AI)."""

    gateway_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        validation_alias=AliasChoices("AIP_HTTP_PORT", "gateway_port"),
    )
    """Gateway HTTP port (set by Vertex AI); default 8000."""

    canary_percent: float = Field(
        default=0.0,
        ge=0,
        le=100,
        validation_alias=AliasChoices("HOUSING_CANARY_PERCENT", "canary_percent"),
    )
    """Share of the gateway's requests sent to the "canary" label (0-100)."""
