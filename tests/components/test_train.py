"""train: RandomForest model and card on s3:// and local paths, byte-identical reruns, loading back, refusals."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn import datasets
from step_checks import assert_refused, assert_succeeded, run_process

from mlops_runtime import drift, models, outputs, storage, tables
from mlops_runtime.errors import ExitCode, ModelError


def put_table(uri: str, table: pd.DataFrame) -> str:
    storage.write_bytes(uri, table.to_csv(index=False).encode() if uri.endswith(".csv") else tables.table_bytes(table))
    return uri


def iris(target: str = "target") -> pd.DataFrame:
    frame = datasets.load_iris(as_frame=True).frame
    return frame.rename(columns={"target": target})


def train(step, train_uri: str, output_dir, *extra: str):
    return step("train", "--train-uri", train_uri, "--n-estimators", "10", "--output-dir", output_dir, *extra)


def test_model_and_card(step, base, tmp_path):
    train_uri = put_table(f"{base}/in/train.parquet", iris())
    out = f"{base}/out"
    parameter = tmp_path / "kfp" / "model_uri"
    result = train(step, train_uri, out, "--max-depth", "3", "--random-state", "5",
                   "--model-uri-output-path", parameter)
    model_uri = f"{out}/model.skops"
    assert_succeeded(result, {"model_uri": model_uri}, {"model_uri": parameter})
    produced = [f"{out}/model.skops", f"{out}/model_card.json", f"{out}/reference_profile.json"]
    assert storage.list_uris(out) == sorted([*produced, f"{out}/_manifest.json"])
    assert sorted(o["uri"] for o in outputs.verify_published(out)["objects"]) == sorted(produced)

    model_bytes = storage.read_bytes(model_uri)
    training_bytes = storage.read_bytes(train_uri)
    card = json.loads(storage.read_bytes(f"{out}/{models.CARD_FILE}"))
    assert card["model_format"] == "skops" and card["model_file"] == "model.skops"
    assert card["model_sha256"] == storage.sha256_hex(model_bytes)
    assert card["estimator"] == "sklearn.ensemble.RandomForestClassifier"
    assert {k: card["parameters"][k] for k in ("n_estimators", "max_depth", "random_state", "n_jobs")} == {
        "n_estimators": 10, "max_depth": 3, "random_state": 5, "n_jobs": 1}
    assert card["feature_names"] == list(iris().columns[:-1])
    assert card["classes"] == [0, 1, 2]
    assert card["target_column"] == "target" and card["n_train_rows"] == 150
    assert card["library_versions"] == models.library_versions()
    assert card["training_data"] == {"uri": train_uri, "sha256": storage.sha256_hex(training_bytes),
                                     "bytes": len(training_bytes), "class_counts": {"0": 50, "1": 50, "2": 50}}
    assert card["lineage"]["component"] == "train"
    assert card["lineage"]["parameters"] == {
        "train_uri": train_uri, "target_column": "target", "task": "classification", "estimator": "random_forest",
        "categorical_features": [], "drop_columns": [], "n_estimators": 10, "max_depth": 3, "min_samples_leaf": 0,
        "learning_rate": 0.1, "max_iter": 100, "c": 1.0, "alpha": 1.0, "class_weight": "none",
        "search_iterations": 0, "random_state": 5}
    assert card["task"] == "classification" and card["n_target_missing"] == 0
    assert card["signature"]["target"] == {"name": "target", "dtype": "int64", "classes": [0, 1, 2]}
    assert [f["kind"] for f in card["signature"]["features"]] == ["numeric"] * 4
    assert sorted(card["feature_importance"]) == sorted(card["feature_names"])
    assert card["lineage"]["inputs"][0]["sha256"] == card["training_data"]["sha256"]
    # The drift reference profile of the training features, computed once at training time.
    profile_bytes = storage.read_bytes(models.profile_uri_for(model_uri))
    assert card["reference_profile"] == {"file": "reference_profile.json", "sha256": storage.sha256_hex(profile_bytes)}
    profile = drift.parse_profile(profile_bytes, models.profile_uri_for(model_uri))
    assert profile["feature_names"] == card["feature_names"] and profile["n_rows"] == 150

    model, loaded_card = models.load_model(model_uri)
    assert loaded_card == card
    forest = model.named_steps["model"]
    assert len(forest.estimators_) == 10 and max(tree.tree_.max_depth for tree in forest.estimators_) <= 3
    features = iris().drop(columns=["target"])
    assert (model.predict(features) == iris()["target"]).mean() > 0.9


def test_same_data_and_seed_give_byte_identical_models(step, base, tmp_path):
    data = tables.table_bytes(iris())
    local_uri, s3_uri = str(tmp_path / "train.parquet"), f"{base}/in/train.parquet"
    storage.write_bytes(local_uri, data)
    storage.write_bytes(s3_uri, data)
    runs = {"first": (local_uri, "42"), "second": (s3_uri, "42"), "reseeded": (local_uri, "43")}
    for run, (uri, seed) in runs.items():
        assert train(step, uri, f"{base}/{run}", "--random-state", seed).exit_code == 0
    model = {run: storage.read_bytes(f"{base}/{run}/model.skops") for run in runs}
    assert model["first"] == model["second"]
    assert model["first"] != model["reseeded"]


def test_text_labels_from_csv(step, tmp_path):
    frame = iris()
    frame["target"] = np.array(["setosa", "versicolor", "virginica"])[frame["target"]]
    train_uri = put_table(str(tmp_path / "train.csv"), frame.rename(columns={"target": "species"}))
    result = train(step, train_uri, tmp_path / "out", "--target-column", "species")
    assert result.exit_code == 0, result.stderr
    model, card = models.load_model(str(tmp_path / "out" / "model.skops"))
    assert card["classes"] == ["setosa", "versicolor", "virginica"] == model.classes_.tolist()


def test_a_tampered_model_is_refused_on_load(step, tmp_path):
    train_uri = put_table(str(tmp_path / "train.parquet"), iris())
    assert train(step, train_uri, tmp_path / "out").exit_code == 0
    model_file = tmp_path / "out" / "model.skops"
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_file.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match its model card") as refused:
        models.load_model(str(model_file), label="--model-uri")
    assert refused.value.exit_code == ExitCode.MODEL == 5
    assert refused.value.one_line().startswith("--model-uri: ")


def test_a_missing_object_is_refused(step, base):
    result = train(step, f"{base}/in/absent.parquet", f"{base}/out")
    assert_refused(result, 3, "--train-uri", f"{base}/out")


def test_a_missing_target_column_is_refused(step, base):
    train_uri = put_table(f"{base}/in/train.parquet", iris("label"))
    line = assert_refused(train(step, train_uri, f"{base}/out"), 3, "--target-column", f"{base}/out")
    assert "'target' not found" in line


def test_a_single_class_is_refused(step, base):
    train_uri = put_table(f"{base}/in/train.parquet", iris().query("target == 1"))
    line = assert_refused(train(step, train_uri, f"{base}/out"), 3, "--train-uri", f"{base}/out")
    assert "has a single class (1)" in line


def test_text_gaps_and_missing_targets_are_trained_on(step, tmp_path):
    frame = iris().astype({"sepal width (cm)": object})
    frame.loc[7, "sepal width (cm)"] = "wide"  # a text value in a number column: the column becomes categorical
    frame.loc[8, "petal length (cm)"] = np.nan
    frame["target"] = frame["target"].astype(float)
    frame.loc[[3, 60], "target"] = np.nan
    train_uri = put_table(str(tmp_path / "train.csv"), frame)
    assert train(step, train_uri, tmp_path / "out").exit_code == 0
    card = models.read_card(str(tmp_path / "out" / "model.skops"))
    assert card["n_target_missing"] == 2 and card["n_train_rows"] == 148
    assert card["classes"] == [0, 1, 2]  # whole-number floats (NaN made the column float) are integer classes
    kinds = {f["name"]: f["kind"] for f in card["signature"]["features"]}
    assert kinds["sepal width (cm)"] == "categorical" and kinds["petal length (cm)"] == "numeric"


def test_an_unreadable_table_is_refused(step, base):
    storage.write_bytes(f"{base}/in/train.parquet", b"PAR1 truncated")
    line = assert_refused(train(step, f"{base}/in/train.parquet", f"{base}/out"), 3, "--train-uri", f"{base}/out")
    assert "not a readable Parquet table" in line


@pytest.mark.parametrize(("option", "value"), [
    ("--n-estimators", "0"), ("--n-estimators", str(10**12)), ("--n-estimators", "10001"), ("--max-depth", "-1"),
    ("--random-state", str(2**32)), ("--n-estimators", "many"), ("--search-iterations", "201"),
    ("--learning-rate", "0"), ("--learning-rate", "nan"), ("--c", "0"), ("--estimator", "xgboost"),
    ("--task", "clustering"),
])
def test_out_of_range_options_are_usage_errors(step, tmp_path, option, value):
    train_uri = put_table(str(tmp_path / "train.parquet"), iris())
    result = step("train", "--train-uri", train_uri, option, value, "--output-dir", tmp_path / "out")
    assert_refused(result, 2, option, str(tmp_path / "out"))


def test_an_unknown_output_scheme_is_refused(step, tmp_path):
    train_uri = put_table(str(tmp_path / "in" / "train.parquet"), iris())
    assert_refused(train(step, train_uri, "azure://container/out"), 3, "--output-dir", str(tmp_path / "out"))
    assert storage.list_uris(str(tmp_path)) == [train_uri]


def test_the_process_prints_exactly_one_error_line(tmp_path):
    train_uri = put_table(str(tmp_path / "train.parquet"), iris().query("target == 0"))
    refused = run_process("train", "--train-uri", train_uri, "--output-dir", str(tmp_path / "out"))
    assert refused.returncode == 3 and refused.stdout == ""
    assert len(refused.stderr.splitlines()) == 1 and refused.stderr.startswith("error: --train-uri: ")
    assert storage.list_uris(str(tmp_path / "out")) == []
