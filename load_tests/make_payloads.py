"""Write the fixed load-test payloads from the book's test split (run once, files committed).

``payloads/instances.json``: rows sampled (seed 42) from the test split, as the gateway's
instance objects (missing ``total_bedrooms`` kept as ``null``, as real clients send it).
``payloads/invalid.json``: requests that must be refused with a 4xx, each with the status
range it must get and why. Fixed files keep every run, and every peer, on the same inputs.

    .venv/bin/python load_tests/make_payloads.py
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from core.contract import FEATURES
from training.data import load_split

PAYLOADS = Path(__file__).resolve().parent / "payloads"
ROWS = 200
SEED = 42


def instances(rows: int = ROWS, seed: int = SEED) -> list[dict[str, object]]:
    test = load_split().test
    sample = test.sample(n=rows, random_state=seed)
    # Keep a few rows with a missing total_bedrooms: the service must accept null.
    missing = test[test["total_bedrooms"].isna()].sample(n=4, random_state=seed)
    frame = sample.drop(missing.index, errors="ignore").iloc[: rows - len(missing)]
    out = []
    for _, row in list(frame.iterrows()) + list(missing.iterrows()):
        item: dict[str, object] = {}
        for name in FEATURES:
            value = row[name]
            if isinstance(value, float):
                item[name] = None if math.isnan(value) else round(value, 5)
            else:
                item[name] = value
        out.append(item)
    return out


def invalid(example: dict[str, object]) -> list[dict[str, object]]:
    """Bad requests and the answer class they must get (never a 5xx)."""

    def with_(**changes: object) -> dict[str, object]:
        return {"instances": [{**example, **changes}]}

    without = {k: v for k, v in example.items() if k != "median_income"}
    return [
        {"why": "unknown ocean_proximity", "body": with_(ocean_proximity="ON THE MOON")},
        {"why": "negative count", "body": with_(population=-5)},
        {"why": "string for a number", "body": with_(median_income="lots")},
        {"why": "missing feature", "body": {"instances": [without]}},
        {"why": "null non-nullable feature", "body": with_(latitude=None)},
        {"why": "empty instances", "body": {"instances": []}},
        {"why": "instances not a list", "body": {"instances": example}},
        {"why": "no instances key", "body": {"rows": [example]}},
        {"why": "non-finite number", "raw": json.dumps(with_(longitude=math.inf))},
        {"why": "not JSON", "raw": "{instances: nope"},
        {"why": "unknown model", "body": {"instances": [example]}, "model": "no_such_model"},
    ]


def main() -> int:
    PAYLOADS.mkdir(parents=True, exist_ok=True)
    rows = instances()
    lines = ",\n".join(json.dumps(row) for row in rows)
    (PAYLOADS / "instances.json").write_text(f"[\n{lines}\n]\n")
    (PAYLOADS / "invalid.json").write_text(json.dumps(invalid(rows[0]), indent=1) + "\n")
    print(f"wrote {len(rows)} instances and {len(invalid(rows[0]))} invalid requests")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
