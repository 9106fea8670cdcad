"""Training-data ranges, so valid but unusual inputs can be flagged instead of rejected.

The bounds are the min and max of each numeric feature over the book's training split
(16,512 rows); a test recomputes them from the data, so they cannot silently go stale.
Kept as constants so the request path does no data loading.
"""

from __future__ import annotations

from .schemas import Instance

TRAINING_RANGES: dict[str, tuple[float, float]] = {
    "longitude": (-124.35, -114.49),
    "latitude": (32.55, 41.95),
    "housing_median_age": (1.0, 52.0),
    "total_rooms": (2.0, 39320.0),
    "total_bedrooms": (1.0, 6210.0),
    "population": (3.0, 16305.0),
    "households": (1.0, 5358.0),
    "median_income": (0.4999, 15.0001),
}
_ITEMS = tuple(TRAINING_RANGES.items())


def out_of_range(instance: Instance) -> list[str]:
    """Names of the features of ``instance`` outside the training range (None is fine)."""
    fields = vars(instance)
    return [
        name
        for name, (low, high) in _ITEMS
        if (value := fields[name]) is not None and not low <= value <= high
    ]
