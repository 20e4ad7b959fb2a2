"""Confidence bounds on drift effect sizes, and the Anderson-Darling k-sample test beside KS.

On small samples an effect size is noisy and biased upward: two samples of 300 values from the same
normal distribution are about 0.07 standard deviations apart in Wasserstein distance, so a negligible
0.05 sd shift often measures above the 0.1 threshold. A shift therefore counts as large only when the
lower end of a one-sided confidence interval of its effect size passes the threshold.

The interval is the basic (reverse-percentile) bootstrap: with the estimate t and bootstrap replicates
t*, the lower bound is ``t - (q(t*, confidence) - t_s)`` where ``t_s`` is the statistic of the distributions
resampled from. Unlike the percentile interval it subtracts the upward bias of t once, which is what
small samples need. Both sides are resampled (the reference is a sample too) as multinomial counts
over their distinct values, the missing values as one more category; a side with more than
``SUPPORT_POINTS`` distinct values is resampled over that many of its quantiles instead (large sides
have tiny intervals, so the coarser support changes the bound little). Each replicate then costs a
pass over at most ``2 * SUPPORT_POINTS`` points, whatever the number of rows. The random generator is
seeded from the feature name, so a report is deterministic.
"""
from __future__ import annotations

import threading
import warnings
import zlib

import numpy as np

BOOTSTRAP_REPLICATES = 200
SUPPORT_POINTS = 2_000
ANDERSON_MAX_N = 10_000  # scipy's anderson_ksamp on the raw values, as for the exact KS p-value
WARNINGS_LOCK = threading.Lock()


def seed_for(name: str) -> int:
    return zlib.crc32(name.encode("utf-8", errors="replace"))


def basic_lower(estimate: float, replicates: np.ndarray, resampled_from: float, confidence: float) -> float:
    """The one-sided basic-bootstrap lower bound, never below 0 (every effect size here is >= 0)."""
    return max(0.0, float(estimate - (np.quantile(replicates, confidence) - resampled_from)))


def anderson_darling(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """scipy's Anderson-Darling k-sample test (midrank variant) of two samples: (statistic, p-value).

    scipy interpolates the p-value from Scholz & Stephens' table, so it lies in [0.001, 0.25]: a p-value
    of 0.001 means "at most 0.001". Its capping warnings are silenced (a lock: the filters are process-wide).
    """
    from scipy.stats import anderson_ksamp

    with WARNINGS_LOCK, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="p-value (capped|floored)", category=UserWarning)
        result = anderson_ksamp([a, b], variant="midrank")
    return float(result.statistic), float(result.pvalue)


