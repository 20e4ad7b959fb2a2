"""Drift verdicts on synthetic data whose expected answer is written down before anything runs.

Every case runs twice: against the raw reference table and against its stored profile (a quantile
sketch for continuous features at these sizes), and must give the same verdict both ways.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from mlops_runtime.drift import build_profile, detect_drift

Generator = Callable[[np.random.Generator, int], np.ndarray]
CATEGORIES = np.array(["a", "b", "c", "d"])
BASE_SHARES = [0.4, 0.3, 0.2, 0.1]


def normal(mean: float = 0.0, std: float = 1.0) -> Generator:
    return lambda rng, n: rng.normal(mean, std, n)


def lognormal() -> Generator:
    return lambda rng, n: rng.lognormal(0.0, 1.0, n)


def small_integers() -> Generator:
    return lambda rng, n: rng.poisson(3.0, n)


def categories(shares: list[float], unseen: float = 0.0) -> Generator:
    def draw(rng: np.random.Generator, n: int) -> np.ndarray:
        values = CATEGORIES[rng.choice(len(CATEGORIES), size=n, p=shares)].astype(object)
        values[rng.random(n) < unseen] = "never-seen"
        return values
    return draw


def with_missing(base: Generator, rate: float) -> Generator:
    def draw(rng: np.random.Generator, n: int) -> np.ndarray:
        values = base(rng, n).astype(float)
        values[rng.random(n) < rate] = np.nan
        return values
    return draw


# id, reference, current, rows per side, expected drift, the check expected to fire
CASES = [
    ("no drift: normal", normal(), normal(), 20_000, False, None),
    ("no drift: lognormal", lognormal(), lognormal(), 20_000, False, None),
    ("no drift: small integers", small_integers(), small_integers(), 20_000, False, None),
    ("no drift: categorical", categories(BASE_SHARES), categories(BASE_SHARES), 20_000, False, None),
    ("no drift: 2% NaN both sides", with_missing(normal(), 0.02), with_missing(normal(), 0.02), 20_000, False, None),
    ("no drift: noise at 50 rows", normal(), normal(), 50, False, None),
    ("drift: mean +0.5 sd", normal(), normal(mean=0.5), 20_000, True, "distribution"),
    ("drift: std x1.5", normal(), normal(std=1.5), 20_000, True, "distribution"),
    ("drift: category shift", categories(BASE_SHARES), categories([0.25] * 4), 20_000, True, "distribution"),
    ("drift: 2% unseen category", categories(BASE_SHARES), categories(BASE_SHARES, unseen=0.02), 20_000, True,
     "distribution"),
    ("drift: NaN 2% -> 10%", with_missing(normal(), 0.02), with_missing(normal(), 0.10), 20_000, True,
     "missing_rate"),
    ("negligible: mean +0.05 sd at 1M rows", normal(), normal(mean=0.05), 1_000_000, False, None),
    ("negligible: 1-point category shift at 1M rows", categories(BASE_SHARES), categories([0.41, 0.29, 0.2, 0.1]),
     1_000_000, False, None),
]


def case_tables(index: int, reference: Generator, current: Generator, rows: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    return (pd.DataFrame({"x": reference(np.random.default_rng([index, 0]), rows)}),
            pd.DataFrame({"x": current(np.random.default_rng([index, 1]), rows)}))


@pytest.mark.parametrize("mode", ["table", "profile"])
@pytest.mark.parametrize(("index", "case"), list(enumerate(CASES)), ids=[case[0] for case in CASES])
def test_verdict(index, case, mode):
    _name, reference, current, rows, expected, firing = case
    ref, cur = case_tables(index, reference, current, rows)
    report = detect_drift(build_profile(ref) if mode == "profile" else ref, cur)
    feature = report["features"]["x"]
    fired = [name for name, check in feature["checks"].items() if check and check["drift"]]
    assert feature["drift"] is expected, feature["reasons"] or feature["checks"]
    assert fired == ([firing] if firing else [])
    assert report["dataset"]["drift_detected"] is expected  # one feature: share 1 or 0
    if _name.startswith("negligible"):
        distribution = feature["checks"]["distribution"]
        assert distribution["significant"] and not distribution["effect_passed"], "silenced by the effect size"


def test_false_alarm_rate_is_at_most_one_percent_per_feature():
    rows, repetitions = 2_000, 200
    flagged = dict.fromkeys(["normal", "lognormal", "small_integers", "categorical", "nan_2pct"], 0)
    def table(rng: np.random.Generator) -> pd.DataFrame:
        return pd.DataFrame({"normal": normal()(rng, rows), "lognormal": lognormal()(rng, rows),
                             "small_integers": small_integers()(rng, rows),
                             "categorical": categories(BASE_SHARES)(rng, rows),
                             "nan_2pct": with_missing(normal(), 0.02)(rng, rows)})

    for seed in range(repetitions):
        rng = np.random.default_rng([seed, 7])
        report = detect_drift(table(rng), table(rng), workers=1)
        for name, feature in report["features"].items():
            flagged[name] += feature["drift"]
    assert all(count <= repetitions // 100 for count in flagged.values()), flagged


def test_a_critical_feature_alone_makes_the_dataset_drift():
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({f"f{i}": rng.normal(size=5000) for i in range(4)})
    cur = pd.DataFrame({f"f{i}": rng.normal(size=5000) + (1.0 if i == 2 else 0.0) for i in range(4)})
    plain = detect_drift(ref, cur)
    assert plain["dataset"]["drifted_features"] == ["f2"]
    assert plain["dataset"]["drift_share"] == 0.25 and not plain["dataset"]["drift_detected"]
    critical = detect_drift(ref, cur, critical_features=["f2"])
    assert critical["dataset"]["drift_detected"] and critical["dataset"]["critical_drifted"] == ["f2"]
    assert critical["dataset"]["reasons"] == ["critical feature(s) drifted: f2"]


def test_the_share_of_drifted_features_decides_the_dataset():
    rng = np.random.default_rng(4)
    ref = pd.DataFrame({f"f{i}": rng.normal(size=5000) for i in range(4)})
    cur = pd.DataFrame({f"f{i}": rng.normal(size=5000) + (1.0 if i < 2 else 0.0) for i in range(4)})
    from mlops_runtime.drift import Thresholds

    assert detect_drift(ref, cur)["dataset"]["drift_detected"]  # 2 of 4 >= 0.5
    report = detect_drift(ref, cur, thresholds=Thresholds(drift_share=0.75))
    assert report["dataset"]["drift_share"] == 0.5 and not report["dataset"]["drift_detected"]
