"""The model signature: which task a target means, and what a table must look like for a model to score it.

train records the signature in the model card (``card["signature"]``); evaluate, check_performance,
detect_drift and the server check every table against it with :func:`check_table`, so a missing column
or a column of the wrong type is one clear error naming the column, never a crash inside the model.

The task rule (``--task auto``), in order:

1. a boolean, string or categorical target is **classification**;
2. a numeric target with a non-integer value (2.5) is **regression**;
3. an integer-valued target (ints, or floats that are all whole numbers) is **classification** when it
   has at most :data:`MAX_AUTO_CLASSES` distinct values, else **regression** (a weight in grams with 94
   distinct values is a regression target, never a 94-class problem).

Column kinds: a datetime column (datetime dtype, or text that is all ISO 8601 dates such as
``2024-05-01`` or ``2024-05-01T10:00``) is ``datetime``; a boolean, string or categorical column, or a
numeric column named in ``--categorical-features``, is ``categorical``; any other numeric column is
``numeric``.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from .errors import BadInputError, ModelError

TASKS = ("classification", "regression")
KINDS = ("numeric", "categorical", "datetime")
MAX_AUTO_CLASSES = 20
MAX_RECORDED_CATEGORIES = 1000
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")
_DATE_SAMPLE = 1000


def _is_text(series: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(series.dtype) or series.dtype == object


def _is_number(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)


def _is_whole(values: pd.Series) -> bool:
    numbers = values.dropna().to_numpy(dtype=float)
    return bool(np.all(np.isfinite(numbers)) and np.all(numbers == np.round(numbers)))


def infer_task(target: pd.Series, requested: str = "auto", *, label: str = "--task") -> str:
    """The task for ``target`` (missing values already removed or ignored), by the module's rule."""
    if requested not in ("auto", *TASKS):
        raise BadInputError(f"unknown task {requested!r}; use auto, classification or regression", label=label)
    values = target.dropna()
    numeric = _is_number(target)
    if requested == "regression":
        if not numeric:
            raise BadInputError(f"regression needs a numeric target; '{target.name}' holds {target.dtype} values",
                                label=label)
        return "regression"
    if requested == "classification":
        if numeric and not _is_whole(values):
            raise BadInputError(f"target '{target.name}' has non-integer values (e.g. "
                                f"{_first_fraction(values)!r}); use --task regression or auto", label=label)
        return "classification"
    if not numeric:
        return "classification"
    if not _is_whole(values):
        return "regression"
    return "classification" if values.nunique() <= MAX_AUTO_CLASSES else "regression"


def _first_fraction(values: pd.Series) -> float:
    numbers = values.to_numpy(dtype=float)
    fractional = numbers[np.isfinite(numbers) & (numbers != np.round(numbers))]
    return float(fractional[0]) if len(fractional) else float("nan")


def looks_like_dates(series: pd.Series) -> bool:
    """Text whose non-missing values (a sample of them) are all ISO 8601 dates or date-times."""
    if not _is_text(series):
        return False
    sample = series.dropna().head(_DATE_SAMPLE)
    if sample.empty or not all(isinstance(value, str) and _ISO_DATE.match(value) for value in sample):
        return False
    return bool(pd.to_datetime(sample, format="ISO8601", errors="coerce", utc=True).notna().all())


def column_kind(series: pd.Series, *, categorical: bool = False) -> str:
    if categorical:
        return "categorical"
    if pd.api.types.is_datetime64_any_dtype(series.dtype) or looks_like_dates(series):
        return "datetime"
    if _is_number(series):
        return "numeric"
    return "categorical"


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _feature_entry(series: pd.Series, kind: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": str(series.name), "kind": kind, "dtype": str(series.dtype),
                             "nullable": bool(series.isna().any())}
    values = series.dropna()
    if kind == "categorical":
        categories = sorted({_plain(v) for v in values.unique()}, key=str)
        entry["categories"] = categories[:MAX_RECORDED_CATEGORIES]
        entry["n_categories"] = len(categories)
    elif kind == "numeric" and len(values):
        numbers = values.to_numpy(dtype=float)
        entry["min"], entry["max"] = float(np.min(numbers)), float(np.max(numbers))
    return entry


