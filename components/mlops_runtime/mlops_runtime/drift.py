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
import os
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from . import drift_bounds, drift_schema, storage
from .columnar import CATEGORICAL, EMPTY, NUMERICAL, Columns, as_columns
from .drift_statistics import (  # noqa: F401 (re-exported: the drift API in one place)
    ECDF,
    EXACT_KS_MAX_N,
    KS_EXACT_P_MAX_N,
    PSI_EPSILON,
    ks_pvalue,
    ks_statistic,
    ks_wasserstein,
    population_stability_index,
    small_sample_ks,
    two_proportion_pvalue,
    wasserstein,
)
from .drift_summaries import (  # noqa: F401
    MISSING,
    OTHER,
    PSI_QUANTILES,
    UNSEEN,
    CategorySummary,
    NumericSummary,
    Thresholds,
    compare_categories,
    compare_missing,
    compare_numeric,
    psi_counts,
    sketch,
    summarize_categories,
    summarize_numeric,
)
from .errors import BadInputError
from .log import get_logger

log = get_logger(__name__)

PROFILE_FORMAT = "mlops-components/drift-profile"
PROFILE_VERSION = 1
DEFAULT_SKETCH_SIZE = 10_000
DEFAULT_MAX_CATEGORIES = 1_000


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
