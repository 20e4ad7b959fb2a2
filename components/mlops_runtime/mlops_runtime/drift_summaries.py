"""Per-feature summaries (what a reference profile stores) and the checks that compare two of them.

The checks and their thresholds are described in :mod:`mlops_runtime.drift`'s docstring.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import drift_bounds
from .columnar import CATEGORICAL, NUMERICAL
from .drift_statistics import (
    ECDF,
    EXACT_KS_MAX_N,
    PSI_EPSILON,
    ks_pvalue,
    ks_wasserstein,
    population_stability_index,
    small_sample_ks,
    two_proportion_pvalue,
    wasserstein,
)

MISSING, UNSEEN, OTHER = "__missing__", "__unseen__", "__other__"
PSI_QUANTILES = 10


@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds. Defaults: PSI 0.2 is the industry line for a significant population shift;
    a Wasserstein distance of 0.1 reference standard deviations and a JS distance of 0.1 are the
    thresholds Evidently uses; 1 % of unseen categories and a 5-point change in the missing rate are
    shifts a model was never trained for; alpha 0.05 is the false discovery rate of flagged checks."""

    psi: float = 0.2
    wasserstein: float = 0.1
    jensen_shannon: float = 0.1
    unseen: float = 0.01
    missing_rate: float = 0.05
    alpha: float = 0.05
    drift_share: float = 0.5
    confidence: float = 0.975  # one-sided: the lower end of a two-sided 95 % interval must pass the threshold

    def __post_init__(self) -> None:
        limits = {"psi": (0, math.inf), "wasserstein": (0, math.inf), "jensen_shannon": (0, 1), "unseen": (0, 1),
                  "missing_rate": (0, 1), "alpha": (0, 1), "drift_share": (0, 1), "confidence": (0, 1)}
        for name, (low, high) in limits.items():
            value = getattr(self, name)
            if not (low < value <= high) or (name in ("alpha", "confidence") and value >= 1):
                raise ValueError(f"threshold {name}={value} is out of range ({low}, {high}]")


@dataclass(eq=False)
class NumericSummary:
    n_rows: int
    n_missing: int
    ecdf: ECDF
    mean: float | None
    std: float | None
    psi_edges: np.ndarray  # left edges: the minimum, then distinct deciles above it
    psi_maximum: float | None
    psi_counts: np.ndarray  # below min, one per edge, above max, missing
    exact: bool = True
    ks_error: float = 0.0
    wasserstein_error: float = 0.0
    sample: np.ndarray | None = None  # every finite value, sorted (from a table; a profile keeps the ECDF only)

    kind = NUMERICAL


@dataclass(eq=False)
class CategorySummary:
    n_rows: int
    n_missing: int
    counts: dict[str, int]  # most frequent first
    other: int = 0  # observations of categories beyond max_categories
    truncated: bool = False

    kind = CATEGORICAL


def psi_counts(ecdf: ECDF, n_missing: int, edges: np.ndarray, maximum: float | None) -> np.ndarray:
    if maximum is None:
        return np.array([0, 0, n_missing], dtype=np.int64)
    lt = np.asarray(ecdf.count_lt(edges), dtype=np.int64)
    le_max = int(ecdf.count_le(np.array([maximum]))[0])
    inner = np.diff(np.append(lt, le_max))
    return np.concatenate(([lt[0]], inner, [ecdf.total - le_max, n_missing])).astype(np.int64)


def summarize_numeric(values: np.ndarray) -> NumericSummary:
    """Summarise a column (a private float64 array, NaN/inf as missing; sorted in place).

    numpy sorts NaN last, so after the in-place sort the finite values are one slice: no copy.
    """
    values.sort()
    data = values[np.searchsorted(values, -np.inf, "right"):np.searchsorted(values, np.inf, "left")]
    ecdf = ECDF.of_sorted(data)
    n_missing = int(values.size - data.size)
    if ecdf.total == 0:
        return NumericSummary(int(values.size), n_missing, ecdf, None, None, np.empty(0), None,
                              psi_counts(ecdf, n_missing, np.empty(0), None), sample=data)
    ranks = np.array([math.ceil(k * ecdf.total / PSI_QUANTILES) - 1 for k in range(1, PSI_QUANTILES)])
    edges = np.unique(np.concatenate(([ecdf.values[0]], ecdf.at_rank(ranks))))
    maximum = float(ecdf.values[-1])
    mean, std = ecdf.moments()
    return NumericSummary(int(values.size), n_missing, ecdf, mean, std, edges, maximum,
                          psi_counts(ecdf, n_missing, edges, maximum), sample=data)


