"""Prediction drift: the model's outputs on a batch against its outputs on the reference data.

A model's outputs are a table with fixed column names, so they are profiled and compared like features
(:func:`mlops_runtime.drift.build_profile` / :func:`~mlops_runtime.drift.detect_drift`):

* classification: ``predicted_class`` (categorical, the class as text) and ``probability:<class>``
  (numerical, one per class, from ``predict_proba``);
* regression: ``prediction`` (numerical).

At training time the reference's outputs go into the profile's ``predictions`` section
(``build_profile(table, predictions=frame)``). Outputs on the training rows themselves are over-confident
(a forest has seen them), so :func:`out_of_fold_frame` gives the fair reference: each row predicted by a
model fitted without it (scikit-learn's ``cross_val_predict`` on a clone of the pipeline).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .columnar import category_key

PREDICTED_CLASS, PREDICTION, PROBABILITY_PREFIX = "predicted_class", "prediction", "probability:"
MAX_PROBABILITY_COLUMNS = 50  # beyond this many classes only the predicted class is compared


def _frame(classes: list[Any] | None, predicted: np.ndarray, probabilities: np.ndarray | None) -> pd.DataFrame:
    if classes is None:
        return pd.DataFrame({PREDICTION: np.asarray(predicted, dtype=np.float64)})
    columns: dict[str, Any] = {PREDICTED_CLASS: pd.Series([category_key(v) for v in predicted], dtype=object)}
    if probabilities is not None and len(classes) <= MAX_PROBABILITY_COLUMNS:
        for index, klass in enumerate(classes):
            columns[f"{PROBABILITY_PREFIX}{category_key(klass)}"] = probabilities[:, index]
    return pd.DataFrame(columns)


def is_classifier(model: Any) -> bool:
    return hasattr(model, "classes_") and hasattr(model, "predict_proba")


def prediction_frame(model: Any, features: pd.DataFrame) -> pd.DataFrame:
    """The fitted model's outputs on ``features`` (its raw input columns) as the prediction table."""
    if is_classifier(model):
        probabilities = np.asarray(model.predict_proba(features), dtype=np.float64)
        predicted = np.asarray(model.classes_)[probabilities.argmax(axis=1)]
        return _frame(list(model.classes_), predicted, probabilities)
    return _frame(None, np.asarray(model.predict(features)), None)


def out_of_fold_frame(model: Any, features: pd.DataFrame, target: pd.Series, *, folds: int = 5,
                      random_state: int = 0) -> pd.DataFrame:
    """Reference outputs on the training rows, each from a clone of ``model`` fitted on the other folds.

    ``model`` may be fitted or not (clones are fitted). A class with fewer rows than ``folds`` lowers the
    number of folds to its row count; below two folds the outputs of ``model`` fitted on every row are used.
    """
    from sklearn.base import clone
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict

    if hasattr(model, "predict_proba"):  # a classifier, fitted or not
        folds = min(folds, int(target.value_counts().min()))
        if folds < 2:
            return prediction_frame(clone(model).fit(features, target), features)
        splitter: Any = StratifiedKFold(folds, shuffle=True, random_state=random_state)
        probabilities = cross_val_predict(clone(model), features, target, cv=splitter, method="predict_proba")
        classes = list(np.unique(target))  # cross_val_predict orders columns by the sorted classes
        return _frame(classes, np.asarray(classes)[probabilities.argmax(axis=1)], probabilities)
    if len(target) < 2 * folds:
        return prediction_frame(clone(model).fit(features, target), features)
    splitter = KFold(folds, shuffle=True, random_state=random_state)
    return _frame(None, cross_val_predict(clone(model), features, target, cv=splitter), None)
