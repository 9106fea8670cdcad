"""Vertex AI settings: flags override ``HOUSING_VERTEX_*`` environment variables.

Precedence (highest first): command-line flags, ``HOUSING_VERTEX_*`` environment
variables, a ``.env`` file in the working directory, the defaults below. No project id,
bucket or image of a real project lives in the code.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.settings import default_models_dir


class VertexSettings(BaseSettings):
    """Where and how to run on Vertex AI."""

    model_config = SettingsConfigDict(
        env_prefix="HOUSING_VERTEX_",
        env_file=".env",
        extra="ignore",
        populate_by_name=True,
        use_attribute_docstrings=True,
    )

    project: str | None = None
    """Google Cloud project id; required by every command that talks to Google Cloud."""
    location: str = "us-central1"
    """Region of the endpoint, jobs and bucket."""
    bucket: str | None = None
    """GCS bucket name (without ``gs://``) for artifacts, batch inputs/outputs and jobs."""
    prefix: str = "housing"
    """Folder inside the bucket under which everything of this service is written."""
    service_account: str | None = None
    """Service account the endpoint and jobs run as (least privilege: Vertex AI User and
    object access to the one bucket)."""
    serving_image: str | None = None
    """The project's gateway+model-server image (custom-container contract) for both models,
    e.g. ``REGION-docker.pkg.dev/PROJECT/housing/serving:TAG``. It runs the TensorFlow that
    exported the SavedModels (deploy/tfserving/runtime.py); Google's prebuilt TensorFlow
    prediction containers stop at 2.15 and may not load a 2.21 SavedModel."""
    keras_serving_image: str | None = None
    """Another container for ``housing_keras`` (e.g. a prebuilt ``tf2-cpu.2-NN`` once one
    matches the exporter's TensorFlow); default: ``serving_image``."""
    trainer_image: str | None = None
    """The project's trainer image, run by ``train`` and ``tune``."""
    trainer_image_gpu: str | None = None
    """The same built with ``--build-arg EXTRAS='[gpu]'`` (TensorFlow with CUDA), run instead
    when an accelerator is requested: the CPU image's TensorFlow never sees a GPU."""
    machine_type: str = "n1-standard-4"
    """Machine type for endpoints, batch prediction and training."""
    accelerator_type: str | None = None
    """e.g. ``NVIDIA_TESLA_T4`` (K80s are retired); none by default."""
    accelerator_count: int = Field(default=0, ge=0)
    """Accelerators per replica (1 if a type is given and this is 0)."""
    min_replicas: int = Field(default=1, ge=1)
    """Minimum endpoint replicas."""
    max_replicas: int = Field(default=1, ge=1)
    """Maximum endpoint replicas (autoscaling above the minimum)."""
    api_endpoint: str | None = None
    """Override of the Vertex API host (private/regional endpoints, or a local test server)."""
    anonymous: bool = False
    """Use anonymous credentials: ONLY for emulators and local test servers."""
    models_dir: Path = Field(default_factory=default_models_dir)
    """The local model repository that ``upload`` copies from."""

    @field_validator("bucket")
    @classmethod
    def strip_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return value.removeprefix("gs://").strip("/") or None

    @property
    def accelerators(self) -> int:
        if self.accelerator_type and self.accelerator_count == 0:
            return 1
        return self.accelerator_count if self.accelerator_type else 0

    def gcs_root(self) -> str:
        """``gs://bucket/prefix`` (the bucket must be set)."""
        if not self.bucket:
            raise ValueError("bucket")
        return f"gs://{self.bucket}/{self.prefix.strip('/')}"