def _support(values: np.ndarray, counts: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values and their probabilities, reduced to SUPPORT_POINTS quantiles when there are more."""
    weights = np.ones(values.size) if counts is None else counts.astype(np.float64)
    if values.size <= SUPPORT_POINTS:
        return values, weights / weights.sum()
    cumulative = np.cumsum(weights) / weights.sum()
    levels = (np.arange(SUPPORT_POINTS) + 0.5) / SUPPORT_POINTS
    points = values[np.minimum(np.searchsorted(cumulative, levels, "left"), values.size - 1)]
    distinct, multiplicity = np.unique(points, return_counts=True)
    return distinct, multiplicity / SUPPORT_POINTS


def _resample(n_rows: int, finite_share: float, probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Replicate counts (replicates x (points + 1)); the last column counts missing values."""
    p = np.append(probabilities * finite_share, 1.0 - finite_share)
    p = np.clip(p, 0.0, None)
    return rng.multinomial(n_rows, p / p.sum(), size=BOOTSTRAP_REPLICATES).astype(np.float64)


class _Side:
    def __init__(self, values: np.ndarray, counts: np.ndarray | None, n_rows: int, n_missing: int) -> None:
        self.points, self.probabilities = _support(values, counts)
        self.n_rows, self.finite_share = n_rows, (n_rows - n_missing) / n_rows


def _cdf_rows(counts: np.ndarray, positions: np.ndarray, grid_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per replicate, the CDF on the merged grid (rows of zeros where a replicate has no finite value)."""
    on_grid = np.zeros((counts.shape[0], grid_size))
    on_grid[:, positions] = counts[:, :-1]
    totals = on_grid.sum(axis=1)
    cdf = np.cumsum(on_grid, axis=1) / np.where(totals > 0, totals, 1.0)[:, None]
    return cdf, totals


def _psi_rows(bins: np.ndarray, epsilon: float) -> np.ndarray:
    return np.maximum(bins / bins.sum(axis=1, keepdims=True), epsilon)


def numeric_lower_bounds(ref_values: np.ndarray, ref_counts: np.ndarray | None, ref_rows: int, ref_missing: int,
                         cur_values: np.ndarray, cur_counts: np.ndarray | None, cur_rows: int, cur_missing: int, *,
                         psi_edges: np.ndarray,
                         psi_maximum: float, std: float | None, psi: float, normalized: float | None,
                         epsilon: float, confidence: float, seed: int) -> tuple[float, float | None]:
    """Lower bounds of PSI and of the normalised Wasserstein distance (None without a spread)."""
    rng = np.random.default_rng(seed)
    ref = _Side(ref_values, ref_counts, ref_rows, ref_missing)
    cur = _Side(cur_values, cur_counts, cur_rows, cur_missing)
    grid = np.union1d(ref.points, cur.points)
    ref_pos, cur_pos = np.searchsorted(grid, ref.points), np.searchsorted(grid, cur.points)
    ref_counts_b = _resample(ref.n_rows, ref.finite_share, ref.probabilities, rng)
    cur_counts_b = _resample(cur.n_rows, cur.finite_share, cur.probabilities, rng)

    def psi_bins(points: np.ndarray) -> np.ndarray:  # bin of each point: below min, per edge, above max
        index = np.searchsorted(psi_edges, points, "right")
        index[points > psi_maximum] = psi_edges.size + 1
        return index

    n_bins = psi_edges.size + 3

    def binned(counts: np.ndarray, points: np.ndarray) -> np.ndarray:
        membership = np.zeros((points.size + 1, n_bins))
        membership[np.arange(points.size), psi_bins(points)] = 1.0
        membership[points.size, n_bins - 1] = 1.0  # the missing values' bin
        return counts @ membership

    def psi_of(ref_bins: np.ndarray, cur_bins: np.ndarray) -> np.ndarray:
        r, c = _psi_rows(ref_bins, epsilon), _psi_rows(cur_bins, epsilon)
        return np.sum((c - r) * np.log(c / r), axis=1)

    base_ref = np.append(ref.probabilities * ref.finite_share, 1 - ref.finite_share)[None, :]
    base_cur = np.append(cur.probabilities * cur.finite_share, 1 - cur.finite_share)[None, :]
    psi_replicates = psi_of(binned(ref_counts_b, ref.points), binned(cur_counts_b, cur.points))
    psi_resampled_from = float(psi_of(binned(base_ref, ref.points), binned(base_cur, cur.points))[0])
    psi_lower = basic_lower(psi, psi_replicates, psi_resampled_from, confidence)
    if normalized is None or not std:
        return psi_lower, None
    widths = np.diff(grid)

    def distances(ref_counts: np.ndarray, cur_counts: np.ndarray) -> np.ndarray:
        f, f_total = _cdf_rows(ref_counts, ref_pos, grid.size)
        g, g_total = _cdf_rows(cur_counts, cur_pos, grid.size)
        w = np.abs(f - g)[:, :-1] @ widths
        return np.where((f_total > 0) & (g_total > 0), w, 0.0) / std

    w_replicates = distances(ref_counts_b, cur_counts_b)
    w_resampled_from = float(distances(base_ref, base_cur)[0])
    return psi_lower, basic_lower(normalized, w_replicates, w_resampled_from, confidence)


def category_lower_bounds(reference: np.ndarray, current: np.ndarray, unseen_index: int, *, distance: float,
                          unseen: float, confidence: float, seed: int) -> tuple[float, float]:
    """Lower bounds of the Jensen-Shannon distance and of the unseen share, from bucket counts."""
    from scipy.spatial.distance import jensenshannon

    rng = np.random.default_rng(seed)
    p_ref, p_cur = reference / reference.sum(), current / current.sum()
    ref_b = rng.multinomial(int(reference.sum()), p_ref, size=BOOTSTRAP_REPLICATES).astype(np.float64)
    cur_b = rng.multinomial(int(current.sum()), p_cur, size=BOOTSTRAP_REPLICATES).astype(np.float64)
    js = jensenshannon(ref_b / ref_b.sum(axis=1, keepdims=True), cur_b / cur_b.sum(axis=1, keepdims=True),
                       base=2, axis=1)
    js_lower = basic_lower(distance, np.nan_to_num(js), float(jensenshannon(p_ref, p_cur, base=2)), confidence)
    unseen_b = cur_b[:, unseen_index] / cur_b.sum(axis=1)
    return js_lower, basic_lower(unseen, unseen_b, float(p_cur[unseen_index]), confidence)


def missing_change_lower(ref_missing: int, ref_rows: int, cur_missing: int, cur_rows: int, *, change: float,
                         confidence: float, seed: int) -> float:
    """Lower bound of the absolute change in the missing-value rate."""
    rng = np.random.default_rng(seed)
    ref_rate, cur_rate = ref_missing / ref_rows, cur_missing / cur_rows
    ref_b = rng.binomial(ref_rows, ref_rate, BOOTSTRAP_REPLICATES) / ref_rows
    cur_b = rng.binomial(cur_rows, cur_rate, BOOTSTRAP_REPLICATES) / cur_rows
    return basic_lower(abs(change), np.abs(cur_b - ref_b), abs(cur_rate - ref_rate), confidence)
