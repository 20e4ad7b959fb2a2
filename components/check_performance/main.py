"""check_performance: the production model's metrics on a labeled production batch, against its baseline.

The verdict, for the chosen metric (auto: accuracy for a classifier, r2 for a regressor) with baseline b
(the model's test metric at registration) and tolerance t, for a higher-is-better metric (accuracy,
macro precision/recall/F1, r2):

    degraded  <=>  b - observed > t   and   upper end of the bootstrap interval < b - t

and for a lower-is-better one (rmse, mae):

    degraded  <=>  observed - b > t   and   lower end of the bootstrap interval > b + t

so a batch is called degraded only when the worsening is both larger than the tolerance and too large
to be sampling noise at the given confidence (a small batch with a wide interval is not enough).
The batch is checked against the model's signature; rows without a label are not scored (counted).

Every check is appended to the model's performance history, one JSON object per check under
``<registry>/<model>/performance/`` (an :mod:`mlops_runtime.journal`: named by time plus a random id,
created only if absent), so concurrent checks never overwrite each other.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import click

from mlops_runtime import documents, journal, metrics, models, outputs, performance_report, resampling, step_io, storage
from mlops_runtime.cli import FloatRange, executor_input_option, html_output_option, output_path_option, step
from mlops_runtime.errors import BadInputError, ComponentError, UsageError
from mlops_runtime.lineage import input_record, lineage
from mlops_runtime.log import get_logger
from mlops_runtime.registry import METRICS_FILE, ModelRegistry

PERFORMANCE_FILE = "performance.json"
REPORT_FILE = "performance_report.html"
BATCH_FILE = "batch.parquet"
HISTORY_DIR = "performance"
HISTORY_PLOTTED = 100  # newest checks drawn in the report
MAX_SEED = 2**32 - 1
NO_ACCURACY = -1.0  # the accuracy output of a regression model, which has none

log = get_logger("check_performance")


# ------------------------------------------------------------------------------------------ inputs

def resolve_batch(batch_uri: str) -> str:
    """The batch itself, or for a folder URI (ending in '/') the greatest ``.../batch.parquet`` below it."""
    if not batch_uri.endswith("/"):
        return batch_uri
    found = [uri for uri in storage.list_uris(batch_uri) if uri.rsplit("/", 1)[-1] == BATCH_FILE]
    if not found:
        raise BadInputError(f"{batch_uri}: no {BATCH_FILE} below this folder", label="--batch-uri")
    return max(found)


def resolve_model(model_uri: str | None, registry_uri: str | None, model_name: str,
                  model_ref: str) -> tuple[str, dict[str, Any] | None, ModelRegistry | None]:
    """(model URI, its registry entry or None, the registry or None)."""
    if model_uri and registry_uri:
        raise UsageError("give --model-uri or --registry-uri, not both", label="--model-uri")
    if model_uri:
        return model_uri, None, None
    if not registry_uri:
        raise UsageError("give --registry-uri (with --model-name, --model-ref) or --model-uri", label="--registry-uri")
    try:
        registry = ModelRegistry(registry_uri, model_name)
        if model_ref == "production":
            pointer = registry.production().pointer
            if pointer is None:
                raise BadInputError(f"{registry.base}: no production model yet", label="--model-ref")
            version = int(pointer["version"])
        elif model_ref.isdigit() and int(model_ref) in registry.versions():
            version = int(model_ref)
        else:
            raise BadInputError(f"{registry.base}: no model version '{model_ref}'", label="--model-ref")
        entry = registry.entry(version)
    except ComponentError as error:
        raise error.about("--registry-uri") from None
    return entry["model_uri"], entry, registry


def baseline_metrics(metric: str, model_uri: str, card: dict[str, Any], entry: dict[str, Any] | None,
                     baseline_uri: str | None) -> tuple[float, str]:
    """(baseline value of ``metric``, where it came from): --baseline-metrics-uri, the registry, metrics.json."""
    if not baseline_uri and entry is not None and metrics.is_number(entry.get("metrics", {}).get(metric)):
        return float(entry["metrics"][metric]), f"registry entry of version {entry.get('version')}"
    label = "--baseline-metrics-uri" if baseline_uri else "--model-uri"
    uri = baseline_uri or storage.join(model_uri.rsplit("/", 1)[0], METRICS_FILE)
    if not baseline_uri and not storage.exists(uri):
        raise BadInputError(f"no baseline: no {METRICS_FILE} beside the model and no registry entry; "
                            "pass --baseline-metrics-uri (evaluate's metrics.json)", label=label)
    document = documents.metrics(storage.read_bytes(uri, label=label), uri, label=label, require=(metric,))
    document = metrics.check_metrics_document(document, uri=uri, label=label)
    value = float(document[metric])
    if document.get("model_sha256") not in (None, card["model_sha256"]):
        raise BadInputError(f"{uri}: these metrics are of model sha256 {str(document['model_sha256'])[:12]}…, not of "
                            f"{model_uri} (sha256 {card['model_sha256'][:12]}…)", label=label)
    return value, uri


# ------------------------------------------------------------------------------------------ step

def verdict(value: float, low: float, high: float, baseline: float, tolerance: float,
            direction: str = "higher") -> tuple[bool, str]:
    """(degraded, why) by the module's rule for a metric where ``direction`` is better."""
    higher = direction == "higher"
    worsening = baseline - value if higher else value - baseline
    bar = baseline - tolerance if higher else baseline + tolerance
    end, side, beyond = (high, "upper", "<") if higher else (low, "lower", ">")
    moved = "dropped" if higher else "rose"
    if worsening > tolerance and (end < bar if higher else end > bar):
        return True, (f"{moved} by {worsening:.4f} > tolerance {tolerance:.4f}, and the interval's {side} end "
                      f"{end:.4f} {beyond} {bar:.4f}")
    if worsening > tolerance:
        return False, (f"{moved} by {worsening:.4f} > tolerance {tolerance:.4f}, but the interval [{low:.4f}, "
                       f"{high:.4f}] reaches {bar:.4f}: not significant")
    return False, f"within tolerance (worsening {worsening:+.4f} ≤ {tolerance:.4f})"


