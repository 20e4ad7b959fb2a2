"""evaluate on scikit-learn Pipelines of either task with v2 cards (task_fixtures): metrics against sklearn,
rows without a target, null where undefined, the ROC curve for the KFP UI, and the signature check."""
from __future__ import annotations

import json

import numpy as np
import pytest
import task_fixtures
from sklearn import metrics as sk
from step_checks import assert_refused
from test_evaluate import evaluate, executor_input

from mlops_runtime import storage
from mlops_runtime.errors import ExitCode


def test_regression_metrics_match_sklearn(step, base, tmp_path):
    train, test = task_fixtures.table("regression", 300, seed=1), task_fixtures.table("regression", 120, seed=2)
    model = task_fixtures.fit(train, "regression", estimator="forest")
    model_uri = f"{base}/model/model.skops"
    task_fixtures.write(model, model_uri, train, "regression")
    test.loc[[3, 7, 11], task_fixtures.TARGET] = np.nan  # rows without a target are left out and counted
    test_uri = task_fixtures.put(f"{base}/test.parquet", test)
    files = {name: tmp_path / "kfp" / name for name in ("accuracy", "score")}
    result = evaluate(step, model_uri, test_uri, f"{base}/out", "--executor-input",
                      json.dumps(executor_input(tmp_path, base)), "--accuracy-output-path", files["accuracy"],
                      "--score-output-path", files["score"])
    assert result.exit_code == 0, result.stderr

    labeled = test.dropna(subset=[task_fixtures.TARGET])
    y, predicted = labeled[task_fixtures.TARGET], model.predict(labeled[task_fixtures.FEATURES])
    metrics = json.loads(storage.read_bytes(f"{base}/out/metrics.json"))
    assert metrics["rmse"] == sk.root_mean_squared_error(y, predicted)
    assert metrics["mae"] == sk.mean_absolute_error(y, predicted)
    assert metrics["r2"] == sk.r2_score(y, predicted)
    assert metrics["mape"] == sk.mean_absolute_percentage_error(y, predicted)
    assert (metrics["task"], metrics["n_samples"], metrics["n_target_missing"]) == ("regression", 117, 3)
    assert "accuracy" not in metrics and "confusion_matrix" not in metrics
    assert files["accuracy"].read_text() == "-1.0" and files["score"].read_text() == repr(metrics["r2"])
    ui = json.loads((tmp_path / "kfp" / "executor_output.json").read_text())["artifacts"]
    assert ui["metrics"]["artifacts"][0]["metadata"] == {k: metrics[k] for k in ("rmse", "mae", "r2", "mape")}
    shown = [a.get("metadata") for a in ui.get("classification_metrics", {"artifacts": []})["artifacts"]]
    assert not any(shown)  # declared, so listed for kfp.local, but nothing to show for a regressor


def test_mape_is_null_when_a_true_value_is_zero(step, tmp_path):
    train = task_fixtures.table("regression", 200, seed=1)
    model = task_fixtures.fit(train, "regression")
    model_uri = str(tmp_path / "m" / "model.skops")
    task_fixtures.write(model, model_uri, train, "regression")
    test = task_fixtures.table("regression", 50, seed=3)
    test.loc[0, task_fixtures.TARGET] = 0.0
    result = evaluate(step, model_uri, task_fixtures.put(str(tmp_path / "t.csv"), test), str(tmp_path / "out"))
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["mape"] is None and metrics["rmse"] > 0


def test_binary_probability_metrics_and_the_roc_curve(step, base, tmp_path):
    train, test = task_fixtures.table("classification", 400, seed=1), task_fixtures.table("classification", 200, seed=2)
    model = task_fixtures.fit(train, "classification")
    model_uri = f"{base}/model/model.skops"
    task_fixtures.write(model, model_uri, train, "classification")
    test_uri = task_fixtures.put(f"{base}/test.parquet", test)
    result = evaluate(step, model_uri, test_uri, f"{base}/out", "--executor-input",
                      json.dumps(executor_input(tmp_path, base)))
    assert result.exit_code == 0, result.stderr

    y, proba = test[task_fixtures.TARGET], model.predict_proba(test[task_fixtures.FEATURES])[:, 1]
    metrics = json.loads(storage.read_bytes(f"{base}/out/metrics.json"))
    assert metrics["roc_auc"] == sk.roc_auc_score(y, proba)
    assert metrics["pr_auc"] == sk.average_precision_score(y, proba)
    assert metrics["log_loss"] == sk.log_loss(y, proba)
    assert metrics["brier"] == sk.brier_score_loss(y, proba)
    assert 0.8 < metrics["roc_auc"] < 1
    [classification] = json.loads((tmp_path / "kfp" / "executor_output.json").read_text())["artifacts"][
        "classification_metrics"]["artifacts"]
    curve = classification["metadata"]["confidenceMetrics"]
    fpr, tpr, thresholds = sk.roc_curve(y, proba)
    assert len(curve) == len(fpr) <= 200
    assert [(p["falsePositiveRate"], p["recall"]) for p in curve] == list(zip(fpr.tolist(), tpr.tolist(), strict=True))
    assert [p["confidenceThreshold"] for p in curve] == [1.0, *thresholds[1:].tolist()]
    assert "confusionMatrix" in classification["metadata"]


