"""evaluate: metrics against sklearn, KFP UI output, byte-identical reruns, and every refusal.

The iris forests here have cards written before signatures existed (gate_fixtures); test_evaluate_tasks
covers Pipelines of either task with v2 cards."""
from __future__ import annotations

import json

import numpy as np
import pytest
from gate_fixtures import TARGET, fit_forest, iris, put_table, write_model
from sklearn import metrics as sk
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score
from sklearn.model_selection import train_test_split
from step_checks import assert_refused, run_process

from mlops_runtime import models, outputs, storage
from mlops_runtime.errors import ExitCode


@pytest.fixture
def trained(base):
    """A shallow forest (so it makes mistakes) on 70% of iris, and the other 30% as the test table."""
    train, test = train_test_split(iris(), test_size=0.3, stratify=iris()[TARGET], random_state=7)
    model = fit_forest(train, n_estimators=3, max_depth=1, random_state=3)
    model_uri = f"{base}/model/model.skops"
    card = write_model(model, model_uri, train_uri=f"{base}/train.parquet", train=train)
    test_uri = put_table(f"{base}/test.parquet", test.reset_index(drop=True))
    return model, card, model_uri, test, test_uri


def evaluate(step, model_uri: str, test_uri: str, out: str, *extra: str):
    return step("evaluate", "--model-uri", model_uri, "--test-uri", test_uri, "--output-dir", out, *extra)


def executor_input(tmp_path, base: str) -> dict:
    """What KFP substitutes for {executorInput: null} for this component."""
    return {
        "inputs": {"parameterValues": {"model_uri": f"{base}/model/model.skops", "test_uri": f"{base}/test.parquet",
                                       "output_dir": f"{base}/out"}},
        "outputs": {
            "parameters": {"metrics_uri": {"outputFile": str(tmp_path / "kfp" / "metrics_uri")},
                           "accuracy": {"outputFile": str(tmp_path / "kfp" / "accuracy")}},
            "artifacts": {
                "metrics": {"artifacts": [{"name": "metrics", "type": {"schemaTitle": "system.Metrics",
                                                                       "schemaVersion": "0.0.1"},
                                           "uri": "s3://pipeline-root/evaluate/metrics", "metadata": {}}]},
                "classification_metrics": {"artifacts": [{
                    "name": "classification_metrics",
                    "type": {"schemaTitle": "system.ClassificationMetrics", "schemaVersion": "0.0.1"},
                    "uri": "s3://pipeline-root/evaluate/classification_metrics", "metadata": {}}]},
            },
            "outputFile": str(tmp_path / "kfp" / "executor_output.json"),
        },
    }


