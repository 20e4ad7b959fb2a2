"""Evaluate a trained classifier on a held-out table and publish its metrics."""
from __future__ import annotations

import click

from mlops_runtime import models, outputs, step_io
from mlops_runtime.cli import executor_input_option, output_path_option, step
from mlops_runtime.lineage import lineage
from mlops_runtime.metrics import SCALAR_METRICS, aligned_features, compute_metrics

METRICS_FILE = "metrics.json"


@step("evaluate", help="Evaluate a trained model on a test table: accuracy, macro precision/recall/F1 and the "
                       "confusion matrix, written to <output-dir>/metrics.json and shown in the KFP UI.")
@click.option("--model-uri", required=True, help="URI of the model (model.skops, its model_card.json beside it).")
@click.option("--test-uri", required=True, help="URI of the test table (Parquet or CSV) with the card's columns.")
@click.option("--output-dir", required=True, help="URI prefix (s3://... or a local folder) for this step's objects.")
@executor_input_option()
@output_path_option("metrics_uri", "URI of metrics.json.")
@output_path_option("accuracy", "Accuracy on the test table.")
def cli(model_uri: str, test_uri: str, output_dir: str, executor_input: str | None,
        metrics_uri_output_path: str | None, accuracy_output_path: str | None) -> None:
    metrics_uri = step_io.output_uri(output_dir, METRICS_FILE)
    model, card = models.load_model(model_uri, label="--model-uri")  # sha256 verified against the card
    model_record = {"name": "--model-uri", "uri": model_uri, "sha256": card["model_sha256"]}
    table, test_record = step_io.read_input_table(test_uri, label="--test-uri")
    # The same code check_performance scores production batches with, so the numbers compare.
    features, target = aligned_features(table, card, test_uri, label="--test-uri")
    metrics = compute_metrics(model, card, features, target, test_uri, label="--test-uri")
    document = {
        **metrics,
        "target_column": card["target_column"],
        "model_uri": model_uri,
        "model_sha256": card["model_sha256"],
        "test_data": {"uri": test_uri, "sha256": test_record["sha256"]},
        "lineage": lineage("evaluate", {"model_uri": model_uri, "test_uri": test_uri}, [model_record, test_record]),
    }
    with outputs.publication(output_dir, lineage=document["lineage"]) as out:
        out.put_json(metrics_uri, document, label="--output-dir")
        values = {"metrics_uri": metrics_uri, "accuracy": metrics["accuracy"]}
        out.executor_output(
            executor_input,
            metrics={name: metrics[name] for name in SCALAR_METRICS},
            confusion_matrix=(metrics["confusion_matrix"]["labels"], metrics["confusion_matrix"]["matrix"]),
            parameters=values)
        out.parameters({"metrics_uri": (metrics_uri_output_path, metrics_uri),
                        "accuracy": (accuracy_output_path, metrics["accuracy"])})
    step_io.print_outputs(values)


if __name__ == "__main__":
    cli()
