"""Data drift between a reference table (or its stored profile) and a current table, feature by feature.

Checks (every threshold is a :class:`Thresholds` field):

* numerical features -- the two-sample Kolmogorov-Smirnov test (statistic D and p-value) on the
  non-missing values, with two effect sizes: the population stability index (PSI) over bins cut at
  the reference deciles (duplicates dropped) plus a bin below the reference minimum, one above its
  maximum and one for missing values, empty bins floored at ``PSI_EPSILON``; and the Wasserstein-1
  distance divided by the reference standard deviation. The effect passes when PSI >= ``psi`` or the
  normalised distance >= ``wasserstein``.
* categorical features (bool, string, object, category columns, and numeric columns named in
  ``categorical_features``) -- the chi-square test of the 2 x k contingency table and the
  Jensen-Shannon distance (base 2, in [0, 1]) over the reference categories plus ``__missing__`` and
  ``__unseen__`` (values absent from the reference). The effect passes when JS >= ``jensen_shannon``
  or the share of unseen values >= ``unseen``.
* every feature -- the missing-value rate, by the pooled two-proportion z-test, the effect passing
  when the absolute change in rate >= ``missing_rate``.

A check flags drift only when its effect passes AND its Benjamini-Hochberg q-value (over every check
of the report) is below ``alpha``: a million rows make any shift significant, so the effect size
keeps trivial shifts quiet; fifty rows make effect sizes noisy, so the test keeps noise quiet. A
feature drifts when one of its checks does; the dataset drifts when the share of drifted features is
at least ``drift_share`` or a feature named critical drifts.

Reference profiles. :func:`build_profile` summarises a reference table so the table itself need not be
kept: for a numerical feature its counts, mean, standard deviation, PSI bins and an ECDF -- every
distinct value with its count when there are at most ``sketch_size`` of them (then all statistics
are exact), else ``sketch_size`` = K quantiles at levels (i + 1/2)/K. With that sketch, the reference
ECDF is within 1/(2K) of the true one everywhere (the quantile at level p lies at or below x exactly
when p <= F(x)), so the KS statistic is within 1/(2K) of its exact value, and the Wasserstein
distance is within W1(reference, sketch) by the triangle inequality. Both errors are computed
exactly when the profile is built and reported beside the statistics. PSI and the missing-rate test
use exact counts stored in the profile; categorical features store exact counts of up to
``max_categories`` categories (the rarest beyond that are pooled as ``__other__``, and then current
values outside the stored ones count as ``__other__`` rather than ``__unseen__``).

The KS p-value is scipy's (the exact distribution up to 10 000 values a side, kstwo.sf up to an
effective size of 20 000); above that the corrected Kolmogorov limit (see :func:`ks_pvalue` for its
measured error), since scipy's exact tail costs seconds per feature at a million rows.

Speed: each column is sorted once, in place (missing values sort last, so the finite values are a
slice, not a copy). The Wasserstein distance comes from integer arithmetic on the two quantile
functions (no merge of the samples); the KS statistic from exact counts at block ends, which bound
|F - G| inside each block, refining only blocks that could hold the maximum (a few dozen searches
instead of one per value). Linear passes go in cache-sized blocks. Columns are processed one at a
time by a thread pool of at most two (numpy releases the GIL), so memory holds a few columns.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from . import drift_bounds, drift_schema, storage
from .columnar import CATEGORICAL, EMPTY, NUMERICAL, Columns, as_columns
from .errors import BadInputError
from .log import get_logger

log = get_logger(__name__)

PROFILE_FORMAT = "mlops-components/drift-profile"
PROFILE_VERSION = 1
MISSING, UNSEEN, OTHER = "__missing__", "__unseen__", "__other__"
DEFAULT_SKETCH_SIZE = 10_000
DEFAULT_MAX_CATEGORIES = 1_000
PSI_QUANTILES = 10
PSI_EPSILON = 1e-4
EXACT_KS_MAX_N = 10_000  # scipy's ks_2samp computes the exact distribution up to this sample size
KS_EXACT_P_MAX_N = 20_000  # ks_pvalue: scipy's kstwo.sf up to this effective sample size
# Linear passes go block by block: small temporaries stay in cache and come from the heap, not from fresh
# pages (a full-column temporary costs more in page faults than the arithmetic it holds).
_BLOCK = 8_192
_KS_BLOCK, _KS_SPLIT = 4_096, 16


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


# --------------------------------------------------------------------------------------------------
# Empirical distributions of numerical values and the exact two-sample statistics between them


@dataclass(frozen=True, eq=False)
class ECDF:
    """Sorted distinct finite values with their counts (None: one observation each)."""

    values: np.ndarray
    counts: np.ndarray | None
    total: int
    _cum0: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.counts is not None and self._cum0 is None:
            object.__setattr__(self, "_cum0", np.concatenate(([0], np.cumsum(self.counts, dtype=np.int64))))

    @classmethod
    def of_sorted(cls, data: np.ndarray) -> ECDF:
        """From sorted finite values (kept, not copied, when they are all distinct)."""
        pairs = data.size - 1  # neighbours compared block by block: no full-size temporary
        if pairs < 1 or not any(np.any(data[k + 1:min(k + _BLOCK, pairs) + 1] == data[k:min(k + _BLOCK, pairs)])
                                for k in range(0, pairs, _BLOCK)):
            return cls(data, None, int(data.size))
        starts = np.flatnonzero(np.concatenate(([True], data[1:] != data[:-1])))
        return cls(data[starts], np.diff(np.append(starts, data.size)), int(data.size))

    @classmethod
    def of_counts(cls, values: np.ndarray, counts: np.ndarray | None) -> ECDF:
        total = int(values.size if counts is None else counts.sum())
        return cls(values, counts, total)

    def cum_at(self, index: np.ndarray) -> np.ndarray:
        """Observations among the first ``index`` distinct values."""
        return index if self._cum0 is None else self._cum0[index]

    def cum_through(self, start: int, stop: int) -> np.ndarray:
        """Observations at or below each of the distinct values start..stop-1 (int64)."""
        if self._cum0 is None:
            return np.arange(start + 1, stop + 1, dtype=np.int64)
        return self._cum0[start + 1:stop + 1]

    def cum_through_at(self, index: np.ndarray) -> np.ndarray:
        """Observations at or below the distinct value at each index (-1: none)."""
        return index + 1 if self._cum0 is None else self._cum0[index + 1]

    def count_cum_at_most(self, weight: int) -> int:
        """How many distinct values have at most ``weight`` observations at or below them."""
        if self._cum0 is None:
            return int(min(max(weight, 0), self.values.size))
        return int(np.searchsorted(self._cum0[1:], weight, "right"))

    def count_le(self, x: np.ndarray) -> np.ndarray:
        return self.cum_at(np.searchsorted(self.values, x, "right"))

    def count_lt(self, x: np.ndarray) -> np.ndarray:
        return self.cum_at(np.searchsorted(self.values, x, "left"))

    def at_rank(self, rank: np.ndarray) -> np.ndarray:
        """The (0-based) rank-th smallest observation."""
        if self._cum0 is None:
            return self.values[rank]
        return self.values[np.searchsorted(self._cum0, rank, "right") - 1]

    def quantile(self, level: float) -> float:
        """The inverted-CDF quantile (the smallest x with F(x) >= level)."""
        return float(self.at_rank(np.array([max(math.ceil(level * self.total) - 1, 0)]))[0])

    def moments(self) -> tuple[float, float]:
        """Mean and (population) standard deviation, two passes in blocks (no full-size temporaries)."""
        counts = np.ones(0) if self.counts is None else self.counts
        weighted = self.counts is not None
        mean = sum(float(np.dot(self.values[k:k + _BLOCK], counts[k:k + _BLOCK]) if weighted
                         else self.values[k:k + _BLOCK].sum()) for k in range(0, self.values.size, _BLOCK))
        mean /= self.total
        squares = 0.0
        for k in range(0, self.values.size, _BLOCK):
            deviation = self.values[k:k + _BLOCK] - mean
            squares += float(np.dot(deviation * deviation, counts[k:k + _BLOCK]) if weighted
                             else np.dot(deviation, deviation))
        return mean, math.sqrt(squares / self.total)

    def expand(self) -> np.ndarray:
        return self.values if self.counts is None else np.repeat(self.values, self.counts)


def wasserstein(a: ECDF, b: np.ndarray) -> float:
    """The Wasserstein-1 distance between ``a`` and the sorted sample ``b``, exactly, without merging them.

    W1 is the integral over u in (0, 1) of |Qa(u) - Qb(u)|; both quantile functions are step
    functions whose steps sit at cumulative counts, known without comparing any values. In units of
    1/(Wa * m), a's step i spans (A[i-1] * m, A[i] * m] and b's step j spans (j * Wa, (j + 1) * Wa];
    each piece between consecutive steps of either is found by integer arithmetic, block by block
    (blocks keep every temporary array small), and weighted by |a value - b value|.
    """
    m, total_a, n = b.size, a.total, a.values.size
    if total_a * m >= 2**62:
        raise ValueError("samples too large for exact integer quantile arithmetic")
    if a.counts is None:
        return _wasserstein_unit(a.values, b)
    distance = 0.0
    for i0 in range(0, n, _BLOCK):  # pieces starting where a steps: b's step there is floor(start / Wa)
        i1 = min(i0 + _BLOCK, n)
        upper = a.cum_through(i0, i1) * m
        lower = np.concatenate(([a.cum_through(i0 - 1, i0)[0] * m if i0 else 0], upper[:-1]))
        b_index = lower // total_a
        length = np.minimum(upper, (b_index + 1) * total_a)
        length -= lower
        distance += float(np.dot(length.astype(np.float64), np.abs(a.values[i0:i1] - b[b_index])))
    for j0 in range(0, m, _BLOCK):  # pieces starting where b steps (j * Wa): a's step is #{i: A[i] * m <= j * Wa}
        j1 = min(j0 + _BLOCK, m)
        base = a.count_cum_at_most((j0 - 1) * total_a // m) if j0 else 0
        top = a.count_cum_at_most((j1 - 1) * total_a // m)
        first_j = -(-(a.cum_through(base, top) * m) // total_a) - j0  # first j (in block) past each a step
        a_index = np.cumsum(np.bincount(first_j, minlength=j1 - j0)[: j1 - j0]) + base
        start = np.arange(j0, j1, dtype=np.int64) * total_a
        length = np.minimum(start + total_a, a.cum_through_at(a_index) * m)
        length -= start
        length[start == a.cum_through_at(a_index - 1) * m] = 0  # also where a steps: counted above
        distance += float(np.dot(length.astype(np.float64), np.abs(a.values[a_index] - b[j0:j1])))
    return distance / (total_a * m)


def _wasserstein_unit(a: np.ndarray, b: np.ndarray) -> float:
    """:func:`wasserstein` when every value of a counts once: a's step i spans (i * m, (i + 1) * m]."""
    n, m = a.size, b.size
    if n == m:  # the steps coincide: the mean distance between the sorted samples
        return sum(float(np.abs(a[k:k + _BLOCK] - b[k:k + _BLOCK]).sum()) for k in range(0, n, _BLOCK)) / n
    distance = 0.0
    for i0 in range(0, n, _BLOCK):  # pieces starting at i * m, where b's step is i * m // n
        start = np.arange(i0, min(i0 + _BLOCK, n), dtype=np.int64) * m
        b_index = start // n
        length = np.minimum(start + m, (b_index + 1) * n)
        length -= start
        distance += float(np.dot(length.astype(np.float64), np.abs(a[i0:i0 + _BLOCK] - b[b_index])))
    for j0 in range(0, m, _BLOCK):  # pieces starting at j * n, where a's step is j * n // m
        start = np.arange(j0, min(j0 + _BLOCK, m), dtype=np.int64) * n
        a_index = start // m
        length = np.minimum(start + n, (a_index + 1) * m)
        length -= start
        length[start == a_index * m] = 0  # also where a steps: counted above
        distance += float(np.dot(length.astype(np.float64), np.abs(a[a_index] - b[j0:j0 + _BLOCK])))
    return distance / (n * m)


