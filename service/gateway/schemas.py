"""Request and response bodies of the REST API (the REST contract in ARCHITECTURE.md).

Numbers are strict (no strings or booleans), finite (no NaN, Infinity or 1e999), counts are
non-negative, ``ocean_proximity`` is one of the five categories, ``total_bedrooms`` may be
null or missing, and unknown fields are rejected: every violation is a 422 naming the
instance index and the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.contract import EXAMPLE_INSTANCE

# Bounds are physical (coordinates) or generous sanity limits far beyond any district, so
# every accepted value is a finite float32 (the signature's dtype) and the model's ratio
# features have non-zero denominators (rooms, households). Unusual but valid values are
# served and flagged (see ranges.py), not rejected.
MAX_COUNT = 1e9
Strict = {"strict": True, "allow_inf_nan": False}
Longitude = Annotated[float, Field(ge=-180, le=180, **Strict)]
Latitude = Annotated[float, Field(ge=-90, le=90, **Strict)]
Count = Annotated[float, Field(ge=0, le=MAX_COUNT, **Strict)]
PositiveCount = Annotated[float, Field(gt=0, le=MAX_COUNT, **Strict)]
Income = Annotated[float, Field(ge=0, le=1e6, **Strict)]
OceanProximity = Literal["<1H OCEAN", "INLAND", "NEAR OCEAN", "NEAR BAY", "ISLAND"]


class Instance(BaseModel):
    """One district: the 9 raw features of the book's dataset."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    longitude: Longitude = Field(description="Degrees, west negative, e.g. -122.23.")
    latitude: Latitude = Field(description="Degrees north, e.g. 37.88.")
    housing_median_age: Count = Field(description="Median age of the houses, years.")
    total_rooms: PositiveCount = Field(description="Rooms in the district (> 0).")
    total_bedrooms: Count | None = Field(None, description="Bedrooms; null when unknown.")
    population: Count = Field(description="People living in the district.")
    households: PositiveCount = Field(description="Households in the district (> 0).")
    median_income: Income = Field(description="Median income, tens of thousands of USD.")
    ocean_proximity: OceanProximity = Field(description="One of the five categories.")


class PredictRequest(BaseModel):
    """``{"instances": [...]}``; Vertex AI may add ``parameters``, which are ignored."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"instances": [EXAMPLE_INSTANCE]}]},
    )

    instances: list[Instance] = Field(min_length=1, description="Districts to price.")
    parameters: dict[str, Any] | None = Field(
        None, description="Accepted for the Vertex AI contract; unused."
    )


class Prediction(BaseModel):
    median_house_value: float = Field(description="Predicted median house value, USD.")
    out_of_range: list[str] = Field(
        default_factory=list,
        description="Features outside the training data's range (served, but less reliable).",
    )


class ModelRef(BaseModel):
    name: str
    version: int | None = Field(description="Version that served the request.")


class PredictResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "predictions": [{"median_house_value": 452600.0, "out_of_range": []}],
                    "model": {"name": "housing_sklearn", "version": 1},
                }
            ]
        }
    )

    predictions: list[Prediction]
    model: ModelRef


class VersionStatus(BaseModel):
    version: int
    state: str = Field(description="UNKNOWN, START, LOADING, AVAILABLE, UNLOADING or END.")
    error: str | None = None


class ModelInfo(BaseModel):
    name: str
    target: str = Field(description="gRPC upstream serving this model.")
    default: bool = Field(description="Whether POST /v1/predict uses this model.")
    versions: list[VersionStatus] = Field(default_factory=list)
    error: str | None = Field(None, description="Why the upstream could not be asked.")


class ModelList(BaseModel):
    models: list[ModelInfo]


class Readiness(BaseModel):
    ready: bool
    models: dict[str, str] = Field(description="Model name -> AVAILABLE or the reason not.")
    warnings: list[str] = Field(
        default_factory=list,
        description="Problems that do not stop serving, e.g. prediction log writes failing.",
    )


class ErrorDetail(BaseModel):
    loc: list[str | int]
    instance: int | None = None
    field: str | None = None
    message: str
    type: str


class ErrorBody(BaseModel):
    """Every non-2xx answer: a stable code, a message, and per-field details for 422."""

    error: str
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)
    request_id: str | None = None