@step("check_performance", help="Score the production model on a labeled production batch, compare with its "
                                "baseline (tolerance and bootstrap interval), append the result to the model's "
                                "performance history and write <output-dir>/performance.json and "
                                "performance_report.html.")
@click.option("--batch-uri", required=True,
              help="Labeled batch (Parquet or CSV); a URI ending in '/' means the newest batch.parquet below it "
                   "(the greatest URI: name batch folders by time).")
@click.option("--registry-uri", default=None, help="Model registry root (s3://... or a local folder); empty: none.")
@click.option("--model-name", default="classifier", show_default=True, help="Name of the model in the registry.")
@click.option("--model-ref", default="production", show_default=True,
              help="'production' or a version number in the registry.")
@click.option("--model-uri", default=None, help="A model.skops to check instead of a registry model; empty: none.")
@click.option("--baseline-metrics-uri", default=None,
              help="metrics.json (from evaluate) with the baseline [default: the registry entry's metrics, else "
                   "metrics.json beside the model].")
@click.option("--history-uri", default=None,
              help="Folder of the performance history [default: <registry>/<model>/performance; none without a "
                   "registry].")
@click.option("--metric", type=click.Choice(("auto", *resampling.BOOTSTRAP_METRICS)), default="auto",
              show_default=True, help="Metric the verdict is about, one of the model task's; auto: accuracy for a "
                                      "classifier, r2 for a regressor.")
@click.option("--tolerance", type=FloatRange(0, metrics.UNBOUNDED), default=0.05, show_default=True,
              help="Largest acceptable worsening of the metric from the baseline, in its units (a drop for "
                   "accuracy or r2, a rise for rmse or mae).")
@click.option("--n-bootstrap", type=click.IntRange(100, 10000), default=1000, show_default=True,
              help="Bootstrap resamples of the batch for the confidence interval.")