def sketch(summary: NumericSummary, size: int) -> NumericSummary:
    """The summary with its ECDF reduced to ``size`` quantiles when it has more distinct values."""
    ecdf = summary.ecdf
    if ecdf.values.size <= size:
        return summary
    levels = 2 * np.arange(size, dtype=np.int64) + 1  # rank of level (2i+1)/(2K): ceil((2i+1) n / 2K) - 1
    ranks = -(-(levels * ecdf.total) // (2 * size)) - 1
    small = ECDF.of_sorted(ecdf.at_rank(ranks))
    assert summary.sample is not None
    ks_error, w_error = ks_wasserstein(small, summary.sample)
    return NumericSummary(summary.n_rows, summary.n_missing, small, summary.mean, summary.std, summary.psi_edges,
                          summary.psi_maximum, summary.psi_counts, exact=False, ks_error=ks_error,
                          wasserstein_error=w_error)


def summarize_categories(counts: dict[str, int], n_missing: int, n_rows: int, max_categories: int) -> CategorySummary:
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    kept = dict(ranked[:max_categories])
    other = sum(count for _, count in ranked[max_categories:])
    return CategorySummary(n_rows, n_missing, kept, other, truncated=len(ranked) > max_categories)


# --------------------------------------------------------------------------------------------------
# Checks of one feature


def _histogram(ref: ECDF, cur: ECDF, bins: int = 30) -> dict[str, Any] | None:
    """Shares of each side's non-missing values in equal-width bins over the central 99 % of both."""
    if ref.total == 0 or cur.total == 0:
        return None
    low = min(ref.quantile(0.005), cur.quantile(0.005))
    high = max(ref.quantile(0.995), cur.quantile(0.995))
    if not high > low:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, bins + 1)

    def shares(ecdf: ECDF) -> list[float]:
        lt = np.asarray(ecdf.count_lt(edges), dtype=np.int64)
        lt[-1] = ecdf.count_le(edges[-1:])[0]
        return (np.diff(lt) / ecdf.total).round(6).tolist()

    return {"edges": edges.tolist(), "reference": shares(ref), "current": shares(cur)}


def _effect(value: float | None, lower: float | None, threshold: float) -> dict[str, Any]:
    """An effect size, the lower end of its confidence interval (None: not computed) and whether that passes."""
    return {"value": value, "lower": lower, "threshold": threshold,
            "passed": lower is not None and lower >= threshold}


def _needs_bound(values: list[float | None], thresholds_: list[float], p_values: list[float], alpha: float) -> bool:
    """A bound is computed only where it can matter: an estimate at or above its threshold, and a raw p-value
    below alpha (its BH q-value can be below alpha only then)."""
    return min(p_values) < alpha and any(v is not None and v >= t for v, t in zip(values, thresholds_, strict=True))


def compare_numeric(ref: NumericSummary, cur: NumericSummary, thresholds: Thresholds,
                    seed: int = 0) -> dict[str, Any] | None:
    if ref.ecdf.total == 0 or cur.ecdf.total == 0:
        return None
    n_ref, n_cur = ref.ecdf.total if ref.exact else _n_finite(ref), cur.ecdf.total
    assert cur.sample is not None
    anderson = None
    if ref.exact and max(n_ref, n_cur) <= EXACT_KS_MAX_N:
        ref_sample = ref.ecdf.expand()
        statistic, p_value = small_sample_ks(ref_sample, cur.sample)
        distance = wasserstein(ref.ecdf, cur.sample)
        single_value = ref.ecdf.values[0] == ref.ecdf.values[-1] == cur.sample[0] == cur.sample[-1]
        if n_ref + n_cur >= 8 and not single_value:  # scipy's variance term needs N > 3 and two distinct values
            ad_statistic, ad_p_value = drift_bounds.anderson_darling(ref_sample, cur.sample)
            anderson = {"test": "anderson_darling_k_sample", "statistic": ad_statistic, "p_value": ad_p_value}
    else:
        statistic, distance = ks_wasserstein(ref.ecdf, cur.sample)
        p_value = ks_pvalue(statistic, n_ref, n_cur)
    counts = psi_counts(cur.ecdf, cur.n_missing, ref.psi_edges, ref.psi_maximum)
    psi = population_stability_index(ref.psi_counts, counts)
    normalized = distance / ref.std if ref.std else None
    psi_lower = w_lower = None
    p_values = [p_value] + ([anderson["p_value"]] if anderson else [])
    if _needs_bound([psi, normalized], [thresholds.psi, thresholds.wasserstein], p_values, thresholds.alpha):
        psi_lower, w_lower = drift_bounds.numeric_lower_bounds(
            ref.ecdf.values, ref.ecdf.counts, ref.n_rows, ref.n_missing, cur.ecdf.values, cur.ecdf.counts, cur.n_rows,
            cur.n_missing,
            psi_edges=ref.psi_edges, psi_maximum=float(ref.psi_maximum), std=ref.std, psi=psi, normalized=normalized,
            epsilon=PSI_EPSILON, confidence=thresholds.confidence, seed=seed)
    effects = {"psi": _effect(psi, psi_lower, thresholds.psi),
               "wasserstein_normalized": _effect(normalized, w_lower, thresholds.wasserstein)}
    check: dict[str, Any] = {
        "test": "kolmogorov_smirnov", "statistic": statistic, "p_value": p_value, "wasserstein": distance,
        "effects": effects, "effect_passed": any(e["passed"] for e in effects.values()),
        "n_ref_values": n_ref, "n_cur_values": n_cur,
        "psi_bins": {"edges": ref.psi_edges.tolist(), "maximum": ref.psi_maximum,
                     "reference": ref.psi_counts.tolist(), "current": counts.tolist()},
        "histogram": _histogram(ref.ecdf, cur.ecdf),
    }
    if anderson is not None:
        check["anderson_darling"] = anderson
    if not ref.exact:
        check["approximation"] = {
            "reference_sketch_size": ref.ecdf.total, "ks_statistic_error_bound": ref.ks_error,
            "wasserstein_error_bound": ref.wasserstein_error,
            "wasserstein_normalized_error_bound": ref.wasserstein_error / ref.std if ref.std else None}
    return check


