"""Data quality of a batch against the model's signature (the card's ``signature``, see :mod:`.signature`).

Per model input column: is it there, with a type the model can take (:func:`signature.check_table`, one
column at a time so every problem is listed, not only the first); its missing rate, and whether missing
values are new (the column had none in training: ``nullable`` false); for numeric columns the share of
values outside the training range [min, max]; for categorical columns the share of values never seen in
training (when the signature lists every training category). A column's share at or above
``share_threshold`` is an issue; a schema error always is. Nothing here raises for a bad batch: the
report says what is wrong, and ``ok`` is false.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from . import signature as signatures
from .columnar import category_key
from .errors import BadInputError

MAX_EXAMPLES = 5
# A few extreme values are normal in any batch (one in 100 held-out rows of a public table falls outside the
# training range): data quality fails from 5 % of a column's values on.
DEFAULT_SHARE_THRESHOLD = 0.05


def _feature_quality(column: pd.Series, feature: dict[str, Any]) -> dict[str, Any]:
    n = len(column)
    missing = int(column.isna().sum())
    entry: dict[str, Any] = {"kind": feature["kind"], "missing_rate": missing / n if n else 0.0,
                             "unexpected_missing": bool(missing and feature.get("nullable") is False)}
    present = column.dropna()
    if feature["kind"] == "numeric" and "min" in feature and "max" in feature and present.size:
        values = present.to_numpy(dtype=np.float64)
        outside = (values < float(feature["min"])) | (values > float(feature["max"]))
        entry.update({"n_out_of_range": int(outside.sum()), "out_of_range_share": float(outside.mean()),
                      "range": [feature["min"], feature["max"]],
                      "observed_range": [float(values.min()), float(values.max())]})
    categories = feature.get("categories")
    complete = isinstance(categories, list) and len(categories) < signatures.MAX_RECORDED_CATEGORIES
    if feature["kind"] == "categorical" and complete and present.size:
        known = {category_key(c) for c in categories}
        keys = [category_key(v) for v in present.tolist()]
        unseen = [k for k in keys if k not in known]
        entry.update({"n_unseen": len(unseen), "unseen_share": len(unseen) / len(keys),
                      "unseen_examples": sorted(set(unseen))[:MAX_EXAMPLES]})
    return entry


def check_quality(table: pd.DataFrame, signature: dict[str, Any], *, uri: str,
                  share_threshold: float = DEFAULT_SHARE_THRESHOLD) -> dict[str, Any]:
    columns = {str(c): c for c in table.columns}
    schema_errors, features, issues = [], {}, []
    for feature in signature["features"]:
        name = feature["name"]
        if name not in columns:
            schema_errors.append(f"missing column '{name}'")
            continue
        try:
            coerced, _ = signatures.check_table(table[[columns[name]]], {**signature, "features": [feature]},
                                                uri="", label="--current-uri")
        except BadInputError as error:
            schema_errors.append(str(error))
            continue
        entry = features[name] = _feature_quality(coerced[name], feature)
        if entry["unexpected_missing"] and entry["missing_rate"] >= share_threshold:
            issues.append(f"{name}: {entry['missing_rate']:.2%} missing (none in training)")
        if entry.get("out_of_range_share", 0.0) >= share_threshold:
            issues.append(f"{name}: {entry['out_of_range_share']:.2%} outside the training range "
                          f"[{entry['range'][0]:.4g}, {entry['range'][1]:.4g}]")
        if entry.get("unseen_share", 0.0) >= share_threshold:
            issues.append(f"{name}: {entry['unseen_share']:.2%} unseen categories "
                          f"(e.g. {', '.join(entry['unseen_examples'][:3])})")
    return {"ok": not schema_errors and not issues, "uri": uri, "n_rows": len(table),
            "share_threshold": share_threshold, "schema_errors": schema_errors, "issues": issues,
            "features": features}
