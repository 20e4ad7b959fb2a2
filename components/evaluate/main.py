"""Evaluate a trained model (classifier or regressor) on a held-out table and publish its metrics."""
from __future__ import annotations

from mlops_runtime import metrics, models, outputs, step_io
from mlops_runtime.cli import artifact_input_option, executor_input_option, output_dir_option, output_path_option, step
from mlops_runtime.errors import BadInputError
from mlops_runtime.lineage import lineage
from mlops_runtime.log import get_logger

METRICS_FILE = "metrics.json"
NO_ACCURACY = -1.0  # the accuracy output of a regression model, which has none

log = get_logger("evaluate")


@step("evaluate", help="Evaluate a trained model on a test table checked against the model's signature: for a "
                       "classifier accuracy, macro precision/recall/F1, ROC AUC, PR AUC, log loss, Brier score and "
                       "the confusion matrix; for a regressor RMSE, MAE, R² and MAPE. Written to "
                       "<output-dir>/metrics.json and shown in the KFP UI.")
@artifact_input_option("--model-uri", "model", "Model", "model.skops", required=True,
                       help="URI of the model (model.skops, its model_card.json beside it).")
@artifact_input_option("--test-uri", "splits", "Dataset", "test.parquet", required=True,
                       help="URI of the test table (Parquet or CSV) with the model's input columns and its target.")
@output_dir_option("metrics", "Metrics")
@executor_input_option({"metrics": ("Metrics", "Accuracy and macro precision/recall/F1 for the KFP UI."),
                        "classification_metrics": ("ClassificationMetrics", "Confusion matrix for the KFP UI.")})
@output_path_option("metrics_uri", "URI of metrics.json.")
@output_path_option("accuracy", "Accuracy on the test table (classification; -1 for a regression model).",
                    "Float")
@output_path_option("score", "The task's default metric on the test table: accuracy (classification) or r2 "
                             "(regression).", "Float")
def cli(model_uri: str, test_uri: str, output_dir: str, executor_input: str | None,
        metrics_uri_output_path: str | None, accuracy_output_path: str | None,
        score_output_path: str | None) -> None:
    metrics_uri = step_io.output_uri(output_dir, METRICS_FILE)
    model, card = models.load_model(model_uri, label="--model-uri")  # sha256 verified against the card
    task = metrics.task_of(card)
    model_record = {"name": "--model-uri", "uri": model_uri, "sha256": card["model_sha256"]}
    table, test_record = step_io.read_input_table(test_uri, label="--test-uri")
    # The same code check_performance scores production batches with, so the numbers compare.
    features, target, n_target_missing = metrics.labeled_rows(table, card, test_uri, label="--test-uri")
    if n_target_missing:
        log.warning("%d of %d rows have no target value and are left out", n_target_missing, len(table))
    scores, target, _predicted, proba = metrics.compute_metrics(model, card, features, target, test_uri,
                                                                label="--test-uri")
    default_metric = metrics.DEFAULT_METRIC[task]
    if scores[default_metric] is None:
        raise BadInputError(f"{test_uri}: {default_metric} is undefined on {len(target)} labeled row(s)",
                            label="--test-uri")
    document = {
        **scores,
        "task": task,
        "n_target_missing": n_target_missing,
        "target_column": target.name,
        "model_uri": model_uri,
        "model_sha256": card["model_sha256"],
        "test_data": {"uri": test_uri, "sha256": test_record["sha256"]},
        "lineage": lineage("evaluate", {"model_uri": model_uri, "test_uri": test_uri}, [model_record, test_record]),
    }
    with outputs.publication(output_dir, lineage=document["lineage"]) as out:
        out.put_json(metrics_uri, document, label="--output-dir")
        accuracy = scores["accuracy"] if task == "classification" else NO_ACCURACY
        values = {"metrics_uri": metrics_uri, "accuracy": accuracy, "score": scores[default_metric]}
        matrix = scores.get("confusion_matrix")
        out.executor_output(
            executor_input, metrics=metrics.scalar_metrics(scores, task),
            confusion_matrix=(matrix["labels"], matrix["matrix"]) if matrix else None,
            roc_curve=metrics.roc_points(target.to_numpy(), proba, list(model.classes_)) if matrix else None,
            parameters=values)
        out.parameters({"metrics_uri": (metrics_uri_output_path, metrics_uri),
                        "accuracy": (accuracy_output_path, accuracy),
                        "score": (score_output_path, values["score"])})
    step_io.print_outputs(values)


if __name__ == "__main__":
    cli()
