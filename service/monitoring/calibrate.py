"""Measure the drift decision's false-alarm rate and power on the real data.

``python -m service.monitoring.calibrate [--samples N]`` prints, per window size, how
often unshifted random samples are flagged and how often shifted ones are. It runs the
same per-column tests as the Evidently report (K-S on float32 values, chi-square
homogeneity) directly with SciPy, so thousands of samples take a minute, not an hour.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from core.contract import CATEGORICAL_FEATURE, NUMERIC_FEATURES
from service.monitoring.drift import COLUMN_P_VALUE, chi2_homogeneity_p_value, prepare
from service.monitoring.simulate import shifted_rows

SIZES = (200, 500, 1000, 2000, 4000)


def p_values(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, float]:
    """The 9 per-column p-values the drift report computes."""
    ref, cur = prepare(reference, "reference"), prepare(current, "current")
    out = {
        name: float(ks_2samp(ref[name].dropna(), cur[name].dropna())[1])
        for name in NUMERIC_FEATURES
    }
    out[CATEGORICAL_FEATURE] = chi2_homogeneity_p_value(
        ref[CATEGORICAL_FEATURE], cur[CATEGORICAL_FEATURE]
    )
    return out


SCENARIOS = ("unshifted", "income x1.5", "income x1.2", "60% INLAND", "25% to INLAND")


def scenario(name: str, split: Any, everything: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    """One random window of ``size`` rows under the named scenario."""
    if name == "unshifted":
        return everything.sample(size, random_state=seed)
    if name == "income x1.5":
        return shifted_rows(split.test, size, "income", seed)
    if name == "60% INLAND":
        return shifted_rows(split.test, size, "ocean", seed)
    frame = split.test.sample(size, random_state=seed)
    if name == "income x1.2":
        return frame.assign(median_income=frame["median_income"] * 1.2)
    flipped = frame.sample(frac=0.25, random_state=seed).index
    frame = frame.copy()
    frame.loc[flipped, CATEGORICAL_FEATURE] = "INLAND"
    return frame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100, help="random samples per cell")
    parser.add_argument(
        "--thresholds", type=float, nargs="+", default=[COLUMN_P_VALUE], help="p-value cut-offs"
    )
    args = parser.parse_args(argv)

    from training.data import load_split
    from training.reference import reference_sample

    split = load_split()
    reference = reference_sample(split.train, lambda f: np.zeros(len(f)))
    everything = pd.concat([split.train, split.test])
    print(f"share of windows flagged; reference: 2,000 training rows; {args.samples} samples")
    print("threshold  size  " + "  ".join(f"{name:>13}" for name in SCENARIOS))
    for size in SIZES:
        minima = {
            name: np.array(
                [
                    min(p_values(reference, scenario(name, split, everything, size, s)).values())
                    for s in range(args.samples)
                ]
            )
            for name in SCENARIOS
        }
        for threshold in args.thresholds:
            rates = [f"{(minima[name] < threshold).mean():>13.1%}" for name in SCENARIOS]
            print(f"{threshold:>9g}  {size:>4}  " + "  ".join(rates), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
