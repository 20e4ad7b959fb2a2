"""Bootstrap intervals of a metric over a table's rows, and paired tests of two models on the same rows.

Rows are resampled with replacement from a generator seeded with ``seed``, so every interval and p-value
is reproducible. Each resample's metric equals scikit-learn's on it (macro metrics average over the
classes present in its labels or predictions, zero_division=0; ``r2`` of a resample whose labels are all
equal is 1 for a perfect fit and 0 otherwise, scikit-learn's ``force_finite``). Resamples are drawn in
blocks of at most two million cells, bounding memory for large tables.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

CLASS_METRICS = ("accuracy", "precision_macro", "recall_macro", "f1_macro")
VALUE_METRICS = ("rmse", "mae", "r2")
BOOTSTRAP_METRICS = CLASS_METRICS + VALUE_METRICS
# Memory bound of one bootstrap block: resamples x rows drawn at once.
_BOOTSTRAP_BLOCK_CELLS = 2_000_000


def _resample_rows(n: int, n_resamples: int, seed: int):
    """Blocks of (resamples x n) row indices; the same seed gives the same stream whatever the block size."""
    if n == 0:
        raise ValueError("no rows to resample")
    rng = np.random.default_rng(seed)
    block = max(1, min(n_resamples, _BOOTSTRAP_BLOCK_CELLS // n))
    for start in range(0, n_resamples, block):
        yield rng.integers(0, n, size=(min(block, n_resamples - start), n))


def _scorer(y_true: Any, y_pred: Any, metric: str) -> Callable[[np.ndarray], np.ndarray]:
    """A function of a block of row indices giving ``metric`` of each resample."""
    if metric in VALUE_METRICS:
        true, pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
        return lambda rows: _resample_value_metric(true[rows], pred[rows], metric)
    classes, codes = np.unique(np.concatenate([np.asarray(y_true), np.asarray(y_pred)]), return_inverse=True)
    n = len(y_true)
    true_codes, pred_codes = codes[:n], codes[n:]
    return lambda rows: _resample_metric(true_codes[rows], pred_codes[rows], len(classes), metric)


def _check(metric: str, confidence: float, n_resamples: int) -> None:
    if metric not in BOOTSTRAP_METRICS:
        raise ValueError(f"unknown metric {metric!r}")
    if not 0 < confidence < 1 or n_resamples < 1:
        raise ValueError("confidence must be in (0, 1) and n_resamples positive")


def bootstrap_interval(y_true: Any, y_pred: Any, metric: str, *, n_resamples: int = 1000, confidence: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric`` (one of :data:`BOOTSTRAP_METRICS`) over the rows."""
    _check(metric, confidence, n_resamples)
    score = _scorer(y_true, y_pred, metric)
    scores = np.concatenate([score(rows) for rows in _resample_rows(len(y_true), n_resamples, seed)])
    alpha = 1 - confidence
    low, high = np.quantile(scores, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _resample_value_metric(true: np.ndarray, pred: np.ndarray, metric: str) -> np.ndarray:
    """``metric`` of each row of (resamples x rows) true values and predictions."""
    errors = true - pred
    if metric == "rmse":
        return np.sqrt(np.mean(errors ** 2, axis=1))
    if metric == "mae":
        return np.mean(np.abs(errors), axis=1)
    residual = np.sum(errors ** 2, axis=1)
    total = np.sum((true - true.mean(axis=1, keepdims=True)) ** 2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, 1 - residual / total, np.where(residual == 0, 1.0, 0.0))


def _resample_metric(true: np.ndarray, pred: np.ndarray, n_classes: int, metric: str) -> np.ndarray:
    """``metric`` of each row of (resamples x rows) label and prediction codes."""
    if metric == "accuracy":
        return (true == pred).mean(axis=1)
    resamples = true.shape[0]
    cells = (np.arange(resamples)[:, None] * n_classes + true) * n_classes + pred
    matrices = np.bincount(cells.ravel(), minlength=resamples * n_classes * n_classes)
    matrices = matrices.reshape(resamples, n_classes, n_classes)
    hits = np.einsum("rkk->rk", matrices).astype(float)
    actual, predicted = matrices.sum(axis=2), matrices.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "precision_macro":
            per_class = np.where(predicted > 0, hits / predicted, 0.0)
        elif metric == "recall_macro":
            per_class = np.where(actual > 0, hits / actual, 0.0)
        else:  # f1 = 2 tp / (actual + predicted), which equals 2 p r / (p + r)
            per_class = np.where(actual + predicted > 0, 2 * hits / (actual + predicted), 0.0)
    present = (actual + predicted) > 0
    return (per_class * present).sum(axis=1) / present.sum(axis=1)


def mcnemar_test(y_true: Any, challenger: Any, champion: Any) -> dict[str, Any]:
    """Exact one-sided McNemar test that the challenger is more accurate than the champion on the same rows.

    Only the discordant rows count: ``b`` the challenger gets right and the champion wrong, ``c`` the
    reverse. Under no difference b ~ Binomial(b + c, 1/2); the p-value is P(B >= b).
    """
    from scipy.stats import binomtest

    true = np.asarray(y_true)
    right_new, right_old = np.asarray(challenger) == true, np.asarray(champion) == true
    b, c = int(np.sum(right_new & ~right_old)), int(np.sum(~right_new & right_old))
    p_value = float(binomtest(b, b + c, 0.5, alternative="greater").pvalue) if b + c else 1.0
    return {"method": "exact one-sided McNemar test", "p_value": p_value,
            "discordant": {"challenger_only_right": b, "champion_only_right": c}}


def paired_bootstrap_test(score: Callable[[np.ndarray], np.ndarray], champion_score: Callable[[np.ndarray], np.ndarray],
                          n: int, *, sign: float, n_resamples: int, confidence: float, seed: int) -> dict[str, Any]:
    """Paired percentile bootstrap of the improvement ``sign * (challenger - champion)`` over the same resamples.

    ``score`` and ``champion_score`` give each model's metric on a block of row indices (NaN where the
    metric is undefined on a resample; those resamples are dropped and counted). The one-sided p-value
    of "no improvement" is (1 + #{improvement <= 0}) / (1 + resamples).
    """
    improvements = []
    for rows in _resample_rows(n, n_resamples, seed):
        improvements.append(sign * (score(rows) - champion_score(rows)))
    values = np.concatenate(improvements)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        raise ValueError("the metric is undefined on every resample")
    alpha = 1 - confidence
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    p_value = float((1 + np.sum(values <= 0)) / (1 + len(values)))
    return {"method": "paired percentile bootstrap of the improvement", "p_value": p_value,
            "interval": {"lower": float(low), "upper": float(high), "confidence": confidence},
            "n_resamples": n_resamples, "n_undefined_resamples": int(n_resamples - len(values))}


def resample_scorer(y_true: Any, y_pred: Any, metric: str) -> Callable[[np.ndarray], np.ndarray]:
    """For :func:`paired_bootstrap_test`: ``metric`` (a bootstrap metric) of each resample of these rows."""
    if metric not in BOOTSTRAP_METRICS:
        raise ValueError(f"unknown metric {metric!r}")
    return _scorer(y_true, y_pred, metric)


def row_loss_scorer(losses: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """For metrics that are a mean of per-row values (log_loss, brier, mape): their mean on each resample."""
    return lambda rows: losses[rows].mean(axis=1)


def loop_scorer(compute: Callable[[np.ndarray], float | None]) -> Callable[[np.ndarray], np.ndarray]:
    """For any other metric: ``compute(row indices)`` per resample (None -> NaN)."""
    def score(rows: np.ndarray) -> np.ndarray:
        values = [compute(row) for row in rows]
        return np.array([np.nan if v is None else v for v in values], dtype=float)
    return score