@click.option("--confidence", type=FloatRange(0.5, 0.999), default=0.95, show_default=True,
              help="Confidence level of the two-sided percentile interval.")
@click.option("--random-state", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
              help="Seed of the bootstrap: the same batch and seed give the same interval.")
@click.option("--output-dir", required=True, help="URI prefix (s3://... or a local folder) for this step's objects.")
@executor_input_option({"metrics": ("Metrics", "The batch's metrics, the baseline and the interval, for the KFP UI."),
                        "classification_metrics": ("ClassificationMetrics",
                                                   "Confusion matrix on the batch, for the KFP UI.")})
@output_path_option("degraded", "Whether the model's performance is significantly below its baseline.", "Boolean")
@output_path_option("accuracy", "Accuracy on the batch (classification; -1 for a regression model).", "Float")
@output_path_option("value", "The checked metric's value on the batch.", "Float")
@output_path_option("report_uri", "URI of performance_report.html.")
@output_path_option("checked_batch_uri", "URI of the batch that was checked (resolved when a folder was given).")
@output_path_option("training_data_uri", "The checked model's training table, from its card ('' if unrecorded): "
                                         "the reference for drift detection and retraining.")
@output_path_option("reference_profile_uri", "The checked model's drift reference profile, stored beside it "
                                             "('' if it has none): the reference for drift detection.")