def build_signature(features: pd.DataFrame, target: pd.Series, task: str, *, kinds: dict[str, str],
                    dropped: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """The signature of a model trained on ``features`` (in order) to predict ``target`` for ``task``."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}")
    entries = [_feature_entry(features[name], kinds[str(name)]) for name in features.columns]
    values = target.dropna()
    target_entry: dict[str, Any] = {"name": str(target.name), "dtype": str(target.dtype)}
    if task == "classification":
        target_entry["classes"] = sorted({_plain(v) for v in values.unique()}, key=str)
    else:
        numbers = values.to_numpy(dtype=float)
        target_entry["range"] = [float(np.min(numbers)), float(np.max(numbers))]
    return {"task": task, "features": entries, "target": target_entry, "dropped": list(dropped or [])}


def from_card(card: dict[str, Any], *, label: str = "--model-uri") -> dict[str, Any]:
    """The card's signature, checked; cards written before signatures existed get an all-numeric one."""
    signature = card.get("signature")
    if signature is None:
        names, target = card.get("feature_names"), card.get("target_column")
        if not isinstance(names, list) or not names or not isinstance(target, str):
            raise ModelError("the model card has neither a signature nor feature_names and target_column",
                             label=label)
        classes = card.get("classes")
        return {"task": "classification", "dropped": [],
                "features": [{"name": str(n), "kind": "numeric", "dtype": "float64", "nullable": False} for n in names],
                "target": {"name": target, "dtype": "unknown", **({"classes": classes} if classes else {})}}
    try:
        if signature["task"] not in TASKS or not isinstance(signature["target"]["name"], str):
            raise ValueError("task or target")
        features = signature["features"]
        if not isinstance(features, list) or not features:
            raise ValueError("features")
        for feature in features:
            if not isinstance(feature["name"], str) or feature["kind"] not in KINDS:
                raise ValueError(feature)
    except (KeyError, TypeError, ValueError):
        raise ModelError("the model card's signature is malformed", label=label) from None
    return signature


def _coerce(column: pd.Series, feature: dict[str, Any], *, uri: str, label: str) -> pd.Series:
    name, kind, trained = feature["name"], feature["kind"], str(feature.get("dtype", ""))
    where = f"{uri}: " if uri else ""

    def wrong(expected: str, example: Any) -> BadInputError:
        return BadInputError(f"{where}column '{name}' should hold {expected} (as in training) but holds "
                             f"{example!r} ({column.dtype})", label=label)

    if kind == "numeric" or (kind == "categorical" and _is_numeric_dtype_name(trained)):
        if _is_number(column):
            return column.astype("float64") if trained.startswith("float") else column
        if pd.api.types.is_bool_dtype(column.dtype):
            return column.astype("float64")
        converted = pd.to_numeric(column, errors="coerce")
        bad = converted.isna() & column.notna()
        if bad.any():
            raise wrong("numbers", column[bad].iloc[0])
        return converted.astype("float64")
    if kind == "datetime":
        if pd.api.types.is_datetime64_any_dtype(column.dtype):
            return column
        parsed = pd.to_datetime(column, format="ISO8601", errors="coerce", utc=True)
        bad = parsed.isna() & column.notna()
        if bad.any():
            raise wrong("ISO 8601 dates", column[bad].iloc[0])
        return column
    # categorical with text, bool or category values in training: compare as text
    if trained.startswith("bool"):
        if pd.api.types.is_bool_dtype(column.dtype):
            return column
        raise wrong("true/false values", column.dropna().iloc[0] if column.notna().any() else None)
    if _is_text(column) or isinstance(column.dtype, pd.CategoricalDtype):
        return column
    return column.astype("object").where(column.isna(), column.astype(str))


def _is_numeric_dtype_name(text: str) -> bool:
    try:
        dtype = pd.api.types.pandas_dtype(text)
    except TypeError:
        return False
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def check_table(table: pd.DataFrame, signature: dict[str, Any], *, uri: str, label: str,
                require_target: bool = False) -> tuple[pd.DataFrame, pd.Series | None]:
    """The table's model inputs, in signature order and with the training types, and its target if present.

    A missing input column, or one whose values cannot be the trained type, is a BadInputError naming
    the column; columns the model does not use are ignored.
    """
    where = f"{uri}: " if uri else ""
    columns = {str(c): c for c in table.columns}
    names = [feature["name"] for feature in signature["features"]]
    missing = [name for name in names if name not in columns]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise BadInputError(f"{where}missing model input column(s): {', '.join(missing[:5])}{more}", label=label)
    features = pd.DataFrame({feature["name"]: _coerce(table[columns[feature["name"]]], feature, uri=uri, label=label)
                             for feature in signature["features"]}, index=table.index)
    target_name = signature["target"]["name"]
    if target_name in columns:
        return features, table[columns[target_name]].rename(target_name)
    if require_target:
        raise BadInputError(f"{where}target column '{target_name}' (from the model's signature) not found",
                            label=label)
    return features, None