def test_a_batch_with_one_class_gives_null_auc_not_a_crash(step, tmp_path):
    train = task_fixtures.table("classification", 300, seed=1)
    model = task_fixtures.fit(train, "classification")
    model_uri = str(tmp_path / "m" / "model.skops")
    task_fixtures.write(model, model_uri, train, "classification")
    test = task_fixtures.table("classification", 200, seed=2)
    only_ones = task_fixtures.put(str(tmp_path / "ones.parquet"), test[test[task_fixtures.TARGET] == 1])
    result = evaluate(step, model_uri, only_ones, str(tmp_path / "out"))
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["roc_auc"] is None and metrics["pr_auc"] is None
    assert metrics["log_loss"] > 0 and metrics["brier"] > 0 and 0 < metrics["accuracy"] <= 1


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("change, message", [
    (lambda t: t.drop(columns=["x2"]), "missing model input column(s): x2"),
    (lambda t: t.assign(x3=["high"] * len(t)), "column 'x3' should hold numbers (as in training) but holds 'high'"),
])
def test_a_table_that_does_not_fit_the_signature_is_refused(step, tmp_path, task, change, message):
    train = task_fixtures.table(task, 200, seed=1)
    model_uri = str(tmp_path / "m" / "model.skops")
    task_fixtures.write(task_fixtures.fit(train, task), model_uri, train, task)
    test_uri = task_fixtures.put(str(tmp_path / "bad.csv"), change(task_fixtures.table(task, 30, seed=2)))
    line = assert_refused(evaluate(step, model_uri, test_uri, str(tmp_path / "out")), ExitCode.BAD_INPUT,
                          "--test-uri", str(tmp_path / "out"))
    assert message in line and test_uri in line


def test_a_text_target_for_a_regressor_is_refused(step, tmp_path):
    train = task_fixtures.table("regression", 200, seed=1)
    model_uri = str(tmp_path / "m" / "model.skops")
    task_fixtures.write(task_fixtures.fit(train, "regression"), model_uri, train, "regression")
    test = task_fixtures.table("regression", 30, seed=2).assign(y="big")
    line = assert_refused(evaluate(step, model_uri, task_fixtures.put(str(tmp_path / "t.csv"), test),
                                   str(tmp_path / "out")), ExitCode.BAD_INPUT, "--test-uri", str(tmp_path / "out"))
    assert "the model predicts numbers" in line


def test_classification_rows_without_a_target_are_left_out(step, tmp_path):
    train = task_fixtures.table("classification", 300, seed=1)
    model = task_fixtures.fit(train, "classification")
    model_uri = str(tmp_path / "m" / "model.skops")
    task_fixtures.write(model, model_uri, train, "classification")
    test = task_fixtures.table("classification", 100, seed=2)
    test[task_fixtures.TARGET] = test[task_fixtures.TARGET].astype(float)  # as a CSV with gaps reads back
    test.loc[:9, task_fixtures.TARGET] = np.nan
    result = evaluate(step, model_uri, task_fixtures.put(str(tmp_path / "t.csv"), test), str(tmp_path / "out"))
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    labeled = test.iloc[10:]
    y = labeled[task_fixtures.TARGET].astype(int)
    assert (metrics["n_samples"], metrics["n_target_missing"]) == (90, 10)
    assert metrics["accuracy"] == sk.accuracy_score(y, model.predict(labeled[task_fixtures.FEATURES]))
    assert metrics["confusion_matrix"]["labels"] == [0, 1]
