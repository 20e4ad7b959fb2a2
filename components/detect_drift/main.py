"""detect_drift: compare a current table with a reference table or profile; write a JSON and an HTML report."""
from __future__ import annotations

import datetime as dt
from contextlib import ExitStack
from typing import Any

import click

from mlops_runtime import drift, journal, model_monitoring, models, outputs, prediction_log, step_io, storage
from mlops_runtime.cli import (
    FloatRange,
    executor_input_option,
    html_output_option,
    output_dir_option,
    output_path_option,
    step,
)
from mlops_runtime.columnar import open_columns
from mlops_runtime.data_quality import DEFAULT_SHARE_THRESHOLD as QUALITY_SHARE
from mlops_runtime.drift_report import render_html, report_bytes
from mlops_runtime.errors import UsageError
from mlops_runtime.lineage import input_record, lineage
from mlops_runtime.log import get_logger

HISTORY_DIR = "drift"  # <registry>/<model>/drift/: one record per check, for the history report
REPORT_FILE = "drift_report.json"
HTML_FILE = "drift_report.html"
DEFAULTS = drift.Thresholds()

log = get_logger("detect_drift")

_POSITIVE = FloatRange(min=0, min_open=True)
_SHARE = FloatRange(min=0, max=1, min_open=True)


def names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


@step("detect_drift", help="Detect data drift between a reference (a table, or a profile written by "
                           "mlops_runtime.drift.write_profile) and a current table, feature by feature: KS + PSI + "
                           "normalised Wasserstein for numerical features, chi-square + Jensen-Shannon for "
                           "categorical ones, a two-proportion test of missing rates; Benjamini-Hochberg corrected. "
                           "Writes <output-dir>/drift_report.json and <output-dir>/drift_report.html.")
@click.option("--reference-uri", default=None,
              help="Reference table (Parquet or CSV; s3:// or a local path); used when no --reference-profile-uri "
                   "is given (empty means none).")
@click.option("--reference-profile-uri", default=None,
              help="Reference profile JSON (mlops_runtime.drift.write_profile; train writes one beside each model); "
                   "preferred over --reference-uri when both are given (empty means none).")
@click.option("--current-uri", required=True,
              help="Current table (Parquet or CSV) with the reference's columns, or a prediction-log partition of the "
                   "serve image (its metadata and prediction columns are left out; its predictions give the "
                   "prediction drift).")
@output_dir_option("drift", "Artifact")
@click.option("--target-column", default="target", show_default=True,
              help="Column left out of drift detection (absent is fine).")
@click.option("--critical-features", default="", show_default=True,
              help="Comma-separated features whose drift alone makes the dataset drift.")
@click.option("--categorical-features", default="", show_default=True,
              help="Comma-separated numeric columns to treat as categorical (e.g. small integer codes).")
@click.option("--psi-threshold", type=_POSITIVE, default=DEFAULTS.psi, show_default=True,
              help="PSI at or above which a numerical feature's shift counts as large.")
@click.option("--wasserstein-threshold", type=_POSITIVE, default=DEFAULTS.wasserstein, show_default=True,
              help="Wasserstein distance (in reference standard deviations) at or above which a shift counts.")
@click.option("--js-threshold", type=_SHARE, default=DEFAULTS.jensen_shannon, show_default=True,
              help="Jensen-Shannon distance (base 2) at or above which a categorical shift counts.")
@click.option("--unseen-threshold", type=_SHARE, default=DEFAULTS.unseen, show_default=True,
              help="Share of current rows with categories unseen in the reference at or above which it counts.")
@click.option("--missing-rate-threshold", type=_SHARE, default=DEFAULTS.missing_rate, show_default=True,
              help="Absolute change in a feature's missing-value rate at or above which it counts.")
@click.option("--alpha", type=FloatRange(min=0, max=1, min_open=True, max_open=True), default=DEFAULTS.alpha,
              show_default=True, help="False discovery rate: a check needs a Benjamini-Hochberg q-value below it.")
@click.option("--drift-share-threshold", type=_SHARE, default=DEFAULTS.drift_share, show_default=True,
              help="Share of drifted features at or above which the dataset drifts.")
@click.option("--model-uri", default=None,
              help="The production model (empty means none): checks the batch against its signature (data quality), "
                   "scores it for prediction drift, and gives the feature importances for --weight-by-importance.")