def _n_finite(summary: NumericSummary) -> int:
    return summary.n_rows - summary.n_missing


def compare_categories(ref: CategorySummary, cur: CategorySummary, thresholds: Thresholds,
                       seed: int = 0) -> dict[str, Any]:
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import chi2_contingency

    buckets = list(ref.counts) + ([OTHER] if ref.truncated else []) + [MISSING, UNSEEN]
    position = {name: i for i, name in enumerate(buckets)}
    reference = np.array(list(ref.counts.values()) + ([ref.other] if ref.truncated else []) + [ref.n_missing, 0],
                         dtype=np.int64)
    current = np.zeros(len(buckets), dtype=np.int64)
    spill = position[OTHER] if ref.truncated else position[UNSEEN]
    for key, count in cur.counts.items():
        current[spill if key in (OTHER, MISSING, UNSEEN) else position.get(key, spill)] += count
    current[position[MISSING]] += cur.n_missing
    distance = float(jensenshannon(reference / reference.sum(), current / current.sum(), base=2))
    table = np.vstack([reference, current])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        statistic, p_value, dof = 0.0, 1.0, 0
    else:
        result = chi2_contingency(table)
        statistic, p_value, dof = float(result.statistic), float(result.pvalue), int(result.dof)
    unseen = float(current[position[UNSEEN]] / current.sum())
    js_lower = unseen_lower = None
    if _needs_bound([distance, unseen], [thresholds.jensen_shannon, thresholds.unseen], [p_value], thresholds.alpha):
        js_lower, unseen_lower = drift_bounds.category_lower_bounds(
            reference, current, position[UNSEEN], distance=distance, unseen=unseen,
            confidence=thresholds.confidence, seed=seed)
    effects = {"jensen_shannon": _effect(distance, js_lower, thresholds.jensen_shannon),
               "unseen_share": _effect(unseen, unseen_lower, thresholds.unseen)}
    shares_ref, shares_cur = reference / reference.sum(), current / current.sum()
    largest = np.maximum(shares_ref, shares_cur)
    shown = [i for i in sorted(range(len(buckets)), key=lambda i: -largest[i]) if largest[i] > 0][:20]
    return {
        "test": "chi_square", "statistic": statistic, "p_value": p_value, "dof": dof,
        "effects": effects, "effect_passed": any(e["passed"] for e in effects.values()),
        "n_ref_values": int(reference.sum()), "n_cur_values": int(current.sum()), "truncated_reference": ref.truncated,
        "buckets": {"names": buckets, "reference": reference.tolist(), "current": current.tolist()},
        "histogram": {"categories": [buckets[i] for i in shown], "reference": [round(float(shares_ref[i]), 6)
                      for i in shown], "current": [round(float(shares_cur[i]), 6) for i in shown]},
    }


def compare_missing(ref: NumericSummary | CategorySummary, cur: NumericSummary | CategorySummary,
                    thresholds: Thresholds, seed: int = 0) -> dict[str, Any]:
    ref_rate, cur_rate = ref.n_missing / ref.n_rows, cur.n_missing / cur.n_rows
    change = cur_rate - ref_rate
    p_value = two_proportion_pvalue(ref.n_missing, ref.n_rows, cur.n_missing, cur.n_rows)
    lower = None
    if _needs_bound([abs(change)], [thresholds.missing_rate], [p_value], thresholds.alpha):
        lower = drift_bounds.missing_change_lower(ref.n_missing, ref.n_rows, cur.n_missing, cur.n_rows, change=change,
                                                  confidence=thresholds.confidence, seed=seed)
    effect = _effect(abs(change), lower, thresholds.missing_rate)
    return {"test": "two_proportion_z", "reference_rate": ref_rate, "current_rate": cur_rate, "change": change,
            "p_value": p_value, "effects": {"absolute_change": effect}, "effect_passed": effect["passed"]}
