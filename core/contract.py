"""The service's feature contract: names, types and categories shared by every component."""

from __future__ import annotations

from typing import Any

NUMERIC_FEATURES: tuple[str, ...] = (
    "longitude",
    "latitude",
    "housing_median_age",
    "total_rooms",
    "total_bedrooms",
    "population",
    "households",
    "median_income",
)
CATEGORICAL_FEATURE = "ocean_proximity"
FEATURES: tuple[str, ...] = (*NUMERIC_FEATURES, CATEGORICAL_FEATURE)
TARGET = "median_house_value"
COLUMNS: tuple[str, ...] = (*NUMERIC_FEATURES[:8], TARGET, CATEGORICAL_FEATURE)

OCEAN_PROXIMITY_CATEGORIES: tuple[str, ...] = (
    "<1H OCEAN",
    "INLAND",
    "NEAR OCEAN",
    "NEAR BAY",
    "ISLAND",
)

# Features that are counts (must be non-negative) and the one that may be missing.
COUNT_FEATURES: tuple[str, ...] = (
    "housing_median_age",
    "total_rooms",
    "total_bedrooms",
    "population",
    "households",
)
NULLABLE_FEATURES: tuple[str, ...] = ("total_bedrooms",)

# Model names in the model repository.
SKLEARN_MODEL = "housing_sklearn"
KERAS_MODEL = "housing_keras"

# The version label that means "production": what every caller gets when it names no version.
DEFAULT_LABEL = "stable"

# The ▶ prediction signature shared by every served model.
SIGNATURE_NAME = "serving_default"
OUTPUT_NAME = "median_house_value"

# The first district of the book's data: the example in docs, curl snippets and tests.
EXAMPLE_INSTANCE: dict[str, Any] = {
    "longitude": -122.23,
    "latitude": 37.88,
    "housing_median_age": 41.0,
    "total_rooms": 880.0,
    "total_bedrooms": 129.0,
    "population": 322.0,
    "households": 126.0,
    "median_income": 8.3252,
    "ocean_proximity": "NEAR BAY",
}