@html_output_option("The HTML report, for the KFP UI.")
def cli(batch_uri: str, registry_uri: str | None, model_name: str, model_ref: str, model_uri: str | None,
        baseline_metrics_uri: str | None, history_uri: str | None, metric: str, tolerance: float, n_bootstrap: int,
        confidence: float, random_state: int, output_dir: str, executor_input: str | None,
        degraded_output_path: str | None, accuracy_output_path: str | None, value_output_path: str | None,
        report_uri_output_path: str | None,
        checked_batch_uri_output_path: str | None, training_data_uri_output_path: str | None,
        reference_profile_uri_output_path: str | None, report_output_path: str | None) -> None:
    performance_uri = step_io.output_uri(output_dir, PERFORMANCE_FILE)
    report_uri = step_io.output_uri(output_dir, REPORT_FILE)
    model_uri, entry, registry = resolve_model(model_uri or None, registry_uri or None, model_name, model_ref)
    model_label = "--model-uri" if registry is None else "--registry-uri"
    stored = models.load_stored_model(model_uri, label=model_label)
    model, card = stored.model, stored.card
    task = metrics.task_of(card, model_label=model_label)
    metric = metrics.DEFAULT_METRIC[task] if metric == "auto" else metric
    if metric not in metrics.TASK_METRICS[task]:
        raise UsageError(f"{metric} is not a {task} metric (use one of "
                         f"{', '.join(m for m in resampling.BOOTSTRAP_METRICS if m in metrics.TASK_METRICS[task])})",
                         label="--metric")
    low_value, high_value = metrics.METRIC_RANGES[metric]
    if tolerance > high_value - low_value:
        raise UsageError(f"{tolerance:g} is more than {metric} can change", label="--tolerance")
    baseline, baseline_source = baseline_metrics(metric, model_uri, card, entry, baseline_metrics_uri or None)

    batch_uri = resolve_batch(batch_uri)
    table, batch_record = step_io.read_input_table(batch_uri, label="--batch-uri")
    features, target, skipped = metrics.labeled_rows(table, card, batch_uri, label="--batch-uri",
                                                     model_label=model_label)
    if skipped:
        log.warning("%d of %d rows have no label and are not scored", skipped, len(table))
    scores, target, predicted, _proba = metrics.compute_metrics(model, card, features, target, batch_uri,
                                                                label="--batch-uri", model_label=model_label)
    if scores[metric] is None:
        raise BadInputError(f"{batch_uri}: {metric} is undefined on {len(target)} labeled row(s)", label="--batch-uri")
    low, high = resampling.bootstrap_interval(target.to_numpy(), predicted, metric, n_resamples=n_bootstrap,
                                              confidence=confidence, seed=random_state)
    value = float(scores[metric])
    direction = metrics.METRIC_DIRECTIONS[metric]
    degraded, reason = verdict(value, low, high, baseline, tolerance, direction)

    training_data_uri = str((card.get("training_data") or {}).get("uri") or "")
    reference_profile_uri = models.profile_uri_for(model_uri)
    if not storage.exists(reference_profile_uri):
        reference_profile_uri = ""
    history_uri = history_uri or (storage.join(registry.base, HISTORY_DIR) if registry else None)
    checked_at = dt.datetime.now(dt.UTC)
    parameters = {"metric": metric, "tolerance": tolerance, "n_bootstrap": n_bootstrap, "confidence": confidence,
                  "random_state": random_state, "model_ref": model_ref if registry else None}
    result = {
        "checked_at": checked_at.isoformat(), "model": model_name,
        "model_version": entry["version"] if entry else None, "model_uri": model_uri,
        "model_sha256": card["model_sha256"], "batch": {"uri": batch_uri, "sha256": batch_record["sha256"]},
        "task": task, "n_rows": int(len(target)), "n_rows_skipped": int(skipped), "metric": metric,
        "direction": direction, "value": value,
        "ci": {"lower": low, "upper": high, "confidence": confidence, "n_resamples": n_bootstrap,
               "method": "percentile bootstrap over rows"},
        "baseline": baseline, "baseline_source": baseline_source, "tolerance": tolerance,
        "drop": baseline - value if direction == "higher" else value - baseline, "degraded": degraded,
        "reason": reason, "metrics": scores,
        "report_uri": report_uri, "history_uri": history_uri,
        "lineage": lineage("check_performance", parameters,
                           [batch_record, input_record(model_label, model_uri, stored.model_bytes)]),
    }
    earlier = journal.read_recent(history_uri, HISTORY_PLOTTED - 1, parse=documents.performance_record,
                                  label="--history-uri") if history_uri else []
    history = [record for record in earlier if performance_report.comparable(record, metric)] + [result]
    report = performance_report.report_html(result, history)

    with outputs.publication(output_dir, lineage=result["lineage"]) as out:
        record_uri = (journal.append(out, history_uri, result, at=checked_at, label="--history-uri")
                      if history_uri else None)
        out.put_json(performance_uri, {**result, "history_record_uri": record_uri}, label="--output-dir")
        out.put(report_uri, report, label="--output-dir")
        accuracy = float(scores["accuracy"]) if task == "classification" else NO_ACCURACY
        values = {"degraded": degraded, "accuracy": accuracy, "value": value, "report_uri": report_uri,
                  "checked_batch_uri": batch_uri, "training_data_uri": training_data_uri,
                  "reference_profile_uri": reference_profile_uri}
        ui_metrics = metrics.scalar_metrics(scores, task)
        ui_metrics.update({f"baseline_{metric}": baseline, f"{metric}_ci_lower": low, f"{metric}_ci_upper": high,
                           "degraded": float(degraded)})
        matrix = scores.get("confusion_matrix")
        out.executor_output(
            executor_input, metrics=ui_metrics,
            confusion_matrix=(matrix["labels"], matrix["matrix"]) if matrix else None, parameters=values)
        out.parameters({name: (path, values[name]) for name, path in (
            ("degraded", degraded_output_path), ("accuracy", accuracy_output_path), ("value", value_output_path),
            ("report_uri", report_uri_output_path), ("checked_batch_uri", checked_batch_uri_output_path),
            ("training_data_uri", training_data_uri_output_path),
            ("reference_profile_uri", reference_profile_uri_output_path))})
        if report_output_path:
            out.file(report_output_path, report, label="--report-output-path")
    log.info("%s %s: %s = %.4f, interval [%.4f, %.4f], baseline %.4f: %s", "DEGRADED" if degraded else "ok",
             model_uri, metric, value, low, high, baseline, reason)
    step_io.print_outputs(values)


if __name__ == "__main__":
    cli()
