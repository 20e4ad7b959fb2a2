"""Preprocessing that lives inside the saved model: raw table columns in, estimator-ready numbers out.

train fits a scikit-learn ``Pipeline([("preprocess", ColumnTransformer), ("model", estimator)])``, so
every consumer of the model file (evaluate, check_performance, a server) applies the same transform to
raw columns (text, booleans, NaN, dates). The column rule (:func:`plan_columns`):

- a column whose values are all missing is left out ("all values missing");
- a text / boolean / category column (or a numeric one named in ``--categorical-features``) is
  categorical; a text column with more than :data:`ID_LIKE_MIN_DISTINCT` distinct values that are also
  more than :data:`ID_LIKE_DISTINCT_SHARE` of its non-missing values looks like an identifier and is
  left out ("ID-like"); so is a column whose values are not scalars (lists, dicts);
- a datetime column (datetime dtype or ISO 8601 text, :func:`mlops_runtime.signature.column_kind`)
  becomes the calendar features :data:`CALENDAR_PARTS`;
- any other column is numeric.

Encoding per estimator (:func:`build_preprocessor`): random forests and linear models one-hot encode
categories (at most :data:`ONE_HOT_MAX_CATEGORIES` columns per category column: categories seen fewer
than :data:`MIN_FREQUENCY` times, the least frequent beyond that bound, and categories unseen in
training share one "infrequent" column) and impute missing numbers with the median plus a missing
indicator; linear models also standardise. Histogram gradient boosting gets ordinal codes (unknown
categories and missing values become missing, which it handles natively) and its native categorical
support, and keeps missing numbers as NaN.

The three small transformers below are part of the model file; :mod:`mlops_runtime.models` trusts them
by their exact type names.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from . import signature

ID_LIKE_MIN_DISTINCT = 100
ID_LIKE_DISTINCT_SHARE = 0.5
MIN_FREQUENCY = 5
ONE_HOT_MAX_CATEGORIES = 20
ORDINAL_MAX_CATEGORIES = 255  # hist gradient boosting accepts at most max_bins (255) categories
CALENDAR_PARTS = ("year", "month", "day", "day_of_week", "hour")
ESTIMATOR_FAMILIES = ("random_forest", "hist_gradient_boosting", "linear")


def _frame(X: Any, columns: list[str]) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X
    return pd.DataFrame(np.asarray(X, dtype=object), columns=columns[: np.shape(X)[1]])


class _ColumnTransformer(TransformerMixin, BaseEstimator):
    """Records the input columns at fit; transforms column by column."""

    def fit(self, X: Any, y: Any = None) -> _ColumnTransformer:
        if isinstance(X, pd.DataFrame):
            columns = [str(c) for c in X.columns]
        else:
            columns = [str(i) for i in range(np.shape(X)[1])]
        self.columns_ = columns
        self.n_features_in_ = len(columns)
        return self

    def _output_names(self) -> list[str]:
        return list(self.columns_)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(self._output_names(), dtype=object)


class NumericValues(_ColumnTransformer):
    """Columns as float64: text numbers parsed; unparseable values and +-inf become NaN."""

    def transform(self, X: Any) -> np.ndarray:
        frame = _frame(X, self.columns_)
        out = np.empty((len(frame), frame.shape[1]), dtype=np.float64)
        for index, name in enumerate(frame.columns):
            column = frame[name]
            if pd.api.types.is_bool_dtype(column.dtype):
                column = column.astype("float64")
            elif not pd.api.types.is_numeric_dtype(column.dtype):
                column = pd.to_numeric(column, errors="coerce")
            out[:, index] = column.to_numpy(dtype=np.float64, na_value=np.nan)
        out[~np.isfinite(out)] = np.nan
        return out


def _as_text(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value)


class CategoryText(_ColumnTransformer):
    """Category columns as text (``1``, ``1.0`` and ``"1"`` are one category), missing values as NaN."""

    def transform(self, X: Any) -> np.ndarray:
        frame = _frame(X, self.columns_)
        out = np.empty((len(frame), frame.shape[1]), dtype=object)
        for index, name in enumerate(frame.columns):
            codes, uniques = pd.factorize(frame[name], use_na_sentinel=True)
            texts = np.array([_as_text(u) for u in uniques] + [np.nan], dtype=object)
            out[:, index] = texts[codes]  # code -1 (missing) takes the last entry, NaN
        return out


class CalendarFeatures(_ColumnTransformer):
    """Each date column as year, month, day, day of week (Monday 0) and hour; NaN where not a date."""

    def _output_names(self) -> list[str]:
        return [f"{name}_{part}" for name in self.columns_ for part in CALENDAR_PARTS]

    def transform(self, X: Any) -> np.ndarray:
        frame = _frame(X, self.columns_)
        out = np.empty((len(frame), frame.shape[1] * len(CALENDAR_PARTS)), dtype=np.float64)
        for index, name in enumerate(frame.columns):
            dates = _dates(frame[name])
            for offset, part in enumerate(CALENDAR_PARTS):
                out[:, index * len(CALENDAR_PARTS) + offset] = getattr(dates.dt, part).to_numpy(
                    dtype=np.float64, na_value=np.nan)
        return out


def _dates(column: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        return column.dt.tz_convert("UTC") if getattr(column.dt, "tz", None) is not None else column
    text = column if signature._is_text(column) else column.astype("object").where(column.isna(), column.astype(str))
    return pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)


def plan_columns(features: pd.DataFrame, *, categorical: set[str]) -> tuple[dict[str, str], list[dict[str, str]]]:
    """Each usable column's kind (in table order), and the columns left out with the reason."""
    kinds: dict[str, str] = {}
    dropped: list[dict[str, str]] = []
    for name in features.columns:
        column = features[name]
        present = int(column.notna().sum())
        if present == 0:
            dropped.append({"name": str(name), "reason": "all values missing"})
            continue
        kind = signature.column_kind(column, categorical=str(name) in categorical)
        if kind == "categorical":
            try:
                distinct = int(column.nunique())
            except TypeError:  # lists or dicts (nested Parquet columns) are not hashable
                dropped.append({"name": str(name), "reason": "values are not scalars"})
                continue
            explicit = str(name) in categorical
            if not explicit and distinct > ID_LIKE_MIN_DISTINCT and distinct > ID_LIKE_DISTINCT_SHARE * present:
                dropped.append({"name": str(name), "reason": f"ID-like: {distinct} distinct values in {present} rows"})
                continue
        kinds[str(name)] = kind
    return kinds, dropped


