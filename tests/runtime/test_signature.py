"""The task rule, column kinds and checking tables against a model signature."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_runtime import signature
from mlops_runtime.errors import BadInputError, ModelError


@pytest.mark.parametrize(("values", "task"), [
    (["a", "b", "a"], "classification"),
    ([True, False, True], "classification"),
    ([0, 1, 2, 1], "classification"),
    ([0.0, 1.0, np.nan, 1.0], "classification"),
    ([1.5, 2.25, 3.0], "regression"),
    (list(range(21)), "regression"),
    ([float(v) for v in range(3000, 3094)] + [np.nan], "regression"),  # grams: never 94 classes
])
def test_auto_task_rule(values: list, task: str) -> None:
    assert signature.infer_task(pd.Series(values, name="y")) == task


def test_requested_tasks_are_checked() -> None:
    with pytest.raises(BadInputError, match="non-integer values"):
        signature.infer_task(pd.Series([0.5, 1.0], name="y"), "classification")
    with pytest.raises(BadInputError, match="numeric target"):
        signature.infer_task(pd.Series(["a", "b"], name="y"), "regression")
    assert signature.infer_task(pd.Series(list(range(50)), name="y"), "classification") == "classification"
    assert signature.infer_task(pd.Series([0, 1], name="y"), "regression") == "regression"


def test_column_kinds() -> None:
    assert signature.column_kind(pd.Series([1.0, 2.0])) == "numeric"
    assert signature.column_kind(pd.Series([1, 2]), categorical=True) == "categorical"
    assert signature.column_kind(pd.Series(["x", None])) == "categorical"
    assert signature.column_kind(pd.Series([True, False])) == "categorical"
    assert signature.column_kind(pd.Series(["2024-05-01", "2024-06-01T10:00", None])) == "datetime"
    assert signature.column_kind(pd.Series(pd.to_datetime(["2024-05-01"]))) == "datetime"
    assert signature.column_kind(pd.Series(["2024", "2025"])) == "categorical"


def trained_signature() -> dict:
    features = pd.DataFrame({"size": [1.0, np.nan, 3.0], "island": ["a", "b", None], "code": [1, 2, 1]})
    kinds = {"size": "numeric", "island": "categorical", "code": "categorical"}
    return signature.build_signature(features, pd.Series(["x", "y", "x"], name="species"), "classification",
                                     kinds=kinds)


def test_signature_records_types_categories_and_classes() -> None:
    recorded = trained_signature()
    size, island, code = recorded["features"]
    assert size == {"name": "size", "kind": "numeric", "dtype": "float64", "nullable": True, "min": 1.0, "max": 3.0}
    assert island["categories"] == ["a", "b"] and island["nullable"]
    assert code["categories"] == [1, 2]
    assert recorded["target"]["classes"] == ["x", "y"]
    assert signature.from_card({"signature": recorded}) == recorded


def test_check_table_orders_coerces_and_ignores_extra_columns() -> None:
    table = pd.DataFrame({"extra": [0, 0], "code": [2, 9], "island": ["c", "a"], "size": ["4", None]})
    features, target = signature.check_table(table, trained_signature(), uri="t.csv", label="--test-uri")
    assert list(features.columns) == ["size", "island", "code"]
    assert features["size"].tolist()[0] == 4.0 and np.isnan(features["size"].tolist()[1])
    assert target is None


def test_check_table_names_the_offending_column() -> None:
    sig = trained_signature()
    with pytest.raises(BadInputError, match=r"missing model input column\(s\): island"):
        signature.check_table(pd.DataFrame({"size": [1.0], "code": [1]}), sig, uri="t.csv", label="--x")
    with pytest.raises(BadInputError, match="column 'size' should hold numbers .* 'big'"):
        signature.check_table(pd.DataFrame({"size": ["big"], "island": ["a"], "code": [1]}), sig, uri="t.csv",
                              label="--x")
    with pytest.raises(BadInputError, match="target column 'species'"):
        signature.check_table(pd.DataFrame({"size": [1.0], "island": ["a"], "code": [1]}), sig, uri="t.csv",
                              label="--x", require_target=True)


def test_old_cards_get_a_numeric_signature_and_malformed_ones_are_refused() -> None:
    old = signature.from_card({"feature_names": ["a", "b"], "target_column": "target", "classes": [0, 1]})
    assert [f["kind"] for f in old["features"]] == ["numeric", "numeric"]
    with pytest.raises(ModelError, match="malformed"):
        signature.from_card({"signature": {"task": "clustering", "features": [], "target": {"name": "y"}}})