def test_metrics_match_sklearn(step, base, trained, tmp_path):
    model, card, model_uri, test, test_uri = trained
    out = f"{base}/out"
    spec = executor_input(tmp_path, base)
    parameters = {name: tmp_path / "kfp" / name for name in ("metrics_uri", "accuracy", "score")}
    result = evaluate(step, model_uri, test_uri, out, "--executor-input", json.dumps(spec),
                      "--metrics-uri-output-path", parameters["metrics_uri"],
                      "--accuracy-output-path", parameters["accuracy"], "--score-output-path", parameters["score"])

    x, y = test.drop(columns=[TARGET]), test[TARGET]
    predicted = model.predict(x)
    accuracy = accuracy_score(y, predicted)
    assert 0.5 < accuracy < 1  # the shallow forest errs, so the confusion matrix is not diagonal
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [json.dumps({"accuracy": accuracy, "metrics_uri": f"{out}/metrics.json",
                                                      "score": accuracy})]
    assert parameters["metrics_uri"].read_bytes() == f"{out}/metrics.json".encode()
    assert parameters["accuracy"].read_bytes() == parameters["score"].read_bytes() == repr(accuracy).encode()
    assert storage.list_uris(out) == [f"{out}/_manifest.json", f"{out}/metrics.json"]
    assert [o["name"] for o in outputs.verify_published(out)["objects"]] == ["metrics.json"]

    metrics = json.loads(storage.read_bytes(f"{out}/metrics.json"))
    assert metrics["accuracy"] == accuracy
    assert metrics["precision_macro"] == precision_score(y, predicted, average="macro", zero_division=0)
    assert metrics["recall_macro"] == recall_score(y, predicted, average="macro", zero_division=0)
    assert metrics["f1_macro"] == f1_score(y, predicted, average="macro", zero_division=0)
    expected_matrix = confusion_matrix(y, predicted, labels=[0, 1, 2]).tolist()
    assert metrics["confusion_matrix"] == {"labels": [0, 1, 2], "matrix": expected_matrix}
    assert sum(map(sum, expected_matrix)) == len(test) == 45
    proba = model.predict_proba(x)
    assert metrics["roc_auc"] == sk.roc_auc_score(y, proba, multi_class="ovr", average="macro")
    assert metrics["pr_auc"] == sk.average_precision_score(np.eye(3)[y], proba, average="macro")
    assert metrics["log_loss"] == sk.log_loss(y, proba)
    assert metrics["brier"] == sk.brier_score_loss(y, proba)
    assert (metrics["task"], metrics["n_target_missing"]) == ("classification", 0)
    assert (metrics["n_samples"], metrics["n_features"], metrics["target_column"]) == (45, 4, TARGET)
    assert metrics["model_uri"] == model_uri
    assert metrics["model_sha256"] == card["model_sha256"] == storage.sha256_hex(storage.read_bytes(model_uri))
    test_sha = storage.sha256_hex(storage.read_bytes(test_uri))
    assert metrics["test_data"] == {"uri": test_uri, "sha256": test_sha}
    assert metrics["lineage"]["component"] == "evaluate"
    assert metrics["lineage"]["parameters"] == {"model_uri": model_uri, "test_uri": test_uri}
    assert [(i["name"], i["uri"], i["sha256"]) for i in metrics["lineage"]["inputs"]] == [
        ("--model-uri", model_uri, card["model_sha256"]), ("--test-uri", test_uri, test_sha)]

    executor_output = json.loads((tmp_path / "kfp" / "executor_output.json").read_text())
    assert executor_output["parameterValues"] == {"metrics_uri": f"{out}/metrics.json", "accuracy": accuracy,
                                                  "score": accuracy}
    [scalars] = executor_output["artifacts"]["metrics"]["artifacts"]
    assert scalars["name"] == "metrics" and scalars["uri"] == "s3://pipeline-root/evaluate/metrics"
    assert scalars["metadata"] == {name: metrics[name] for name in
                                   ("accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc", "pr_auc",
                                    "log_loss", "brier")}
    [classification] = executor_output["artifacts"]["classification_metrics"]["artifacts"]
    assert classification["type"] == {"schemaTitle": "system.ClassificationMetrics", "schemaVersion": "0.0.1"}
    assert classification["metadata"] == {"confusionMatrix": {
        "annotationSpecs": [{"displayName": "0"}, {"displayName": "1"}, {"displayName": "2"}],
        "rows": [{"row": row} for row in expected_matrix]}}  # no ROC curve beyond two classes


def test_columns_in_another_order_and_the_card_class_order(step, base, trained):
    model, _card, model_uri, test, _test_uri = trained
    # The card lists the classes in its own order: the confusion matrix follows it.
    write_model(model, model_uri, train_uri=f"{base}/train.parquet", train=test, classes=[2, 0, 1])
    shuffled = test[[TARGET, "petal width (cm)", "sepal length (cm)", "petal length (cm)", "sepal width (cm)"]]
    test_uri = put_table(f"{base}/shuffled.parquet", shuffled)
    assert evaluate(step, model_uri, test_uri, f"{base}/out").exit_code == 0

    metrics = json.loads(storage.read_bytes(f"{base}/out/metrics.json"))
    predicted = model.predict(test.drop(columns=[TARGET]))
    assert metrics["accuracy"] == accuracy_score(test[TARGET], predicted)
    expected_matrix = confusion_matrix(test[TARGET], predicted, labels=[2, 0, 1]).tolist()
    assert metrics["confusion_matrix"] == {"labels": [2, 0, 1], "matrix": expected_matrix}


def test_text_labels_from_a_csv_table(step, tmp_path):
    data = iris()
    data[TARGET] = data[TARGET].map({0: "setosa", 1: "versicolor", 2: "virginica"})
    model = fit_forest(data, n_estimators=3, max_depth=1)
    write_model(model, str(tmp_path / "m" / "model.skops"), train_uri="train.parquet", train=data)
    test_uri = put_table(str(tmp_path / "test.csv"), data)
    result = evaluate(step, str(tmp_path / "m" / "model.skops"), test_uri, str(tmp_path / "out"))
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    predicted = model.predict(data.drop(columns=[TARGET]))
    assert metrics["confusion_matrix"]["labels"] == ["setosa", "versicolor", "virginica"]
    assert metrics["confusion_matrix"]["matrix"] == confusion_matrix(data[TARGET], predicted).tolist()
    assert metrics["accuracy"] == accuracy_score(data[TARGET], predicted)


