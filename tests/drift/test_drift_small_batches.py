"""Small batches (issue 11, item 8): at 300 rows a side, over seeded repeats, a negligible shift stays quiet
while a real shift or a change of scale is caught.

A shift counts as large only when the lower end of its effect size's confidence interval passes the
threshold (mlops_runtime.drift_bounds), and Anderson-Darling k-sample sits beside KS in the same BH
family (KS has little power for a change of scale: about 55 % at p < 0.01 here, Anderson-Darling 95 %).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_runtime.drift import build_profile, detect_drift

ROWS, REPEATS = 300, 100


def flagged(mean: float, std: float, *, profile: bool = False) -> int:
    count = 0
    for seed in range(REPEATS):
        rng = np.random.default_rng([seed, 300])
        reference = pd.DataFrame({"x": rng.normal(0.0, 1.0, ROWS)})
        current = pd.DataFrame({"x": rng.normal(mean, std, ROWS)})
        report = detect_drift(build_profile(reference) if profile else reference, current, workers=1)
        count += report["features"]["x"]["drift"]
    return count


@pytest.mark.parametrize("profile", [False, True], ids=["table", "profile"])
def test_a_negligible_shift_is_flagged_in_at_most_5_percent(profile):
    assert flagged(0.05, 1.0, profile=profile) <= REPEATS * 5 // 100


def test_a_half_sigma_shift_is_caught_in_at_least_95_percent():
    assert flagged(0.5, 1.0) >= REPEATS * 95 // 100


def test_a_scale_change_is_caught_in_at_least_90_percent():
    assert flagged(0.0, 1.5) >= REPEATS * 90 // 100


def test_no_change_is_flagged_in_at_most_5_percent():
    assert flagged(0.0, 1.0) <= REPEATS * 5 // 100