def ks_statistic(a: ECDF, b: np.ndarray) -> float:
    """sup |F - G| between ``a`` and the sorted sample ``b``, exactly, looking closely only where it can be.

    F - G rises only at values of a and G - F only at values of b. Cut b into blocks: a block covers
    (value before its first, its last value], and the exact F and G at those two ends bound F - G
    and G - F over everything inside. Blocks whose bound cannot beat the best exact value found so
    far are dropped; the others are cut finer, down to single values. The values compared are the
    ratios of counts scipy's ks_2samp divides, so the statistic is bit-identical.
    """
    m, total_a = b.size, a.total

    def g_at(values: np.ndarray) -> np.ndarray:
        return np.searchsorted(b, values, "right") / m

    def f_at(values: np.ndarray) -> np.ndarray:
        return a.count_le(values) / total_a

    size = _KS_BLOCK
    firsts = np.arange(0, m, size)
    best = 0.0
    while firsts.size:
        lasts = np.minimum(firsts + size, m) - 1
        f_last, g_last = f_at(b[lasts]), g_at(b[lasts])
        before = b[np.maximum(firsts - 1, 0)]
        f_before = np.where(firsts > 0, f_at(before), 0.0)
        g_before = np.where(firsts > 0, g_at(before), 0.0)
        best = max(best, float(np.max(g_last - f_last)), float(np.max(f_before - g_before)))  # exact values
        bound = np.maximum(f_last - g_before, g_last - f_before)
        firsts = firsts[bound > best]
        if size == 1:
            break
        size = max(1, size // _KS_SPLIT)
        firsts = (firsts[:, None] + np.arange(0, size * _KS_SPLIT, size)[None, :]).ravel()
        firsts = firsts[firsts < m]
    # single values left: G - F at each was evaluated above; F - G at the a values just below each
    if firsts.size:
        low = np.searchsorted(a.values, b[np.maximum(firsts - 1, 0)], "right") * (firsts > 0)
        high = np.searchsorted(a.values, b[firsts], "right")
        lengths = high - low
        if lengths.sum():
            index = np.repeat(low - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths) + np.arange(lengths.sum())
            f = np.asarray(a.cum_through_at(index)) / total_a
            best = max(best, float(np.max(f - g_at(a.values[index]))))
    return best


def ks_wasserstein(a: ECDF, b: np.ndarray) -> tuple[float, float]:
    """The KS statistic and the Wasserstein-1 distance between ``a`` and the sorted sample ``b``."""
    return ks_statistic(a, b), wasserstein(a, b)


def ks_pvalue(statistic: float, n1: int, n2: int) -> float:
    """The two-sided asymptotic KS p-value for samples of n1 and n2 values.

    scipy's ks_2samp uses kstwo.sf(D, N) with the effective size N = round(n1 n2 / (n1 + n2)); that
    is exact but costs O(N) per call in the tail (about 1 s at N = 500 000, 10 s at 5 million). Up to
    N = KS_EXACT_P_MAX_N it is used as is (identical to scipy). Above, the Kolmogorov limit shifted by
    its first-order correction, K(sqrt(N) D + 1 / (6 sqrt(N))), is used: measured against kstwo.sf
    from N = 20 000 up, its relative error is below 6e-5 where p > 0.02 and below 0.3 % down to p = 1e-10,
    shrinking as 1/sqrt(N).
    """
    from scipy.special import kolmogorov
    from scipy.stats import kstwo

    m, n = sorted([float(n1), float(n2)], reverse=True)
    effective = float(np.round(m * n / (m + n)))
    if effective <= KS_EXACT_P_MAX_N:
        return float(np.clip(kstwo.sf(statistic, effective), 0, 1))
    root = math.sqrt(effective)
    return float(np.clip(kolmogorov(root * statistic + 1 / (6 * root)), 0, 1))


_WARNINGS_LOCK = drift_bounds.WARNINGS_LOCK  # one lock for every catch_warnings: the filters are global


def small_sample_ks(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """scipy's ks_2samp (exact p-value up to EXACT_KS_MAX_N values a side), quiet when the exact
    computation falls back to the asymptotic one (a lock: warning filters are process-wide)."""
    import warnings

    from scipy.stats import ks_2samp

    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="ks_2samp: Exact calculation unsuccessful", category=RuntimeWarning)
        result = ks_2samp(a, b)
    return float(result.statistic), float(result.pvalue)


def population_stability_index(reference: np.ndarray, current: np.ndarray, epsilon: float = PSI_EPSILON) -> float:
    """PSI of two count vectors over the same bins; proportions below ``epsilon`` are floored at it."""
    ref = np.maximum(reference / reference.sum(), epsilon)
    cur = np.maximum(current / current.sum(), epsilon)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def two_proportion_pvalue(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided pooled z-test of k1/n1 == k2/n2 (1.0 when the pooled rate is 0 or 1)."""
    from scipy.stats import norm

    pooled = (k1 + k2) / (n1 + n2)
    if pooled <= 0 or pooled >= 1:
        return 1.0
    z = (k2 / n2 - k1 / n1) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return float(2 * norm.sf(abs(z)))


# --------------------------------------------------------------------------------------------------
# Per-feature summaries: what a profile stores, and what detection compares


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


# --------------------------------------------------------------------------------------------------
# Profiles


def _feature_kinds(source: Columns, *, exclude: Iterable[str], categorical: Iterable[str],
                   label: str | None) -> tuple[dict[str, str], dict[str, str]]:
    """``({feature: kind}, {skipped column: its type})`` for a reference table."""
    excluded, forced = set(exclude), set(categorical)
    unknown = sorted(forced - set(source.names) - excluded)
    if unknown:
        raise BadInputError(f"categorical feature(s) not in the reference: {', '.join(unknown[:10])}",
                            label="--categorical-features")
    kinds, skipped = {}, {}
    for name in source.names:
        if name in excluded:
            continue
        kind = source.kind(name)
        if kind is None:
            skipped[name] = source.type_name(name)
        elif name in forced or kind == EMPTY:
            kinds[name] = CATEGORICAL
        else:
            kinds[name] = kind
    if not kinds:
        raise BadInputError("the reference has no feature columns to monitor", label=label)
    return kinds, skipped


def _summarize(source: Columns, name: str, kind: str, max_categories: int) -> NumericSummary | CategorySummary:
    if kind == NUMERICAL:
        return summarize_numeric(source.numeric(name))
    counts, missing = source.value_counts(name)
    return summarize_categories(counts, missing, source.num_rows, max_categories)


def _parallel_map(function: Any, items: list[str], workers: int | None) -> list[Any]:
    """``map`` over a pool of threads (by default one per usable core, at most two: memory holds a column each)."""
    if not workers:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        workers = max(1, min(2, cores))
    if workers == 1 or len(items) == 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(function, items))


def build_profile(table: Any, *, target_column: str | None = None, categorical_features: Iterable[str] = (),
                  sketch_size: int = DEFAULT_SKETCH_SIZE, max_categories: int = DEFAULT_MAX_CATEGORIES,
                  workers: int | None = None, predictions: Any = None) -> dict[str, Any]:
    """A JSON-ready reference profile of ``table`` (DataFrame, pyarrow Table or Columns source).

    ``predictions``: the model's outputs on the reference (:mod:`mlops_runtime.prediction_drift`'s table,
    ideally :func:`~mlops_runtime.prediction_drift.out_of_fold_frame`), profiled the same way into the
    profile's ``predictions`` section, for prediction drift.
    """
    if sketch_size < 1000 or max_categories < 1:
        raise ValueError("sketch_size must be at least 1000 and max_categories at least 1")
    source = as_columns(table)
    if source.num_rows == 0:
        raise BadInputError("the reference table is empty")
    kinds, skipped = _feature_kinds(source, exclude=[target_column] if target_column else [],
                                    categorical=categorical_features, label=None)

    def one(name: str) -> dict[str, Any]:
        summary = _summarize(source, name, kinds[name], max_categories)
        if isinstance(summary, NumericSummary):
            summary = sketch(summary, sketch_size)
        return summary_to_json(summary)

    features = dict(zip(kinds, _parallel_map(one, list(kinds), workers), strict=True))
    profile = {"format": PROFILE_FORMAT, "version": PROFILE_VERSION, "n_rows": source.num_rows,
               "target_column": target_column, "sketch_size": sketch_size, "max_categories": max_categories,
               "feature_names": list(features), "features": features, "skipped_columns": skipped}
    if predictions is not None:
        profile["predictions"] = build_profile(predictions, sketch_size=sketch_size, max_categories=max_categories,
                                               workers=workers)
    return profile


def write_profile(table: Any, uri: str, *, label: str | None = None, **options: Any) -> dict[str, Any]:
    """Build the profile of ``table`` and write it as JSON at ``uri``; returns the profile."""
    from .outputs import json_bytes

    profile = build_profile(table, **options)
    storage.write_bytes(uri, json_bytes(profile), label=label)
    return profile


def read_profile(uri: str, *, label: str | None = None) -> dict[str, Any]:
    return parse_profile(storage.read_bytes(uri, label=label), uri, label=label)


def parse_profile(data: bytes, uri: str, *, label: str | None = None) -> dict[str, Any]:
    """A profile from the JSON bytes :func:`write_profile` wrote, checked to be complete and consistent."""
    try:
        profile = json.loads(data)
    except ValueError:
        raise BadInputError(f"{uri}: not a JSON drift profile", label=label) from None
    if not isinstance(profile, dict) or profile.get("format") != PROFILE_FORMAT:
        raise BadInputError(f"{uri}: not a drift profile (format is not '{PROFILE_FORMAT}')", label=label)
    if profile.get("version") != PROFILE_VERSION:
        raise BadInputError(f"{uri}: drift profile version {profile.get('version')} is not supported "
                            f"(expected {PROFILE_VERSION})", label=label)
    try:
        drift_schema.check_profile(profile)
    except ValueError as error:
        raise BadInputError(f"{uri}: invalid drift profile: {error}", label=label) from None
    return profile


def summary_to_json(summary: NumericSummary | CategorySummary) -> dict[str, Any]:
    if isinstance(summary, CategorySummary):
        return {"kind": CATEGORICAL, "n_rows": summary.n_rows, "n_missing": summary.n_missing,
                "counts": summary.counts, "other": summary.other, "truncated": summary.truncated}
    ecdf = summary.ecdf
    return {"kind": NUMERICAL, "n_rows": summary.n_rows, "n_missing": summary.n_missing,
            "mean": summary.mean, "std": summary.std, "psi_edges": summary.psi_edges.tolist(),
            "psi_maximum": summary.psi_maximum, "psi_counts": summary.psi_counts.tolist(),
            "exact": summary.exact, "ks_error": summary.ks_error, "wasserstein_error": summary.wasserstein_error,
            "values": ecdf.values.tolist(), "counts": None if ecdf.counts is None else ecdf.counts.tolist()}


def summary_from_json(entry: dict[str, Any]) -> NumericSummary | CategorySummary:
    if entry["kind"] == CATEGORICAL:
        # most frequent first, as summarize_categories orders them (JSON with sorted keys loses the order)
        counts = dict(sorted(((str(k), int(v)) for k, v in entry["counts"].items()), key=lambda kv: (-kv[1], kv[0])))
        return CategorySummary(int(entry["n_rows"]), int(entry["n_missing"]), counts, int(entry["other"]),
                               bool(entry["truncated"]))
    if entry["kind"] != NUMERICAL:
        raise ValueError(f"unknown feature kind {entry['kind']!r}")
    values = np.asarray(entry["values"], dtype=np.float64)
    counts = None if entry["counts"] is None else np.asarray(entry["counts"], dtype=np.int64)
    if values.size > 1 and not (np.diff(values) > 0).all():
        raise ValueError("ECDF values are not strictly increasing")
    if counts is not None and (counts.shape != values.shape or (counts < 1).any()):
        raise ValueError("ECDF counts do not match its values")
    summary = NumericSummary(
        int(entry["n_rows"]), int(entry["n_missing"]), ECDF.of_counts(values, counts), entry["mean"], entry["std"],
        np.asarray(entry["psi_edges"], dtype=np.float64), entry["psi_maximum"],
        np.asarray(entry["psi_counts"], dtype=np.int64), bool(entry["exact"]), float(entry["ks_error"]),
        float(entry["wasserstein_error"]))
    if summary.psi_counts.size != summary.psi_edges.size + 3:
        raise ValueError("PSI counts do not match the PSI edges")
    return summary


def is_profile(document: Any) -> bool:
    return isinstance(document, dict) and document.get("format") == PROFILE_FORMAT


# --------------------------------------------------------------------------------------------------
# Detection


@dataclass
class _Plan:
    kinds: dict[str, str]
    skipped: dict[str, str]
    reference_rows: int
    profile: dict[str, Any] | None
    reference: Columns | None
    max_categories: int


def _plan(reference: Any, current: Columns, *, target_column: str | None, categorical: Iterable[str],
          reference_label: str, current_label: str) -> _Plan:
    excluded = [target_column] if target_column else []
    if is_profile(reference):
        profile = reference
        order = profile.get("feature_names") or list(profile["features"])  # the table's column order
        kinds = {name: profile["features"][name]["kind"] for name in order if name not in excluded}
        skipped = {k: v for k, v in profile.get("skipped_columns", {}).items() if k not in excluded}
        wrong = sorted(set(categorical) - {n for n, k in kinds.items() if k == CATEGORICAL})
        if wrong:
            raise BadInputError(f"not categorical in the reference profile: {', '.join(wrong[:10])} (build the "
                                "profile with these categorical_features instead)", label="--categorical-features")
        if not kinds:
            raise BadInputError("the reference profile has no feature besides the target", label=reference_label)
        plan = _Plan(kinds, skipped, int(profile["n_rows"]), profile, None,
                     int(profile.get("max_categories", DEFAULT_MAX_CATEGORIES)))
    else:
        source = as_columns(reference)
        if source.num_rows == 0:
            raise BadInputError("the reference table is empty", label=reference_label)
        kinds, skipped = _feature_kinds(source, exclude=excluded, categorical=categorical, label=reference_label)
        plan = _Plan(kinds, skipped, source.num_rows, None, source, DEFAULT_MAX_CATEGORIES)
    if current.num_rows == 0:
        raise BadInputError("the current table is empty", label=current_label)
    current_names = [n for n in current.names if n not in excluded]
    extra = [n for n in current_names if n not in plan.kinds and n not in plan.skipped]
    if extra:
        raise BadInputError(f"column(s) not in the reference: {', '.join(extra[:10])}", label=current_label)
    absent = [n for n in plan.kinds if n not in current_names]
    if absent:
        raise BadInputError(f"reference column(s) missing: {', '.join(absent[:10])}", label=current_label)
    for name, kind in plan.kinds.items():
        current_kind = current.kind(name)
        if current_kind is None or (kind == NUMERICAL and current_kind == CATEGORICAL):
            raise BadInputError(f"column '{name}' is {kind} in the reference but {current.type_name(name)} here",
                                label=current_label)
    return plan


def detect_drift(reference: Any, current: Any, *, thresholds: Thresholds | None = None,
                 critical_features: Iterable[str] = (), categorical_features: Iterable[str] = (),
                 target_column: str | None = None, workers: int | None = None,
                 timings: dict[str, float] | None = None, reference_label: str = "--reference-uri",
                 current_label: str = "--current-uri",
                 feature_weights: dict[str, float] | None = None) -> dict[str, Any]:
    """Compare ``current`` with ``reference`` (a table, a Columns source or a profile from :func:`build_profile`).

    ``feature_weights`` (e.g. the model card's permutation importances): the dataset's drift share is then
    the weighted share, sum of the drifted features' weights over the sum of all weights (negative
    importances count as 0, features without a weight as 0); the unweighted share is reported beside it.

    Returns the drift report (JSON-ready and deterministic). ``timings``, when given, receives the
    seconds spent loading columns and computing, summed over the worker threads, and the wall time.
    """
    import scipy.spatial.distance  # noqa: F401 -- imported once here, not in the timed worker threads
    import scipy.stats  # noqa: F401

    started = time.perf_counter()
    thresholds = thresholds or Thresholds()
    current_source = as_columns(current)
    plan = _plan(reference, current_source, target_column=target_column, categorical=categorical_features,
                 reference_label=reference_label, current_label=current_label)
    critical = list(dict.fromkeys(critical_features))
    unknown = [name for name in critical if name not in plan.kinds]
    if unknown:
        raise BadInputError(f"critical feature(s) not among the monitored features: {', '.join(unknown[:10])}",
                            label="--critical-features")
    spent = {"load": 0.0, "compute": 0.0}

    def evaluate(name: str) -> dict[str, Any]:
        kind = plan.kinds[name]
        tic = time.perf_counter()
        if plan.profile is not None:
            ref = summary_from_json(plan.profile["features"][name])
            loaded = time.perf_counter()
        else:
            assert plan.reference is not None
            ref_values: Any = (plan.reference.numeric(name) if kind == NUMERICAL
                               else plan.reference.value_counts(name))
            loaded = time.perf_counter()
            ref = _summary_of(ref_values, kind, plan.reference.num_rows, plan.max_categories)
            del ref_values
        computed = time.perf_counter()
        cur_values: Any = current_source.numeric(name) if kind == NUMERICAL else current_source.value_counts(name)
        cur_loaded = time.perf_counter()
        cur = _summary_of(cur_values, kind, current_source.num_rows, plan.max_categories, truncate=False)
        del cur_values
        seed = drift_bounds.seed_for(name)
        distribution = (compare_numeric(ref, cur, thresholds, seed) if kind == NUMERICAL  # type: ignore[arg-type]
                        else compare_categories(ref, cur, thresholds, seed))  # type: ignore[arg-type]
        missing = compare_missing(ref, cur, thresholds, seed + 1)
        done = time.perf_counter()
        spent["load"] += (loaded - tic) + (cur_loaded - computed)
        spent["compute"] += (computed - loaded) + (done - cur_loaded)
        return {"kind": kind, "n_ref": ref.n_rows, "n_cur": cur.n_rows, "n_ref_missing": ref.n_missing,
                "n_cur_missing": cur.n_missing, "critical": name in critical,
                "checks": {"distribution": distribution, "missing_rate": missing}}

    features = dict(zip(plan.kinds, _parallel_map(evaluate, list(plan.kinds), workers), strict=True))
    report = _decide(features, thresholds, critical, feature_weights)
    report["reference"] = {"mode": "profile" if plan.profile is not None else "table",
                           "n_rows": plan.reference_rows}
    report["current"] = {"n_rows": current_source.num_rows}
    report["skipped_columns"] = plan.skipped
    report["target_column"] = target_column
    if timings is not None:
        timings.update({"load_seconds": spent["load"], "compute_seconds": spent["compute"],
                        "wall_seconds": time.perf_counter() - started})
    return report


def _summary_of(values: Any, kind: str, n_rows: int, max_categories: int,
                truncate: bool = True) -> NumericSummary | CategorySummary:
    if kind == NUMERICAL:
        return summarize_numeric(values)
    counts, missing = values
    return summarize_categories(counts, missing, n_rows, max_categories if truncate else max(len(counts), 1))


def _weighted_share(drifted: list[str], names: list[str], weights: dict[str, float] | None) -> tuple[float | None, str]:
    if weights is None:
        return None, "unweighted"
    clean = {name: max(float(weights.get(name, 0.0)), 0.0) for name in names}
    total = sum(clean.values())
    if not total > 0:
        return None, "unweighted (no positive weight for the monitored features)"
    return sum(clean[name] for name in drifted) / total, "feature_importance"


def _decide(features: dict[str, dict[str, Any]], thresholds: Thresholds, critical: list[str],
            weights: dict[str, float] | None = None) -> dict[str, Any]:
    from scipy.stats import false_discovery_control

    checks = [check for feature in features.values() for check in feature["checks"].values() if check is not None]
    tests = [test for check in checks for test in (check, check.get("anderson_darling")) if test is not None]
    p_values = np.array([test["p_value"] for test in tests], dtype=np.float64)
    q_values = false_discovery_control(p_values, method="bh") if p_values.size else p_values
    for test, q in zip(tests, q_values.tolist(), strict=True):
        test["q_value"] = q
    for check in checks:  # significant when KS (or chi-square, or the z test) or Anderson-Darling is
        q = min(test["q_value"] for test in (check, check.get("anderson_darling")) if test is not None)
        check["significant"] = q < thresholds.alpha
        check["drift"] = bool(check["effect_passed"] and check["significant"])
        check["min_q_value"] = q
    drifted = []
    for name, feature in features.items():
        reasons = []
        for check_name, check in feature["checks"].items():
            if check is not None and check["drift"]:
                passed = [f"{effect} {e['value']:.4g} >= {e['threshold']:g} ({thresholds.confidence:.0%} lower "
                          f"bound {e['lower']:.4g})" for effect, e in check["effects"].items() if e["passed"]]
                reasons.append(f"{check_name}: {' and '.join(passed)}, q={check['min_q_value']:.3g} "
                               f"< {thresholds.alpha:g}")
        feature["drift"] = bool(reasons)
        feature["reasons"] = reasons
        if reasons:
            drifted.append(name)
    unweighted = len(drifted) / len(features)
    weighted, weighting = _weighted_share(drifted, list(features), weights)
    share = unweighted if weighted is None else weighted
    critical_drifted = [name for name in critical if name in drifted]
    reasons = []
    if share >= thresholds.drift_share:
        reasons.append(f"{len(drifted)} of {len(features)} features drifted ("
                       f"{'importance-weighted ' if weighted is not None else ''}share {share:.3g} >= "
                       f"{thresholds.drift_share:g})")
    if critical_drifted:
        reasons.append(f"critical feature(s) drifted: {', '.join(critical_drifted)}")
    return {"dataset": {"drift_detected": bool(reasons), "drift_share": share, "unweighted_drift_share": unweighted,
                        "share_weighting": weighting, "n_features": len(features),
                        "n_drifted": len(drifted), "drifted_features": drifted, "critical_features": critical,
                        "critical_drifted": critical_drifted, "reasons": reasons},
            "thresholds": asdict(thresholds), "feature_names": list(features), "features": features}
