"""A fair champion/challenger: both models scored on the same labeled rows, with a paired test.

The rows must be data neither model trained on (the newest labeled rows, or a time-ordered holdout).
The challenger is better when its improvement on the chosen metric (in the metric's better direction)

* is at least ``min_improvement`` (and above 0), and
* is significant at ``alpha``: accuracy by the exact one-sided McNemar test, any other metric by a
  one-sided paired bootstrap of the improvement (the same resampled rows for both models).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from . import metrics, resampling
from .errors import BadInputError, ModelError


@dataclass
class Contender:
    name: str  # "challenger" or "champion"
    model: Any
    card: dict[str, Any]
    label: str  # the option naming where the model came from


def _row_losses(metric: str, y_true: np.ndarray, predicted: np.ndarray, proba: np.ndarray | None,
                classes: list[Any]) -> np.ndarray:
    if metric == "mape":
        return np.abs(y_true - predicted) / np.abs(y_true)
    assert proba is not None
    index = np.searchsorted(np.asarray(classes), y_true)  # a model's classes_ are sorted
    if metric == "log_loss":
        eps = np.finfo(proba.dtype).eps
        return -np.log(np.clip(proba[np.arange(len(y_true)), index], eps, 1))
    onehot = np.eye(len(classes))[index]
    if len(classes) == 2:  # scikit-learn's binary Brier score: the positive class only
        return (proba[:, 1] - onehot[:, 1]) ** 2
    return np.sum((proba - onehot) ** 2, axis=1)


def _scorer(metric: str, y_true: np.ndarray, predicted: np.ndarray, proba: np.ndarray | None, classes: list[Any]):
    if metric in resampling.BOOTSTRAP_METRICS:
        return resampling.resample_scorer(y_true, predicted, metric)
    if metric in ("log_loss", "brier", "mape"):
        return resampling.row_loss_scorer(_row_losses(metric, y_true, predicted, proba, classes))
    assert proba is not None
    return resampling.loop_scorer(
        lambda rows: metrics.probability_metrics(y_true[rows], proba[rows], classes, (metric,))[metric])


def compare(challenger: Contender, champion: Contender, table: pd.DataFrame, uri: str, *, label: str, metric: str,
            alpha: float, min_improvement: float, n_resamples: int, seed: int) -> dict[str, Any]:
    """Score both models on ``table`` and test the challenger's improvement; returns the full record."""
    task = metrics.task_of(challenger.card, model_label=challenger.label)
    if metrics.task_of(champion.card, model_label=champion.label) != task:
        raise ModelError(f"the production model is not a {task} model like the challenger", label=champion.label)
    scored = {}
    target: np.ndarray | None = None
    n_target_missing = 0
    for who in (challenger, champion):
        features, labels, n_target_missing = metrics.labeled_rows(table, who.card, uri, label=label,
                                                                  model_label=who.label)
        values, labels, predicted, proba = metrics.compute_metrics(who.model, who.card, features, labels, uri,
                                                                   label=label, model_label=who.label)
        if values.get(metric) is None:
            raise BadInputError(f"{uri}: {metric} of the {who.name} is undefined on these rows", label=label)
        classes = list(who.model.classes_) if task == "classification" else []
        scored[who.name] = (values, predicted, proba, classes)
        target = labels.to_numpy()
    assert target is not None
    sign = 1.0 if metrics.METRIC_DIRECTIONS[metric] == "higher" else -1.0
    new, old = scored["challenger"], scored["champion"]
    improvement = sign * (new[0][metric] - old[0][metric])
    if metric == "accuracy":
        test = resampling.mcnemar_test(target, new[1], old[1])
    else:
        test = resampling.paired_bootstrap_test(
            _scorer(metric, target, new[1], new[2], new[3]), _scorer(metric, target, old[1], old[2], old[3]),
            len(target), sign=sign, n_resamples=n_resamples, confidence=1 - alpha, seed=seed)
    test["alpha"] = alpha
    better = improvement > 0 and improvement >= min_improvement and test["p_value"] < alpha
    return {"metric": metric, "direction": metrics.METRIC_DIRECTIONS[metric],
            "challenger": new[0][metric], "champion": old[0][metric], "improvement": improvement,
            "min_improvement": min_improvement, "test": test, "challenger_better": bool(better),
            "n_rows": int(len(target)), "n_target_missing": n_target_missing,
            "scores": {"challenger": metrics.scalar_metrics(new[0], task),
                       "champion": metrics.scalar_metrics(old[0], task)}}


def summary(record: dict[str, Any]) -> str:
    """One line: both scores on the comparison data, the improvement and the test (deploy's reason)."""
    mine, theirs = f"{record['challenger']:.4g}", f"{record['champion']:.4g}"
    test = record["test"]
    interval = (f", improvement interval [{test['interval']['lower']:.4g}, {test['interval']['upper']:.4g}]"
                if "interval" in test else "")
    return (f"on {record['data']['uri']} ({record['n_rows']} rows) {record['metric']} {mine} vs production {theirs} "
            f"(version {record['champion_version']}): improvement {record['improvement']:.4g} (minimum "
            f"{record['min_improvement']:g}), {test['method']} p = {test['p_value']:.3g} (alpha {test['alpha']:g})"
            f"{interval}")