@click.option("--predictions-uri", default=None,
              help="The batch's predictions (a table in mlops_runtime.prediction_drift's columns), instead of scoring "
                   "it with --model-uri (empty means none).")
@click.option("--weight-by-importance", type=click.BOOL, default=False, show_default=True,
              help="Weight the drift share by the model card's feature_importance (needs --model-uri).")
@click.option("--quality-share-threshold", type=_SHARE, default=QUALITY_SHARE, show_default=True,
              help="Share of a column's values out of the training range, unseen, or newly missing at or above "
                   "which data quality fails.")
@click.option("--registry-uri", default="", help="Registry root: append a summary of this check to "
                                                 "<registry>/<model>/drift/ (empty means none).")
@click.option("--model-name", default="classifier", show_default=True, help="Model name in the registry.")
@executor_input_option({"metrics": ("Metrics",
                                     "drift_share, n_drifted, n_features and drift_detected for the KFP UI.")})
@output_path_option("drift_detected", "true when the dataset drifted.", "Boolean")
@output_path_option("drift_share", "Share of the monitored features that drifted.", "Float")
@output_path_option("report_uri", "URI of drift_report.json.")
@output_path_option("html_report_uri", "URI of drift_report.html.")
@output_path_option("prediction_drift_detected", "true when the model's outputs drifted (false when not compared).",
                    "Boolean")
@output_path_option("data_quality_ok", "false when the batch breaks the model's signature (true without a model).",
                    "Boolean")
