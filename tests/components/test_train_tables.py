"""train on the tables people have: text, booleans, NaN, dates, ID columns, unseen categories; each estimator x
task; the public palmerpenguins table straight from its CSV bytes; and the bad inputs of issue 7."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from importlib import resources

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.metrics import accuracy_score, r2_score
from step_checks import COMPONENTS, assert_refused

from mlops_runtime import models, signature, storage, tables

ESTIMATORS = ("random_forest", "hist_gradient_boosting", "linear")
TASKS = ("classification", "regression")


def mixed_table(n_rows: int, seed: int) -> pd.DataFrame:
    """Numbers with gaps, text and boolean categories, a numeric code, a date and an ID; both kinds of target."""
    rng = np.random.default_rng(seed)
    size = rng.normal(10, 3, n_rows)
    colour = rng.choice(["red", "green", "blue", "rare"], n_rows, p=[0.4, 0.35, 0.24, 0.01])
    table = pd.DataFrame({
        "size": size,
        "weight": rng.gamma(2.0, 2.0, n_rows),
        "colour": colour,
        "member": rng.random(n_rows) < 0.3,
        "region_code": rng.integers(1, 5, n_rows),
        "seen": pd.date_range("2023-01-01", periods=n_rows, freq="7h").strftime("%Y-%m-%dT%H:%M").to_numpy(),
        "customer_id": [f"c{seed}-{i:06d}" for i in range(n_rows)],
    })
    signal = size + np.where(colour == "red", 4.0, 0.0) + np.where(table["member"], 2.0, 0.0)
    table["label"] = np.where(signal > np.median(signal), "high", "low")
    table["amount"] = signal * 10 + rng.normal(0, 1, n_rows)
    table.loc[rng.random(n_rows) < 0.1, "size"] = np.nan
    table.loc[rng.random(n_rows) < 0.05, "colour"] = None
    return table


def put_csv(uri: str, table: pd.DataFrame) -> str:
    storage.write_bytes(uri, table.to_csv(index=False).encode())
    return uri


def target_of(task: str) -> tuple[str, str]:
    return ("label", "amount") if task == "classification" else ("amount", "label")


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_each_estimator_and_task_on_a_mixed_table(step, tmp_path, estimator, task):
    target, other = target_of(task)
    train_uri = put_csv(str(tmp_path / "train.csv"), mixed_table(600, seed=1).drop(columns=[other]))
    out = tmp_path / "out"
    result = step("train", "--train-uri", train_uri, "--target-column", target, "--estimator", estimator,
                  "--categorical-features", "region_code", "--n-estimators", "20", "--output-dir", out)
    assert result.exit_code == 0, result.stderr
    assert "left out column 'customer_id': ID-like: 600 distinct values in 600 rows" in result.stderr

    model, card = models.load_model(str(out / "model.skops"))
    assert card["task"] == task
    assert card["feature_names"] == ["size", "weight", "colour", "member", "region_code", "seen"]
    kinds = {f["name"]: f["kind"] for f in card["signature"]["features"]}
    assert kinds == {"size": "numeric", "weight": "numeric", "colour": "categorical", "member": "categorical",
                     "region_code": "categorical", "seen": "datetime"}
    dropped = {"name": "customer_id", "reason": "ID-like: 600 distinct values in 600 rows"}
    assert card["signature"]["dropped"] == [dropped]
    assert sorted(card["feature_importance"]) == sorted(card["feature_names"])
    assert max(card["feature_importance"], key=card["feature_importance"].get) in {"size", "colour", "member"}
    assert card["estimator"].rsplit(".", 1)[1] == type(model.named_steps["model"]).__name__
    if task == "classification":
        assert card["classes"] == ["high", "low"] == model.classes_.tolist()
        assert card["signature"]["target"]["classes"] == ["high", "low"]
    else:
        assert card["classes"] is None and len(card["signature"]["target"]["range"]) == 2

    # Scoring a new table through the signature: unseen categories, an unseen code, gaps, a missing date.
    test = mixed_table(300, seed=2)
    test.loc[:9, "colour"] = "purple"
    test.loc[10:19, "region_code"] = 99
    test.loc[20:29, "seen"] = None
    test.loc[30:39, "weight"] = np.nan
    features, truth = signature.check_table(test, card["signature"], uri="test", label="--test-uri")
    predicted = model.predict(features)
    if task == "classification":
        assert accuracy_score(truth, predicted) > 0.8
        assert model.predict_proba(features).shape == (300, 2)
    else:
        assert r2_score(truth, predicted) > 0.7


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_byte_identical_reruns_in_separate_processes(tmp_path, estimator):
    train_uri = put_csv(str(tmp_path / "train.csv"), mixed_table(300, seed=3))

    def run(name: str, seed: str) -> bytes:
        done = subprocess.run([sys.executable, str(COMPONENTS / "train" / "main.py"), "--train-uri", train_uri,
                               "--target-column", "label", "--estimator", estimator, "--n-estimators", "5",
                               "--random-state", seed, "--output-dir", str(tmp_path / name)],
                              capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        return (tmp_path / name / "model.skops").read_bytes()

    first = run("first", "7")
    assert run("second", "7") == first
    if estimator != "linear":  # lbfgs on this separable data does not depend on the seed
        assert run("reseeded", "8") != first


def penguins_csv() -> bytes:
    return resources.files("palmerpenguins").joinpath("data", "penguins.csv").read_bytes()


@pytest.mark.parametrize(("target", "task"), [("species", "classification"), ("body_mass_g", "regression")])
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_palmerpenguins_from_its_csv_bytes(step, tmp_path, estimator, target, task):
    data = penguins_csv()
    table = tables.parse_table(data, "penguins.csv")
    assert table[["island", "sex"]].map(lambda v: isinstance(v, str)).any().all()
    assert table.isna().any().sum() >= 4
    rng = np.random.default_rng(0)
    test_rows = np.zeros(len(table), dtype=bool)
    test_rows[rng.choice(len(table), 80, replace=False)] = True
    train_uri, out = str(tmp_path / "penguins_train.csv"), tmp_path / "out"
    # rows are cut from the CSV bytes as they are, so text and empty fields reach train untouched
    lines = data.decode().splitlines(keepends=True)
    storage.write_bytes(train_uri, "".join([lines[0], *np.array(lines[1:])[~test_rows]]).encode())
    result = step("train", "--train-uri", train_uri, "--target-column", target, "--estimator", estimator,
                  "--output-dir", out)
    assert result.exit_code == 0, result.stderr
    model, card = models.load_model(str(out / "model.skops"))
    assert card["task"] == task
    assert card["n_target_missing"] == int(table.loc[~test_rows, target].isna().sum())
    kinds = {f["name"]: f["kind"] for f in card["signature"]["features"]}
    assert kinds["island"] == kinds["sex"] == "categorical" and kinds["bill_length_mm"] == "numeric"

    test = table.loc[test_rows].dropna(subset=[target])
    features, truth = signature.check_table(test, card["signature"], uri="test", label="--test-uri")
    if task == "classification":
        assert card["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
        assert accuracy_score(truth, model.predict(features)) > 0.9
    else:
        assert r2_score(truth, model.predict(features)) > 0.75


@pytest.mark.parametrize(("task", "estimator"), [("classification", "random_forest"), ("regression", "linear"),
                                                 ("classification", "hist_gradient_boosting")])
def test_a_bounded_search_is_recorded(step, tmp_path, task, estimator):
    target, other = target_of(task)
    train_uri = put_csv(str(tmp_path / "train.csv"), mixed_table(300, seed=4).drop(columns=[other]))
    result = step("train", "--train-uri", train_uri, "--target-column", target, "--estimator", estimator,
                  "--n-estimators", "10", "--max-iter", "20", "--search-iterations", "3", "--output-dir",
                  tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    card = models.read_card(str(tmp_path / "out" / "model.skops"))
    search = card["search"]
    assert search["iterations"] == 3 and search["folds"] == 3
    assert search["scoring"] == ("accuracy" if task == "classification" else "r2")
    for name, value in search["best_params"].items():
        assert card["parameters"][name] == value


def test_drop_columns_and_a_table_of_only_unusable_columns(step, tmp_path):
    table = mixed_table(300, seed=5)
    train_uri = put_csv(str(tmp_path / "train.csv"), table)
    assert step("train", "--train-uri", train_uri, "--target-column", "label", "--drop-columns", "amount, seen",
                "--output-dir", tmp_path / "out").exit_code == 0
    card = models.read_card(str(tmp_path / "out" / "model.skops"))
    assert "amount" not in card["feature_names"] and "seen" not in card["feature_names"]
    assert card["signature"]["dropped"][:2] == [{"name": "amount", "reason": "--drop-columns"},
                                                {"name": "seen", "reason": "--drop-columns"}]

    only_ids = pd.DataFrame({"id": [f"x{i}" for i in range(300)], "empty": [np.nan] * 300,
                             "label": ["a", "b"] * 150})
    uri = put_csv(str(tmp_path / "ids.csv"), only_ids)
    line = assert_refused(step("train", "--train-uri", uri, "--target-column", "label", "--output-dir",
                               tmp_path / "ids"), 3, "--train-uri", str(tmp_path / "ids"))
    assert "no usable feature column" in line


def test_many_categories_never_become_many_columns(step, tmp_path):
    rng = np.random.default_rng(6)
    table = pd.DataFrame({"city": rng.choice([f"city{i}" for i in range(90)], 2000),
                          "x": rng.normal(size=2000)})
    table["y"] = (table["x"] > 0).astype(int)
    train_uri = put_csv(str(tmp_path / "train.csv"), table)
    assert step("train", "--train-uri", train_uri, "--target-column", "y", "--n-estimators", "5",
                "--output-dir", tmp_path / "out").exit_code == 0
    card = models.read_card(str(tmp_path / "out" / "model.skops"))
    assert card["feature_names"] == ["city", "x"]
    assert card["n_encoded_features"] <= 21  # 20 one-hot columns at most, plus x


@pytest.mark.parametrize(("table", "extra", "code", "option", "message"), [
    (pd.DataFrame({"x": [1.0, 2.0, 3.0], "target": [np.nan] * 3}), [], 3, "--target-column",
     "has no values (all 3 rows are missing)"),
    (pd.DataFrame({"x": [1.0, 2.0, 3.0], "target": ["a", "a", None]}), [], 3, "--train-uri", "a single class ('a')"),
    (pd.DataFrame({"x": [1.0, 2.0, 3.0], "target": [0.5, 1.25, 2.0]}), ["--task", "classification"], 3, "--task",
     "non-integer values (e.g. 0.5)"),
    (pd.DataFrame({"x": [1.0, 2.0, 3.0], "target": ["a", "b", "c"]}), ["--task", "regression"], 3, "--task",
     "regression needs a numeric target"),
    (pd.DataFrame({"x": [1.0, 2.0, 3.0], "target": [1.5, 1.5, 1.5]}), [], 3, "--train-uri", "a single value (1.5)"),
    (pd.DataFrame({"x": [1.0, 2.0, 3.0], "target": [0.5, 1.25, 2.0]}), ["--class-weight", "balanced"], 3,
     "--class-weight", "need a classification task"),
    (pd.DataFrame({"x": [1.0, 2.0, 3.0], "target": [0, 1, 1]}), ["--drop-columns", "x,nope"], 3, "--drop-columns",
     "not in the table: 'nope'"),
    (pd.DataFrame({"x": [1.0, 2.0, 3.0], "target": [0, 1, 1]}), ["--categorical-features", "target"], 3,
     "--categorical-features", "'target' is the target column"),
    (pd.DataFrame({"x": [1.0, 2.0, 3.0], "target": [0, 1, 1]}), ["--search-iterations", "2"], 3,
     "--search-iterations", "the smallest class has 1 row(s)"),
    (pd.DataFrame({"x": [1.0, 2.0, 3.0], "target": [0, 1, 1]}), ["--n-estimators", str(10**12)], 2,
     "--n-estimators", "10000"),
])
def test_bad_input_is_one_line_and_nothing_written(step, tmp_path, table, extra, code, option, message):
    train_uri = put_csv(str(tmp_path / "train.csv"), table)
    result = step("train", "--train-uri", train_uri, *extra, "--output-dir", tmp_path / "out")
    line = assert_refused(result, code, option, str(tmp_path / "out"))
    assert message in line, line


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_the_allowlist_is_exactly_what_each_estimator_needs(step, tmp_path, estimator, task):
    target, other = target_of(task)
    train_uri = put_csv(str(tmp_path / "train.csv"), mixed_table(200, seed=7).drop(columns=[other]))
    assert step("train", "--train-uri", train_uri, "--target-column", target, "--estimator", estimator,
                "--n-estimators", "3", "--max-iter", "5", "--output-dir", tmp_path / "out").exit_code == 0
    data = (tmp_path / "out" / "model.skops").read_bytes()
    needed = set(sio.get_untrusted_types(data=data))
    own = {t for t in models.PREPROCESSING_TYPES if t.startswith("mlops_runtime.")}
    assert needed - own - {"numpy.dtype"} == set(models.TRUSTED_TYPES_BY_ESTIMATOR[estimator])
    assert needed <= set(models.TRUSTED_TYPES)
    loaded = models.loads(data)
    card = json.loads((tmp_path / "out" / "model_card.json").read_text())
    table = pd.read_csv(io.StringIO(storage.read_bytes(train_uri).decode()))
    features, _ = signature.check_table(table, card["signature"], uri="", label="--x")
    assert (loaded.predict(features) == sio.loads(data, trusted=sorted(needed)).predict(features)).all()
