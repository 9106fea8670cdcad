"""The service's feature contract: names, types and categories shared by every component."""

from __future__ import annotations

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

# The ▶ prediction signature shared by every served model.
SIGNATURE_NAME = "serving_default"
OUTPUT_NAME = "median_house_value"
