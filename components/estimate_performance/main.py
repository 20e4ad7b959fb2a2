"""estimate_performance: a classifier's metrics on an unlabeled batch, estimated from calibrated confidence (CBPE).

The calibration is fitted on a labeled table the model never trained on (its test split), each run: it
takes milliseconds, and needs no state kept from training. The verdict, for the chosen metric with r the
metric realised on that labeled table and tolerance t:

    estimated_degraded  <=>  r - estimate > t   and   upper end of the estimate's interval < r - t

(the rule check_performance applies to measured metrics). With --registry-uri each estimate is appended
to ``<registry>/<model>/estimates/`` (a journal), so it is tracked over time beside the measured metrics.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import click
import numpy as np

from mlops_runtime import estimation, journal, models, outputs, signature, step_io, storage
from mlops_runtime.cli import FloatRange, executor_input_option, output_path_option, step
from mlops_runtime.columnar import category_key
from mlops_runtime.errors import BadInputError, ModelError
from mlops_runtime.lineage import input_record, lineage
from mlops_runtime.log import get_logger

ESTIMATE_FILE = "performance_estimate.json"
HISTORY_DIR = "estimates"
log = get_logger("estimate_performance")


def probabilities_of(model: Any, table: Any, model_signature: dict[str, Any], *, uri: str,
                     label: str) -> tuple[np.ndarray, Any]:
    features, target = signature.check_table(table, model_signature, uri=uri, label=label)
    try:
        return np.asarray(model.predict_proba(features), dtype=np.float64), target
    except (ValueError, TypeError) as error:
        raise BadInputError(f"{uri}: the model cannot score this table ({' '.join(str(error).split())[:200]})",
                            label=label) from None


@step("estimate_performance", help="Estimate a classifier's accuracy, macro precision, recall and F1 on an "
                                   "unlabeled batch from its calibrated probabilities (confidence-based, like "
                                   "NannyML's CBPE), with 95 % intervals; the calibration is fitted on a labeled "
                                   "table the model never trained on. Writes <output-dir>/performance_estimate.json.")
@click.option("--model-uri", required=True, help="The model (model.skops with model_card.json beside it).")
@click.option("--reference-uri", required=True,
              help="Labeled table the model did not train on (its test split): fits the calibration.")
@click.option("--current-uri", required=True,
              help="The unlabeled batch (labels, if present, are ignored), or a prediction-log partition of the serve "
                   "image (its metadata and prediction columns are ignored).")
@click.option("--output-dir", required=True, help="URI prefix (s3://... or a local folder) for this step's objects.")
@click.option("--metric", type=click.Choice(estimation.METRICS), default="accuracy", show_default=True,
              help="Metric the verdict is about.")
@click.option("--max-drop", type=FloatRange(min=0, max=1), default=0.05, show_default=True,
              help="Tolerated drop of the estimate below the metric realised on the reference table.")
@click.option("--registry-uri", default="", help="Registry root: append the estimate to <registry>/<model>/estimates/.")
@click.option("--model-name", default="classifier", show_default=True, help="Model name in the registry.")
@executor_input_option({"metrics": ("Metrics", "The estimate, its interval and the reference value for the KFP UI.")})
@output_path_option("estimated_degraded", "true when the estimate is significantly below the reference.",
                    "Boolean")
@output_path_option("estimated_metric", "The estimated value of --metric.", "Float")
@output_path_option("estimate_uri", "URI of performance_estimate.json.")
def cli(model_uri: str, reference_uri: str, current_uri: str, output_dir: str, metric: str, max_drop: float,
        registry_uri: str, model_name: str, executor_input: str | None, estimated_degraded_output_path: str | None,
        estimated_metric_output_path: str | None, estimate_uri_output_path: str | None) -> None:
    estimate_uri = step_io.output_uri(output_dir, ESTIMATE_FILE)
    model, card = models.load_model(model_uri, label="--model-uri")
    model_signature = signature.from_card(card)
    if model_signature.get("task", "classification") != "classification" or not hasattr(model, "predict_proba"):
        raise ModelError("performance estimation needs a classifier with predict_proba", label="--model-uri")
    classes = [category_key(c) for c in model.classes_]
    reference, reference_record = step_io.read_input_table(reference_uri, label="--reference-uri")
    current, current_record = step_io.read_input_table(current_uri, label="--current-uri")
    ref_probabilities, ref_target = probabilities_of(model, reference, model_signature, uri=reference_uri,
                                                     label="--reference-uri")
    if ref_target is None:
        raise BadInputError(f"{reference_uri}: target column '{model_signature['target']['name']}' not found "
                            "(the calibration needs labels)", label="--reference-uri")
    labeled = ref_target.notna().to_numpy()
    labels = np.array([category_key(v) for v in ref_target[labeled]], dtype=object)
    if labels.size < 50:
        raise BadInputError(f"{reference_uri}: {labels.size} labeled rows; the calibration needs at least 50",
                            label="--reference-uri")
    calibration = estimation.fit_calibration(ref_probabilities[labeled], labels, classes)
    index = {c: i for i, c in enumerate(classes)}
    label_index = np.array([index.get(v, -1) for v in labels])
    realised = estimation.realised_metrics(ref_probabilities[labeled].argmax(axis=1), label_index, len(classes))
    cur_probabilities, _ = probabilities_of(model, current, model_signature, uri=current_uri, label="--current-uri")
    if cur_probabilities.shape[0] == 0:
        raise BadInputError(f"{current_uri}: the table is empty", label="--current-uri")
    result = estimation.estimate(cur_probabilities, calibration)
    chosen = result["metrics"][metric]
    reference_value = realised[metric]
    degraded = bool(reference_value - chosen["estimate"] > max_drop and chosen["upper"] < reference_value - max_drop)
    document = {**result, "metric": metric, "max_drop": max_drop, "reference_realised": realised,
                "estimated_degraded": degraded, "model_uri": model_uri, "model_sha256": card.get("model_sha256"),
                "reference_uri": reference_uri, "current_uri": current_uri, "calibration": calibration,
                "at": dt.datetime.now(dt.UTC).isoformat()}
    document["lineage"] = lineage("estimate_performance", {"metric": metric, "max_drop": max_drop,
                                                           "model_uri": model_uri},
                                  [input_record("--model-uri", model_uri, storage.read_bytes(model_uri)),
                                   reference_record, current_record])
    with outputs.publication(output_dir, lineage=document["lineage"]) as out:
        out.put_json(estimate_uri, document, label="--output-dir")
        if registry_uri:
            summary = {k: document[k] for k in ("at", "metric", "max_drop", "estimated_degraded", "n_rows",
                                                "model_sha256", "current_uri")}
            summary.update({"metrics": result["metrics"], "reference_realised": realised, "estimate_uri": estimate_uri})
            journal.append(out, storage.join(registry_uri, model_name, HISTORY_DIR), summary,
                           at=dt.datetime.now(dt.UTC), label="--registry-uri")
        out.parameters({
            "estimated_degraded": (estimated_degraded_output_path, degraded),
            "estimated_metric": (estimated_metric_output_path, chosen["estimate"]),
            "estimate_uri": (estimate_uri_output_path, estimate_uri)})
        out.executor_output(executor_input, metrics={
            f"estimated_{metric}": chosen["estimate"], f"estimated_{metric}_lower": chosen["lower"],
            f"estimated_{metric}_upper": chosen["upper"], f"reference_{metric}": reference_value})
    log.info("estimated %s %.4f [%.4f, %.4f] on %d rows; %.4f on the reference: %s", metric, chosen["estimate"],
             chosen["lower"], chosen["upper"], result["n_rows"], reference_value,
             "ESTIMATED DEGRADATION" if degraded else "no estimated degradation")
    step_io.print_outputs({"estimated_degraded": degraded, "estimated_metric": chosen["estimate"],
                           "estimate_uri": estimate_uri})


if __name__ == "__main__":
    cli()