@output_path_option("data_quality_failed", "not data_quality_ok (for notify's --active).", "Boolean")
@html_output_option("drift_report.html, for the KFP UI.")
def cli(reference_uri: str | None, reference_profile_uri: str | None, current_uri: str, output_dir: str,
        target_column: str, critical_features: str, categorical_features: str, psi_threshold: float,
        wasserstein_threshold: float, js_threshold: float, unseen_threshold: float, missing_rate_threshold: float,
        alpha: float, drift_share_threshold: float, model_uri: str | None, predictions_uri: str | None,
        weight_by_importance: bool, quality_share_threshold: float, registry_uri: str, model_name: str,
        executor_input: str | None,
        drift_detected_output_path: str | None, drift_share_output_path: str | None,
        report_uri_output_path: str | None, html_report_uri_output_path: str | None,
        prediction_drift_detected_output_path: str | None, data_quality_ok_output_path: str | None,
        data_quality_failed_output_path: str | None, report_output_path: str | None) -> None:
    # A pipeline passes both (the production model's profile, its training table as the fallback).
    reference_profile_uri = reference_profile_uri or None
    reference_uri = None if reference_profile_uri else (reference_uri or None)
    if reference_uri is None and reference_profile_uri is None:
        raise click.UsageError("give --reference-profile-uri or --reference-uri")
    model_uri, predictions_uri = model_uri or None, predictions_uri or None
    if weight_by_importance and model_uri is None:
        raise UsageError("needs --model-uri (the card holds the feature importances)", label="--weight-by-importance")
    weights = (model_monitoring.feature_importances(models.read_card(model_uri, label="--model-uri"))
               if weight_by_importance else None)
    report_uri = step_io.output_uri(output_dir, REPORT_FILE)
    html_uri = step_io.output_uri(output_dir, HTML_FILE)
    thresholds = drift.Thresholds(psi=psi_threshold, wasserstein=wasserstein_threshold, jensen_shannon=js_threshold,
                                  unseen=unseen_threshold, missing_rate=missing_rate_threshold, alpha=alpha,
                                  drift_share=drift_share_threshold)
    timings: dict[str, float] = {}
    with ExitStack() as stack:
        reference: Any
        if reference_profile_uri is not None:
            data = storage.read_bytes(reference_profile_uri, label="--reference-profile-uri")
            reference = drift.parse_profile(data, reference_profile_uri, label="--reference-profile-uri")
            reference_record = input_record("--reference-profile-uri", reference_profile_uri, data)
            reference_label = "--reference-profile-uri"
        else:
            reference, reference_record = stack.enter_context(open_columns(reference_uri, label="--reference-uri"))
            reference_label = "--reference-uri"
        current, current_record = stack.enter_context(open_columns(current_uri, label="--current-uri"))
        logged = prediction_log.is_log_table(current.names)
        if logged:  # a prediction-log partition: its metadata and predictions are not features
            current = prediction_log.FeatureColumns(current)
        report = drift.detect_drift(reference, current, thresholds=thresholds,
                                    critical_features=names(critical_features),
                                    categorical_features=names(categorical_features), target_column=target_column,
                                    timings=timings, reference_label=reference_label, current_label="--current-uri",
                                    feature_weights=weights)
        report.update(model_monitoring.monitor_model(
            model_uri=model_uri, predictions_uri=predictions_uri, reference=reference, reference_uri=reference_uri,
            current_uri=current_uri, thresholds=thresholds, quality_share_threshold=quality_share_threshold,
            logged=logged))
    report["reference"]["uri"] = reference_profile_uri or reference_uri
    report["current"]["uri"] = current_uri
    parameters = {"reference_uri": reference_uri, "reference_profile_uri": reference_profile_uri,
                  "current_uri": current_uri, "target_column": target_column,
                  "critical_features": critical_features, "categorical_features": categorical_features,
                  "psi_threshold": psi_threshold, "wasserstein_threshold": wasserstein_threshold,
                  "js_threshold": js_threshold, "unseen_threshold": unseen_threshold,
                  "missing_rate_threshold": missing_rate_threshold, "alpha": alpha,
                  "drift_share_threshold": drift_share_threshold, "model_uri": model_uri,
                  "predictions_uri": predictions_uri, "weight_by_importance": weight_by_importance,
                  "quality_share_threshold": quality_share_threshold}
    report["lineage"] = lineage("detect_drift", parameters, [reference_record, current_record])
    page = render_html(report).encode()
    dataset = report["dataset"]
    predictions = report["predictions"] or {}
    prediction_drift = bool(predictions.get("dataset", {}).get("drift_detected", False))
    quality_ok = report["data_quality"] is None or report["data_quality"]["ok"]
    with outputs.publication(output_dir, lineage=report["lineage"]) as out:
        out.put(report_uri, report_bytes(report), label="--output-dir")
        out.put(html_uri, page, label="--output-dir")
        if report_output_path:
            out.file(report_output_path, page, label="--report-output-path")
        if registry_uri:
            checked_at = dt.datetime.now(dt.UTC)
            summary = {"checked_at": checked_at.isoformat(), "drift_detected": dataset["drift_detected"],
                       "drift_share": dataset["drift_share"], "n_drifted": dataset["n_drifted"],
                       "n_features": dataset["n_features"], "drifted_features": dataset["drifted_features"][:50],
                       "prediction_drift_detected": prediction_drift, "data_quality_ok": quality_ok,
                       "current_uri": current_uri, "report_uri": report_uri, "html_report_uri": html_uri}
            journal.append(out, storage.join(registry_uri, model_name, HISTORY_DIR), summary, at=checked_at,
                           label="--registry-uri")
        out.parameters({
            "drift_detected": (drift_detected_output_path, dataset["drift_detected"]),
            "drift_share": (drift_share_output_path, dataset["drift_share"]),
            "report_uri": (report_uri_output_path, report_uri),
            "html_report_uri": (html_report_uri_output_path, html_uri),
            "prediction_drift_detected": (prediction_drift_detected_output_path, prediction_drift),
            "data_quality_ok": (data_quality_ok_output_path, quality_ok),
            "data_quality_failed": (data_quality_failed_output_path, not quality_ok),
        })
        out.executor_output(executor_input, metrics={
            "drift_share": dataset["drift_share"], "n_drifted": dataset["n_drifted"],
            "n_features": dataset["n_features"], "drift_detected": float(dataset["drift_detected"])})
    log.info("%s: %d of %d features drifted (%s); columns loaded in %.2fs, statistics computed in %.2fs "
             "(summed over threads), %.2fs wall", "DRIFT" if dataset["drift_detected"] else "no dataset drift",
             dataset["n_drifted"], dataset["n_features"], ", ".join(dataset["drifted_features"][:10]) or "none",
             timings["load_seconds"], timings["compute_seconds"], timings["wall_seconds"])
    step_io.print_outputs({"drift_detected": dataset["drift_detected"], "drift_share": dataset["drift_share"],
                           "report_uri": report_uri, "html_report_uri": html_uri,
                           "prediction_drift_detected": prediction_drift, "data_quality_ok": quality_ok})


if __name__ == "__main__":
    cli()
