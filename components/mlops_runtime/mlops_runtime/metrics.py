"""A model's metrics on a labeled table, for either task, and which direction of each metric is better.

evaluate (the baseline), check_performance (production batches) and deploy (champion against
challenger) share this code, so a model's production numbers are computed exactly as its test numbers.

Classification: ``accuracy``, ``precision_macro``, ``recall_macro``, ``f1_macro`` (zero_division=0) from
the predicted classes; from ``predict_proba``: ``roc_auc`` (binary, or the macro average of one-vs-rest
AUCs for more classes), ``pr_auc`` (average precision; macro over classes for more than two),
``log_loss`` and ``brier``. The Brier score is scikit-learn's ``brier_score_loss``: for two classes the
mean squared error of the positive class's probability (0 to 1); for more classes the mean over rows of
the squared distance between the one-hot label and the probability vector (summed over classes, 0 to 2).
Regression: ``rmse``, ``mae``, ``r2`` and ``mape`` (a fraction, not a percentage).
A metric undefined on the rows (``roc_auc`` when a class of the model is absent from the labels,
``mape`` when a true value is 0, ``r2`` on fewer than two rows) is ``None`` (null in JSON), never an error.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd

from . import signature
from .errors import BadInputError, ModelError

CLASSIFICATION_METRICS = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc", "pr_auc",
                          "log_loss", "brier")
REGRESSION_METRICS = ("rmse", "mae", "r2", "mape")
TASK_METRICS = {"classification": CLASSIFICATION_METRICS, "regression": REGRESSION_METRICS}
SCALAR_METRICS = CLASSIFICATION_METRICS + REGRESSION_METRICS
METRIC_DIRECTIONS = {**{name: "higher" for name in ("accuracy", "precision_macro", "recall_macro", "f1_macro",
                                                    "roc_auc", "pr_auc", "r2")},
                     **{name: "lower" for name in ("log_loss", "brier", "rmse", "mae", "mape")}}
# Values a metric can take (and so the bounds of a threshold on it); errors are bounded only by the data.
UNBOUNDED = 1e15
METRIC_RANGES = {**{name: (0.0, 1.0) for name in ("accuracy", "precision_macro", "recall_macro", "f1_macro",
                                                  "roc_auc", "pr_auc")},
                 "brier": (0.0, 2.0), "r2": (-UNBOUNDED, 1.0),
                 **{name: (0.0, UNBOUNDED) for name in ("log_loss", "rmse", "mae", "mape")}}
DEFAULT_METRIC = {"classification": "accuracy", "regression": "r2"}


def task_of(card: dict[str, Any], *, model_label: str = "--model-uri") -> str:
    """The model's task: its signature's (cards without one are classifiers)."""
    return signature.from_card(card, label=model_label)["task"]


def labeled_rows(table: pd.DataFrame, card: dict[str, Any], uri: str, *, label: str,
                 model_label: str = "--model-uri") -> tuple[pd.DataFrame, pd.Series, int]:
    """(model inputs checked against the card's signature, target, rows left out for a missing target)."""
    model_signature = signature.from_card(card, label=model_label)
    features, target = signature.check_table(table, model_signature, uri=uri, label=label, require_target=True)
    assert target is not None
    labeled = target.notna().to_numpy()
    if not labeled.any():
        raise BadInputError(f"{uri}: the target column '{target.name}' has no value in any row", label=label)
    features, target = features[labeled], target[labeled]
    if model_signature["task"] == "regression":
        if not pd.api.types.is_numeric_dtype(target.dtype) or pd.api.types.is_bool_dtype(target.dtype):
            raise BadInputError(f"{uri}: target column '{target.name}' holds {target.dtype} values; the model "
                                "predicts numbers", label=label)
        target = target.astype("float64")
    return features, target, int((~labeled).sum())


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


def as_model_classes(target: pd.Series, model: Any, labels: list[Any], uri: str, *, label: str) -> pd.Series:
    """The target with the model's class values (1.0 read from a CSV with gaps is class 1); unknown ones refused."""
    classes = np.asarray(model.classes_)
    if pd.api.types.is_float_dtype(target.dtype) and np.issubdtype(classes.dtype, np.integer):
        numbers = target.to_numpy()
        if np.all(numbers == np.round(numbers)):
            target = target.astype(classes.dtype)
    unknown = sorted({str(v) for v in target[~target.isin(classes)]})
    if unknown:
        raise BadInputError(f"{uri}: target value(s) the model does not know: {', '.join(unknown[:10])} "
                            f"(classes: {', '.join(map(str, labels))})", label=label)
    return target


def predictions(model: Any, features: pd.DataFrame, task: str, uri: str, *,
                label: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(predictions, class probabilities in ``model.classes_`` order or None): rows the model cannot score
    are the table's fault (a value the training data never had the type of)."""
    try:
        predicted = np.asarray(model.predict(features))
        proba = np.asarray(model.predict_proba(features), dtype=float) if (
            task == "classification" and hasattr(model, "predict_proba")) else None
    except (ValueError, TypeError) as error:
        raise BadInputError(f"{uri}: the model cannot score these rows ({type(error).__name__}: "
                            f"{' '.join(str(error).split())[:200]})", label=label) from None
    return predicted, proba


def compute_metrics(model: Any, card: dict[str, Any], features: pd.DataFrame, target: pd.Series, uri: str, *,
                    label: str, model_label: str = "--model-uri") -> tuple[dict[str, Any], pd.Series, np.ndarray,
                                                                           np.ndarray | None]:
    """(metrics, the target as scored, predictions, probabilities) of the model on labeled rows."""
    task = task_of(card, model_label=model_label)
    if task == "regression":
        predicted, _ = predictions(model, features, task, uri, label=label)
        metrics = regression_metrics(target.to_numpy(dtype=float), predicted.astype(float))
        return {**metrics, "n_samples": int(len(target)), "n_features": int(features.shape[1])}, target, \
            predicted, None
    labels, model_classes = class_labels(model, card, model_label=model_label)
    target = as_model_classes(target, model, labels, uri, label=label)
    predicted, proba = predictions(model, features, task, uri, label=label)
    metrics = classification_metrics(target.to_numpy(), predicted, model_classes)
    metrics.update(probability_metrics(target.to_numpy(), proba, list(model.classes_)))
    metrics["confusion_matrix"]["labels"] = labels
    return {**metrics, "n_samples": int(len(target)), "n_features": int(features.shape[1])}, target, predicted, proba


def classification_metrics(y_true: np.ndarray, predicted: np.ndarray, classes: list[Any]) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    precision, recall, f1, _ = precision_recall_fscore_support(y_true, predicted, average="macro", zero_division=0)
    return {"accuracy": float(accuracy_score(y_true, predicted)), "precision_macro": float(precision),
            "recall_macro": float(recall), "f1_macro": float(f1),
            "confusion_matrix": {"labels": [plain_value(c) for c in classes],
                                 "matrix": confusion_matrix(y_true, predicted, labels=classes).tolist()}}


PROBABILITY_METRICS = ("roc_auc", "pr_auc", "log_loss", "brier")


def probability_metrics(y_true: np.ndarray, proba: np.ndarray | None, classes: list[Any],
                        names: tuple[str, ...] = PROBABILITY_METRICS) -> dict[str, float | None]:
    """roc_auc, pr_auc, log_loss and brier (or just ``names``); ``proba`` columns follow ``classes`` (the
    model's classes_)."""
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score
    from sklearn.preprocessing import label_binarize

    if proba is None:
        return dict.fromkeys(names)
    binary = len(classes) == 2
    positive = (y_true == classes[1]) if binary else None
    present = set(np.unique(y_true).tolist())
    every_class = all(plain_value(c) in present for c in classes)  # AUCs need every class in the labels
    compute = {
        "roc_auc": (lambda: roc_auc_score(positive, proba[:, 1])) if binary else (
            lambda: roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=classes)),
        "pr_auc": (lambda: average_precision_score(positive, proba[:, 1])) if binary else (
            lambda: average_precision_score(label_binarize(y_true, classes=classes), proba, average="macro")),
        "log_loss": lambda: log_loss(y_true, proba, labels=classes),
        "brier": (lambda: brier_score_loss(positive, proba[:, 1])) if binary else (
            lambda: brier_score_loss(y_true, proba, labels=classes)),
    }

    def defined(name: str) -> float | None:
        if name in ("roc_auc", "pr_auc") and not every_class:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                value = float(compute[name]())
            except ValueError:  # e.g. only one class present
                return None
        return value if math.isfinite(value) else None

    return {name: defined(name) for name in names}


def regression_metrics(y_true: np.ndarray, predicted: np.ndarray) -> dict[str, float | None]:
    from sklearn.metrics import mean_absolute_error, mean_absolute_percentage_error, r2_score, root_mean_squared_error

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r2 = float(r2_score(y_true, predicted)) if len(y_true) >= 2 else None
    mape = float(mean_absolute_percentage_error(y_true, predicted)) if np.all(y_true != 0) else None
    return {"rmse": float(root_mean_squared_error(y_true, predicted)),
            "mae": float(mean_absolute_error(y_true, predicted)),
            "r2": r2 if r2 is None or math.isfinite(r2) else None, "mape": mape}


def scalar_metrics(metrics: dict[str, Any], task: str) -> dict[str, float]:
    """The task's defined scalar metrics (for the KFP UI, which has no null)."""
    return {name: float(metrics[name]) for name in TASK_METRICS[task] if metrics.get(name) is not None}


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_metrics_document(document: Any, *, uri: str, label: str) -> dict[str, Any]:
    """A metrics.json (from evaluate) as read back: an object whose task is known and whose every scalar
    metric is null or a number in its range. Documents written before tasks existed are classification."""
    if not isinstance(document, dict):
        raise BadInputError(f"{uri}: the metrics are not a JSON object", label=label)
    task = document.get("task", "classification")
    if task not in TASK_METRICS:
        raise BadInputError(f"{uri}: unknown task {task!r} in the metrics", label=label)
    for name in SCALAR_METRICS:
        value = document.get(name)
        if value is None:
            continue
        low, high = METRIC_RANGES[name]
        if not is_number(value) or not low <= value <= high:
            raise BadInputError(f"{uri}: {name} {value!r} is not a number between {low:g} and {high:g}", label=label)
        if name not in TASK_METRICS[task]:
            raise BadInputError(f"{uri}: {name} is not a {task} metric", label=label)
    n_samples = document.get("n_samples")
    if n_samples is not None and (isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1):
        raise BadInputError(f"{uri}: n_samples {n_samples!r} is not a positive integer", label=label)
    return document


MAX_ROC_POINTS = 200


def roc_points(y_true: np.ndarray, proba: np.ndarray | None, classes: list[Any]) -> list[dict[str, float]] | None:
    """A binary classifier's ROC curve for the KFP UI (at most :data:`MAX_ROC_POINTS` points, ends kept), or
    None (more than two classes, no probabilities, or one class in the labels). The first point, where no
    row is predicted positive, has threshold infinity in scikit-learn; JSON has none, so it is written as 1."""
    from sklearn.metrics import roc_curve

    if proba is None or len(classes) != 2 or len(np.unique(y_true)) != 2:
        return None
    fpr, tpr, thresholds = roc_curve(y_true == classes[1], proba[:, 1])
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), MAX_ROC_POINTS)).round().astype(int))
    return [{"confidenceThreshold": float(min(thresholds[i], 1.0)), "recall": float(tpr[i]),
             "falsePositiveRate": float(fpr[i])} for i in keep]
