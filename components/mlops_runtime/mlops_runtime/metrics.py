"""Classification metrics of a model on a labeled table, and bootstrap confidence intervals for them.

evaluate (the baseline) and check_performance (production batches) share this code, so a model's
production numbers are computed exactly as its test numbers were.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from . import tables
from .errors import BadInputError, ModelError

SCALAR_METRICS = ("accuracy", "precision_macro", "recall_macro", "f1_macro")
# Memory bound of one bootstrap block: resamples x rows drawn at once.
_BOOTSTRAP_BLOCK_CELLS = 2_000_000


def aligned_features(table: pd.DataFrame, card: dict[str, Any], uri: str, *, label: str,
                     model_label: str = "--model-uri") -> tuple[pd.DataFrame, pd.Series]:
    """The table's features in the card's order and its target; the column sets must match exactly."""
    target = card.get("target_column")
    features = card.get("feature_names")
    if not isinstance(target, str) or not isinstance(features, list) or not features:
        raise ModelError("the model card lacks target_column or feature_names", label=model_label)
    columns = [str(c) for c in table.columns]
    if target not in columns:
        raise BadInputError(f"{uri}: target column '{target}' (from the model card) not found", label=label)
    present = [c for c in columns if c != target]
    missing = [c for c in features if c not in present]
    extra = [c for c in present if c not in features]
    if missing or extra:
        details = []
        if missing:
            details.append(f"missing feature column(s): {', '.join(missing[:10])}")
        if extra:
            details.append(f"unexpected column(s): {', '.join(extra[:10])}")
        raise BadInputError(f"{uri}: columns do not match the model's features ({'; '.join(details)})", label=label)
    ordered = table.set_axis(columns, axis=1)[features + [target]]
    return tables.split_features_target(ordered, target, label=label, uri=uri)


def class_labels(model: Any, card: dict[str, Any], *, model_label: str = "--model-uri") -> tuple[list[Any], list[Any]]:
    """(labels as the card lists them, the model's own class values in that order)."""
    by_text = {str(c): c for c in model.classes_}
    card_classes = card.get("classes")
    if card_classes is None:
        return [plain_value(c) for c in model.classes_], list(model.classes_)
    if not isinstance(card_classes, list) or sorted(map(str, card_classes)) != sorted(by_text):
        raise ModelError(f"the model card's classes {card_classes} are not the model's classes "
                         f"{sorted(by_text)}", label=model_label)
    return card_classes, [by_text[str(c)] for c in card_classes]


def plain_value(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def check_known_classes(target: pd.Series, model: Any, labels: list[Any], uri: str, *, label: str) -> None:
    unknown = sorted({str(v) for v in target[~target.isin(model.classes_)]})
    if unknown:
        raise BadInputError(f"{uri}: target value(s) the model does not know: {', '.join(unknown[:10])} "
                            f"(classes: {', '.join(map(str, labels))})", label=label)


def compute_metrics(model: Any, card: dict[str, Any], features: pd.DataFrame, target: pd.Series, uri: str, *,
                    label: str, model_label: str = "--model-uri") -> dict[str, Any]:
    """Accuracy, macro precision/recall/F1 (zero_division=0), confusion matrix in the card's class order."""
    return compute_metrics_with_predictions(model, card, features, target, uri, label=label,
                                            model_label=model_label)[0]


def compute_metrics_with_predictions(model: Any, card: dict[str, Any], features: pd.DataFrame, target: pd.Series,
                                     uri: str, *, label: str,
                                     model_label: str = "--model-uri") -> tuple[dict[str, Any], np.ndarray]:
    """:func:`compute_metrics` and the model's predictions (for :func:`bootstrap_interval`)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    labels, model_classes = class_labels(model, card, model_label=model_label)
    check_known_classes(target, model, labels, uri, label=label)
    predicted = model.predict(features)
    precision, recall, f1, _ = precision_recall_fscore_support(target, predicted, average="macro", zero_division=0)
    matrix = confusion_matrix(target, predicted, labels=model_classes)
    metrics = {
        "accuracy": float(accuracy_score(target, predicted)),
        "precision_macro": float(precision),
        "recall_macro": float(recall),
        "f1_macro": float(f1),
        "confusion_matrix": {"labels": labels, "matrix": matrix.tolist()},
        "n_samples": int(len(target)),
        "n_features": int(features.shape[1]),
    }
    return metrics, np.asarray(predicted)


def bootstrap_interval(y_true: Any, y_pred: Any, metric: str, *, n_resamples: int = 1000, confidence: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric`` (one of :data:`SCALAR_METRICS`) over the rows.

    Rows are resampled with replacement ``n_resamples`` times from a generator seeded with ``seed``,
    so the interval is reproducible. Each resample's macro metrics equal scikit-learn's on it: the
    average runs over the classes present in its labels or predictions, with zero_division=0.
    Resamples are drawn in blocks of at most two million cells, bounding memory for large batches.
    """
    if metric not in SCALAR_METRICS:
        raise ValueError(f"unknown metric {metric!r}")
    if not 0 < confidence < 1 or n_resamples < 1:
        raise ValueError("confidence must be in (0, 1) and n_resamples positive")
    classes, codes = np.unique(np.concatenate([np.asarray(y_true), np.asarray(y_pred)]), return_inverse=True)
    n = len(y_true)
    if n == 0:
        raise ValueError("no rows to resample")
    true_codes, pred_codes = codes[:n], codes[n:]
    rng = np.random.default_rng(seed)
    block = max(1, min(n_resamples, _BOOTSTRAP_BLOCK_CELLS // n))
    values: list[np.ndarray] = []
    for start in range(0, n_resamples, block):
        rows = rng.integers(0, n, size=(min(block, n_resamples - start), n))
        values.append(_resample_metric(true_codes[rows], pred_codes[rows], len(classes), metric))
    scores = np.concatenate(values)
    alpha = 1 - confidence
    low, high = np.quantile(scores, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


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