def build_preprocessor(kinds: dict[str, str], family: str) -> tuple[Any, list[int]]:
    """The ColumnTransformer for ``family``, and the indices of its categorical outputs (ordinal codes)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    if family not in ESTIMATOR_FAMILIES:
        raise ValueError(f"unknown estimator family {family!r}")
    numeric = [name for name, kind in kinds.items() if kind == "numeric"]
    dates = [name for name, kind in kinds.items() if kind == "datetime"]
    categories = [name for name, kind in kinds.items() if kind == "categorical"]

    def numbers(first: Any) -> Any:
        if family == "hist_gradient_boosting":
            return first
        steps = [("values", first), ("impute", SimpleImputer(strategy="median", add_indicator=True,
                                                             keep_empty_features=True))]
        if family == "linear":
            steps.append(("scale", StandardScaler()))
        return Pipeline(steps)

    if family == "hist_gradient_boosting":
        encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                                 encoded_missing_value=np.nan, min_frequency=MIN_FREQUENCY,
                                 max_categories=ORDINAL_MAX_CATEGORIES)
    else:
        encoder = OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=MIN_FREQUENCY,
                                max_categories=ONE_HOT_MAX_CATEGORIES, sparse_output=False)
    transformers = []
    if numeric:
        transformers.append(("numeric", numbers(NumericValues()), numeric))
    if dates:
        transformers.append(("datetime", numbers(CalendarFeatures()), dates))
    if categories:
        transformers.append(("categorical", Pipeline([("text", CategoryText()), ("encode", encoder)]), categories))
    first_category = len(numeric) + len(CALENDAR_PARTS) * len(dates)
    ordinal = list(range(first_category, first_category + len(categories)))
    if family != "hist_gradient_boosting":
        ordinal = []
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0), ordinal


def n_encoded_columns(pipeline: Any) -> int:
    """How many columns the fitted preprocessing feeds the estimator."""
    return int(pipeline.named_steps["model"].n_features_in_)
