"""Credentials and clients: Application Default Credentials only, failures as one line.

Credentials come from ADC (``GOOGLE_APPLICATION_CREDENTIALS``, ``gcloud auth
application-default login``, or the service account attached to the VM/job/pod), never
from code, config files or logs. Every Google Cloud failure is turned into a
:class:`UserError` so the CLI prints one line instead of a stack trace.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from core.errors import UserError
from deploy.vertex.settings import VertexSettings

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
WHAT_TO_SET = (
    "set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file kept outside the "
    "repository, run `gcloud auth application-default login`, or run where a service "
    "account is attached (VM, Vertex job, Workload Identity)"
)


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:400]


def credentials(settings: VertexSettings) -> Any:
    """The ADC credentials (anonymous only when the settings ask for it, for emulators)."""
    from google.auth import default
    from google.auth.credentials import AnonymousCredentials
    from google.auth.exceptions import DefaultCredentialsError

    if settings.anonymous:
        return AnonymousCredentials()
    try:
        creds, _ = default(scopes=SCOPES)
    except DefaultCredentialsError as exc:
        raise UserError(
            f"no usable Google Cloud credentials ({one_line(exc)}): {WHAT_TO_SET}"
        ) from None
    return creds


@contextmanager
def cloud_errors(action: str) -> Iterator[None]:
    """Map Google Cloud exceptions raised while doing ``action`` to one-line user errors."""
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    try:
        yield
    except auth.RefreshError as exc:
        raise UserError(
            f"{action}: credentials were rejected ({one_line(exc)}): {WHAT_TO_SET}"
        ) from None
    except auth.GoogleAuthError as exc:
        raise UserError(f"{action}: credential problem ({one_line(exc)}): {WHAT_TO_SET}") from None
    except (api.Unauthenticated, api.PermissionDenied, api.Forbidden) as exc:
        raise UserError(
            f"{action}: permission denied ({one_line(exc)}); the account needs the Vertex AI "
            "User role and object access to the bucket"
        ) from None
    except api.GoogleAPIError as exc:
        raise UserError(f"{action}: {one_line(exc)}") from None


@dataclass
class Cloud:
    """Initialised SDK state for one command."""

    settings: VertexSettings
    creds: Any
    storage: Any


def connect(settings: VertexSettings) -> Cloud:
    """Initialise the Vertex SDK and a storage client from the settings and ADC."""
    from google.cloud import aiplatform
    from google.cloud.storage import Client as StorageClient

    creds = credentials(settings)
    aiplatform.init(
        project=settings.project,
        location=settings.location,
        credentials=creds,
        api_endpoint=settings.api_endpoint,
        staging_bucket=f"gs://{settings.bucket}" if settings.bucket else None,
    )
    return Cloud(settings, creds, StorageClient(project=settings.project, credentials=creds))