def test_same_inputs_give_byte_identical_metrics(step, base, trained, tmp_path):
    _model, _card, model_uri, _test, test_uri = trained
    assert evaluate(step, model_uri, test_uri, f"{base}/first").exit_code == 0
    assert evaluate(step, model_uri, test_uri, f"{base}/second").exit_code == 0
    again = run_process("evaluate", "--model-uri", model_uri, "--test-uri", test_uri, "--output-dir", f"{base}/third")
    assert again.returncode == 0, again.stderr
    first = storage.read_bytes(f"{base}/first/metrics.json")
    assert storage.read_bytes(f"{base}/second/metrics.json") == first
    assert storage.read_bytes(f"{base}/third/metrics.json") == first


def test_without_executor_input_no_ui_metrics_are_written(step, trained, base, tmp_path):
    _model, _card, model_uri, _test, test_uri = trained
    result = evaluate(step, model_uri, test_uri, f"{base}/out")
    assert result.exit_code == 0, result.stderr
    assert not (tmp_path / "kfp").exists()


@pytest.mark.parametrize("change, message", [
    (lambda t: t.drop(columns=["petal width (cm)"]), "missing model input column(s): petal width (cm)"),
    (lambda t: t.rename(columns={"sepal length (cm)": "sepal_length"}),
     "missing model input column(s): sepal length (cm)"),
    (lambda t: t.drop(columns=[TARGET]), "target column 'target' (from the model's signature) not found"),
    (lambda t: t.assign(**{TARGET: 7}), "target value(s) the model does not know: 7"),
    (lambda t: t.assign(**{"sepal width (cm)": "wide"}), "column 'sepal width (cm)' should hold numbers"),
    (lambda t: t.assign(**{TARGET: np.nan}), "the target column 'target' has no value in any row"),
])
def test_a_test_table_that_does_not_fit_the_model_is_refused(step, base, trained, change, message):
    _model, _card, model_uri, test, _test_uri = trained
    test_uri = put_table(f"{base}/bad.parquet", change(test))
    line = assert_refused(evaluate(step, model_uri, test_uri, f"{base}/out"), ExitCode.BAD_INPUT, "--test-uri",
                          f"{base}/out")
    assert message in line and test_uri in line


def test_extra_columns_are_ignored(step, base, trained):
    model, _card, model_uri, test, _test_uri = trained
    test_uri = put_table(f"{base}/extra.parquet", test.assign(extra="anything", row_id=range(len(test))))
    assert evaluate(step, model_uri, test_uri, f"{base}/out").exit_code == 0
    metrics = json.loads(storage.read_bytes(f"{base}/out/metrics.json"))
    assert metrics["accuracy"] == accuracy_score(test[TARGET], model.predict(test.drop(columns=[TARGET])))
    assert metrics["n_features"] == 4


def test_a_tampered_model_is_refused(step, base, trained):
    model, _card, model_uri, _test, test_uri = trained
    model.n_estimators = 4  # still a valid skops file, but not the one the card describes
    storage.write_bytes(model_uri, models.dumps(model))
    line = assert_refused(evaluate(step, model_uri, test_uri, f"{base}/out"), ExitCode.MODEL, "--model-uri",
                          f"{base}/out")
    assert "does not match its model card" in line


@pytest.mark.parametrize("missing, option, code", [
    ("model/model.skops", "--model-uri", ExitCode.MODEL),
    ("model/model_card.json", "--model-uri", ExitCode.MODEL),
    ("test.parquet", "--test-uri", ExitCode.BAD_INPUT),
])
def test_a_missing_object_is_refused(step, base, trained, missing, option, code):
    _model, _card, model_uri, _test, test_uri = trained
    storage.delete(f"{base}/{missing}")
    assert_refused(evaluate(step, model_uri, test_uri, f"{base}/out"), code, option, f"{base}/out")


def test_a_malformed_executor_input_is_refused(step, base, trained):
    _model, _card, model_uri, _test, test_uri = trained
    assert_refused(evaluate(step, model_uri, test_uri, f"{base}/out", "--executor-input", "{not json"),
                   ExitCode.BAD_INPUT, "--executor-input", f"{base}/out")


def test_an_unknown_output_scheme_is_refused(step, trained, base):
    _model, _card, model_uri, _test, test_uri = trained
    result = evaluate(step, model_uri, test_uri, "ftp://host/out")
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.stderr.splitlines() == ["error: --output-dir: ftp://host/out/metrics.json: unsupported URI scheme "
                                          "'ftp' (use s3:// or a local path)"]
