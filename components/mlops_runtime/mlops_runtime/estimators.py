"""The estimators train offers, their hyperparameters, the bounded search and permutation importances.

Every model is ``Pipeline([("preprocess", <mlops_runtime.preprocessing>), ("model", <estimator>)])``:

==========================  ===============================  =============================
``--estimator``             classification                   regression
==========================  ===============================  =============================
random_forest (default)     RandomForestClassifier           RandomForestRegressor
hist_gradient_boosting      HistGradientBoostingClassifier   HistGradientBoostingRegressor
linear                      LogisticRegression               Ridge
==========================  ===============================  =============================

Reproducibility: forests run with ``n_jobs=1`` and gradient boosting with one OpenMP thread (its
gradient sums are parallel reductions whose rounding depends on the thread count), so the same data
and seed give the same model bytes on any machine.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from . import preprocessing

SEARCH_FOLDS = 3
IMPORTANCE_MAX_ROWS = 2000
IMPORTANCE_REPEATS = 5


@dataclass(frozen=True)
class Hyperparameters:
    n_estimators: int = 100
    max_depth: int = 0  # 0: unlimited
    min_samples_leaf: int = 0  # 0: the estimator's default (1 for forests, 20 for boosting)
    learning_rate: float = 0.1
    max_iter: int = 100
    c: float = 1.0
    alpha: float = 1.0
    class_weight: str = "none"


def make_estimator(family: str, task: str, hp: Hyperparameters, seed: int, *, categorical: list[int]) -> Any:
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LogisticRegression, Ridge

    classify = task == "classification"
    weight = "balanced" if classify and hp.class_weight == "balanced" else None
    depth = hp.max_depth or None
    if family == "random_forest":
        forest = RandomForestClassifier if classify else RandomForestRegressor
        options = {"class_weight": weight} if classify else {}
        return forest(n_estimators=hp.n_estimators, max_depth=depth, min_samples_leaf=hp.min_samples_leaf or 1,
                      random_state=seed, n_jobs=1, **options)
    if family == "hist_gradient_boosting":
        boosting = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor
        options = {"class_weight": weight} if classify else {}
        return boosting(learning_rate=hp.learning_rate, max_iter=hp.max_iter, max_depth=depth,
                        min_samples_leaf=hp.min_samples_leaf or 20, categorical_features=categorical or None,
                        random_state=seed, **options)
    if family == "linear":
        if classify:
            return LogisticRegression(C=hp.c, class_weight=weight, max_iter=1000, random_state=seed)
        return Ridge(alpha=hp.alpha)
    raise ValueError(f"unknown estimator family {family!r}")


def build(family: str, task: str, kinds: dict[str, str], hp: Hyperparameters, seed: int) -> Any:
    from sklearn.pipeline import Pipeline

    preprocessor, categorical = preprocessing.build_preprocessor(kinds, family)
    estimator = make_estimator(family, task, hp, seed, categorical=categorical)
    return Pipeline([("preprocess", preprocessor), ("model", estimator)])


def search_space(family: str, task: str) -> dict[str, Any]:
    from scipy.stats import loguniform, randint

    if family == "random_forest":
        return {"model__max_depth": [None, 4, 8, 16, 32], "model__min_samples_leaf": randint(1, 21),
                "model__max_features": ["sqrt", 0.5, 1.0]}
    if family == "hist_gradient_boosting":
        return {"model__learning_rate": loguniform(0.01, 0.3), "model__max_leaf_nodes": randint(8, 64),
                "model__min_samples_leaf": randint(5, 51), "model__l2_regularization": loguniform(1e-4, 10.0)}
    if task == "classification":
        return {"model__C": loguniform(1e-3, 1e3)}
    return {"model__alpha": loguniform(1e-3, 1e3)}


def _single_threaded() -> Any:
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="openmp")


def fit(pipeline: Any, features: pd.DataFrame, target: pd.Series, *, family: str, task: str,
        search_iterations: int, seed: int) -> tuple[Any, dict[str, Any] | None, list[str]]:
    """The fitted pipeline (the search's best when ``search_iterations`` > 0), the search summary, warnings."""
    from sklearn.model_selection import KFold, RandomizedSearchCV, StratifiedKFold

    with warnings.catch_warnings(record=True) as caught, _single_threaded():
        warnings.simplefilter("always")
        if search_iterations == 0:
            fitted, summary = pipeline.fit(features, target), None
        else:
            folds = (StratifiedKFold if task == "classification" else KFold)(SEARCH_FOLDS, shuffle=True,
                                                                            random_state=seed)
            scoring = "accuracy" if task == "classification" else "r2"
            search = RandomizedSearchCV(pipeline, search_space(family, task), n_iter=search_iterations,
                                        scoring=scoring, cv=folds, random_state=seed, n_jobs=1, refit=True,
                                        error_score="raise")
            search.fit(features, target)
            fitted = search.best_estimator_
            summary = {"iterations": search_iterations, "folds": SEARCH_FOLDS, "scoring": scoring,
                       "best_score": float(search.best_score_),
                       "best_params": {key.removeprefix("model__"): _plain(value)
                                       for key, value in sorted(search.best_params_.items())}}
    messages = sorted({f"{type(w.message).__name__}: {' '.join(str(w.message).split())}" for w in caught})
    return fitted, summary, messages


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def feature_importance(pipeline: Any, features: pd.DataFrame, target: pd.Series, *, seed: int) -> dict[str, float]:
    """Mean permutation importance of each input column on at most IMPORTANCE_MAX_ROWS sampled rows."""
    from sklearn.inspection import permutation_importance

    if len(features) > IMPORTANCE_MAX_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(len(features), IMPORTANCE_MAX_ROWS, replace=False))
        features, target = features.iloc[rows], target.iloc[rows]
    with warnings.catch_warnings(), _single_threaded():
        warnings.simplefilter("ignore")
        result = permutation_importance(pipeline, features, target, n_repeats=IMPORTANCE_REPEATS,
                                        random_state=seed, n_jobs=1)
    return {str(name): float(value) for name, value in zip(features.columns, result.importances_mean, strict=True)}


def estimator_name(pipeline: Any) -> str:
    estimator = type(pipeline.named_steps["model"])
    # the public import path (sklearn.ensemble), not the private module (sklearn.ensemble._forest)
    return f"{estimator.__module__.split('._')[0]}.{estimator.__name__}"
