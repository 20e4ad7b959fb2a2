"""The drift statistics agree with scipy: exactly with a raw reference, within the documented bound
with a sketched profile; plus PSI, BH, profiles, column sources and edge cases."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, false_discovery_control, ks_2samp, wasserstein_distance

from mlops_runtime import drift, drift_statistics
from mlops_runtime.columnar import ParquetColumns, category_key
from mlops_runtime.drift import ECDF, Thresholds, build_profile, detect_drift, ks_wasserstein
from mlops_runtime.errors import BadInputError


def ecdf(values: np.ndarray) -> ECDF:
    return ECDF.of_sorted(np.sort(values))


def samples(kind: str, rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray:
    if kind == "continuous":
        return rng.normal(shift, 1.0, n)
    if kind == "integers":
        return rng.integers(0, 7, n).astype(float) + np.round(shift)
    return np.round(rng.normal(shift, 1.0, n), 1)  # many ties, within and across the samples


@pytest.mark.parametrize("kind", ["continuous", "integers", "rounded"])
def test_kernel_matches_scipy_on_random_sizes(kind):
    rng = np.random.default_rng(11)
    for _ in range(60):
        a = samples(kind, rng, int(rng.integers(1, 2500)))
        b = samples(kind, rng, int(rng.integers(1, 2500)), shift=float(rng.normal(0, 0.3)))
        statistic, distance = ks_wasserstein(ecdf(a), np.sort(b))
        assert statistic == ks_2samp(a, b, method="asymp").statistic  # the very same ratios of counts
        assert distance == pytest.approx(wasserstein_distance(a, b), rel=1e-12, abs=1e-15)


def test_kernel_blocks_join_seamlessly(monkeypatch):
    """Merging in blocks (as for millions of values) gives the single-block answer."""
    rng = np.random.default_rng(12)
    a, b = np.round(rng.normal(0, 1, 30_000), 2), np.round(rng.normal(0.1, 1.2, 20_000), 2)
    expected = ks_2samp(a, b, method="asymp").statistic, wasserstein_distance(a, b)
    monkeypatch.setattr(drift_statistics, "_BLOCK", 997)
    monkeypatch.setattr(drift_statistics, "_KS_BLOCK", 61)
    for left, right in ((a, b), (b, a), (a[:500], b), (a, b[:500])):
        statistic, distance = ks_wasserstein(ecdf(left), np.sort(right))
        assert statistic == ks_2samp(left, right, method="asymp").statistic
        assert distance == pytest.approx(wasserstein_distance(left, right), rel=1e-12)
    monkeypatch.setattr(drift_statistics, "_KS_BLOCK", 1)  # every value its own block
    assert ks_wasserstein(ecdf(a), np.sort(b)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("n_ref", "n_cur"), [(300, 200), (5_000, 4_990), (40_000, 30_000)])
def test_report_statistics_match_scipy_with_a_raw_reference(n_ref, n_cur):
    rng = np.random.default_rng(n_ref)
    ref, cur = rng.lognormal(0, 1, n_ref), rng.lognormal(0.05, 1, n_cur)
    check = detect_drift(pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur}))["features"]["x"]["checks"]["distribution"]
    expected = ks_2samp(ref, cur)  # scipy's own choice of exact or asymptotic p-value
    assert check["statistic"] == pytest.approx(expected.statistic, rel=1e-12)
    assert check["p_value"] == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    assert check["wasserstein"] == pytest.approx(wasserstein_distance(ref, cur), rel=1e-12)
    assert check["effects"]["wasserstein_normalized"]["value"] == pytest.approx(
        wasserstein_distance(ref, cur) / ref.std(), rel=1e-12)


def test_large_sample_ks_pvalue_stays_close_to_scipy():
    """Above 20 000 effective values the p-value is the corrected Kolmogorov limit (scipy's exact
    kstwo.sf takes O(N) per call there); its documented error: < 6e-5 relative for p > 0.02, < 0.3 %
    down to p = 1e-10."""
    from scipy.stats import kstwo

    for effective in (20_001, 60_000):
        for scaled in (0.3, 0.8, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 4.7):
            d = scaled / np.sqrt(effective)
            expected = kstwo.sf(d, effective)
            tolerance = 6e-5 if expected > 0.02 else 3e-3
            assert drift.ks_pvalue(d, 2 * effective, 2 * effective) == pytest.approx(expected, rel=tolerance)


@pytest.mark.parametrize("kind", ["normal", "lognormal", "mixture with ties"])
def test_profile_sketch_stays_within_its_documented_bound(kind):
    rng = np.random.default_rng(5)
    n = 200_000
    if kind == "normal":
        ref, cur = rng.normal(0, 1, n), rng.normal(0.03, 1, 50_000)
    elif kind == "lognormal":
        ref, cur = rng.lognormal(0, 1.5, n), rng.lognormal(0.1, 1.5, 50_000)
    else:
        ref = np.where(rng.random(n) < 0.3, np.round(rng.normal(0, 1, n)), rng.normal(0, 1, n))
        cur = np.where(rng.random(50_000) < 0.35, np.round(rng.normal(0, 1, 50_000)), rng.normal(0, 1, 50_000))
    ref_table, cur_table = pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur})
    profile = build_profile(ref_table, sketch_size=10_000)
    assert not profile["features"]["x"]["exact"] and len(profile["features"]["x"]["values"]) <= 10_000
    exact = detect_drift(ref_table, cur_table)["features"]["x"]["checks"]["distribution"]
    approx = detect_drift(profile, cur_table)["features"]["x"]["checks"]["distribution"]
    bound = approx["approximation"]
    assert bound["ks_statistic_error_bound"] <= 1 / (2 * 10_000) + 1e-12  # the proven worst case
    assert abs(approx["statistic"] - exact["statistic"]) <= bound["ks_statistic_error_bound"] + 1e-12
    assert abs(approx["wasserstein"] - exact["wasserstein"]) <= bound["wasserstein_error_bound"] + 1e-12
    assert bound["wasserstein_normalized_error_bound"] < 0.01  # far below the 0.1 threshold
    assert approx["effects"]["psi"]["value"] == exact["effects"]["psi"]["value"]  # PSI counts are exact
    assert approx["statistic"] == pytest.approx(ks_2samp(ref, cur).statistic, abs=1 / 20_000 + 1e-12)
    assert approx["wasserstein"] == pytest.approx(wasserstein_distance(ref, cur), abs=bound["wasserstein_error_bound"])


def test_an_exact_profile_gives_the_raw_reference_report(tmp_path):
    rng = np.random.default_rng(6)
    ref = pd.DataFrame({"ints": rng.poisson(4, 50_000), "cat": rng.choice(["u", "v", "w"], 50_000)})
    cur = pd.DataFrame({"ints": rng.poisson(4.3, 40_000), "cat": rng.choice(["u", "v", "w", "x"], 40_000)})
    uri = str(tmp_path / "profile.json")
    profile = drift.write_profile(ref, uri)
    assert profile["features"]["ints"]["exact"]  # fewer distinct values than the sketch size
    assert drift.read_profile(uri) == json.loads(json.dumps(profile))
    from_profile = detect_drift(drift.read_profile(uri), cur)
    from_table = detect_drift(ref, cur)
    assert from_profile["features"] == from_table["features"]
    assert from_profile["dataset"] == from_table["dataset"]


def test_categorical_statistics_match_scipy():
    rng = np.random.default_rng(7)
    ref = pd.DataFrame({"c": rng.choice(["a", "b", "c", None], p=[0.5, 0.3, 0.15, 0.05], size=8_000)})
    cur = pd.DataFrame({"c": rng.choice(["a", "b", "c", "new", None], p=[0.45, 0.3, 0.15, 0.03, 0.07], size=6_000)})
    check = detect_drift(ref, cur)["features"]["c"]["checks"]["distribution"]
    names, reference, current = (check["buckets"][k] for k in ("names", "reference", "current"))
    assert names == ["a", "b", "c", "__missing__", "__unseen__"]
    assert reference[3] == ref["c"].isna().sum() and current[4] == (cur["c"] == "new").sum()
    expected = chi2_contingency(np.array([reference, current]))
    assert check["statistic"] == pytest.approx(expected.statistic, rel=1e-12)
    assert check["p_value"] == pytest.approx(expected.pvalue, rel=1e-9)
    js = jensenshannon(np.array(reference) / 8_000, np.array(current) / 6_000, base=2)
    assert check["effects"]["jensen_shannon"]["value"] == pytest.approx(js, rel=1e-12)
    assert check["effects"]["unseen_share"]["value"] == pytest.approx((cur["c"] == "new").mean())


def test_psi_by_hand():
    ref = pd.DataFrame({"x": np.arange(1.0, 101.0)})  # deciles 10, 20, ..., 90; min 1, max 100
    cur = pd.DataFrame({"x": np.concatenate([np.full(30, 0.5), np.full(60, 55.0), np.full(10, 150.0)])})
    check = detect_drift(ref, cur)["features"]["x"]["checks"]["distribution"]
    bins = check["psi_bins"]
    assert bins["edges"] == [1.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0]
    # below min, [1,10), [10,20) ... [80,90), [90,100], above max, missing
    assert bins["reference"] == [0, 9, 10, 10, 10, 10, 10, 10, 10, 10, 11, 0, 0]
    assert bins["current"] == [30, 0, 0, 0, 0, 0, 60, 0, 0, 0, 0, 10, 0]
    r = np.maximum(np.array(bins["reference"]) / 100, 1e-4)
    c = np.maximum(np.array(bins["current"]) / 100, 1e-4)
    assert check["effects"]["psi"]["value"] == pytest.approx(float(np.sum((c - r) * np.log(c / r))), rel=1e-12)


def test_missing_rate_test_is_the_two_proportion_z_test():
    ref = pd.DataFrame({"x": np.where(np.arange(4000) % 50 == 0, np.nan, 1.0) * np.arange(4000)})
    cur = pd.DataFrame({"x": np.where(np.arange(3000) % 10 == 0, np.nan, 1.0) * np.arange(3000)})
    check = detect_drift(ref, cur)["features"]["x"]["checks"]["missing_rate"]
    assert (check["reference_rate"], check["current_rate"]) == (0.02, 0.1)
    table = np.array([[80, 3920], [300, 2700]])  # the z test's p-value is the uncorrected chi-square's
    assert check["p_value"] == pytest.approx(chi2_contingency(table, correction=False).pvalue, rel=1e-9)
    assert check["drift"]


def test_every_verdict_is_effect_and_bh_q_below_alpha():
    rng = np.random.default_rng(8)
    ref = pd.DataFrame({f"f{i}": rng.normal(size=3000) for i in range(6)} | {"c": rng.choice(list("xyz"), 3000)})
    cur = pd.DataFrame({f"f{i}": rng.normal(0.05 * i, 1, 3000) for i in range(6)}
                       | {"c": rng.choice(list("xyz"), 3000)})
    report = detect_drift(ref, cur, thresholds=Thresholds(alpha=0.1))
    checks = [c for f in report["features"].values() for c in f["checks"].values()]
    # One BH family: every check's test plus, beside KS on samples of at most 10 000, Anderson-Darling.
    tests = [t for c in checks for t in (c, c.get("anderson_darling")) if t is not None]
    assert len(tests) == len(checks) + 6  # the six numerical features at 3 000 rows
    q = false_discovery_control([t["p_value"] for t in tests], method="bh")
    assert [t["q_value"] for t in tests] == pytest.approx(list(q), rel=1e-12)
    for check in checks:
        q_check = min(t["q_value"] for t in (check, check.get("anderson_darling")) if t is not None)
        assert check["drift"] == (check["effect_passed"] and q_check < 0.1)
        for effect in check["effects"].values():  # passing means the interval's lower end passes
            assert effect["passed"] == (effect["lower"] is not None and effect["lower"] >= effect["threshold"])
            assert effect["lower"] is None or effect["lower"] <= effect["value"]


def test_parquet_columns_give_the_dataframe_report(tmp_path):
    rng = np.random.default_rng(9)
    frame = pd.DataFrame({"x": rng.normal(size=20_000), "n": rng.integers(0, 4, 20_000),
                          "c": pd.Categorical(rng.choice(["p", "q"], 20_000)), "flag": rng.random(20_000) < 0.3})
    frame.loc[::17, "x"] = np.nan
    current = frame.sample(frac=1.0, random_state=1).assign(x=lambda t: t["x"] + 0.2)
    path = tmp_path / "current.parquet"
    pq.write_table(pa.Table.from_pandas(current, preserve_index=True), path, row_group_size=3_000)
    columns = ParquetColumns(path)
    assert columns.names == ["x", "n", "c", "flag"]  # the pandas index column is not a feature
    from_file = detect_drift(frame, columns, categorical_features=["n"])
    from_frame = detect_drift(frame, current, categorical_features=["n"])
    assert from_file["features"] == from_frame["features"]
    assert from_file["features"]["flag"]["kind"] == "categorical"


def test_an_all_null_parquet_column_is_all_missing(tmp_path):
    rng = np.random.default_rng(13)
    reference = pd.DataFrame({"x": rng.normal(size=1000), "c": rng.choice(["p", "q"], 1000)})
    path = tmp_path / "current.parquet"
    pq.write_table(pa.table({"x": pa.nulls(800), "c": pa.nulls(800)}), path)  # Parquet's null type
    report = detect_drift(reference, ParquetColumns(path))
    for name in ("x", "c"):
        feature = report["features"][name]
        assert feature["n_cur_missing"] == 800 and feature["checks"]["missing_rate"]["drift"]


def test_category_keys_agree_across_sources():
    assert [category_key(v) for v in (3, 3.0, np.int64(3), np.float32(3.0), True, np.bool_(False), "3", b"3")] == \
        ["3", "3", "3", "3", "True", "False", "3", "3"]
    assert [category_key(v) for v in (None, float("nan"), pd.NA, 2.5)] == [None, None, None, "2.5"]
    ref = pd.DataFrame({"code": np.array([1, 2, 3] * 1000)})
    cur = pd.DataFrame({"code": np.array([1.0, 2.0, 3.0, np.nan] * 750)})  # same codes, read as floats
    feature = detect_drift(ref, cur, categorical_features=["code"])["features"]["code"]
    assert feature["checks"]["distribution"]["buckets"]["current"][-1] == 0  # nothing unseen
    assert feature["checks"]["missing_rate"]["drift"]  # 0 % -> 25 % missing


def test_truncated_reference_categories_pool_into_other():
    rng = np.random.default_rng(10)
    ref = pd.DataFrame({"id": rng.choice([f"k{i}" for i in range(50)], 5000)})
    cur = pd.DataFrame({"id": rng.choice([f"k{i}" for i in range(60)], 5000)})
    profile = build_profile(ref, max_categories=10)
    check = detect_drift(profile, cur)["features"]["id"]["checks"]["distribution"]
    assert check["truncated_reference"] and check["buckets"]["names"][10] == "__other__"
    assert check["buckets"]["current"][-1] == 0  # values beyond the stored ones count as other, not unseen


def test_edge_cases_constant_and_empty_columns():
    ref = pd.DataFrame({"const": np.full(2000, 5.0), "gone": np.arange(2000.0)})
    cur = pd.DataFrame({"const": np.r_[np.full(1900, 5.0), np.full(100, 6.0)], "gone": np.full(2000, np.nan)})
    report = detect_drift(ref, cur)
    const = report["features"]["const"]["checks"]["distribution"]
    assert const["effects"]["wasserstein_normalized"]["value"] is None  # no spread to normalise by
    assert const["effects"]["psi"]["passed"] and report["features"]["const"]["drift"]  # 5% above the old maximum
    gone = report["features"]["gone"]
    assert gone["checks"]["distribution"] is None and gone["drift"]
    assert gone["reasons"][0].startswith("missing_rate: absolute_change 1 >= 0.05")


def test_schema_errors_name_the_input():
    ref = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"], "target": [0, 1]})
    with pytest.raises(BadInputError, match="not in the reference: extra") as error:
        detect_drift(ref, ref.assign(extra=1))
    assert error.value.label == "--current-uri"
    with pytest.raises(BadInputError, match="reference column\\(s\\) missing: b"):
        detect_drift(ref, ref.drop(columns=["b"]))
    with pytest.raises(BadInputError, match="'a' is numerical in the reference but"):
        detect_drift(ref, ref.assign(a=["p", "q"]))
    with pytest.raises(BadInputError, match="critical feature\\(s\\) not among") as error:
        detect_drift(ref, ref, critical_features=["nope"])
    assert error.value.label == "--critical-features"
    with pytest.raises(BadInputError, match="the current table is empty"):
        detect_drift(ref, ref.iloc[:0])
    assert "target" in detect_drift(ref, ref)["features"]  # a column like any other without target_column
    assert "target" not in detect_drift(ref, ref.drop(columns=["target"]), target_column="target")["features"]


@pytest.mark.parametrize("bad", [{"psi": 0.0}, {"alpha": 1.0}, {"jensen_shannon": 1.5}, {"drift_share": -0.1}])
def test_thresholds_out_of_range_are_refused(bad):
    with pytest.raises(ValueError, match="out of range"):
        Thresholds(**bad)
