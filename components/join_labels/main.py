"""join_labels: served predictions from the prediction log, with labels that arrived later, as one batch."""
from __future__ import annotations

import datetime as dt

import click
import pandas as pd

from mlops_runtime import outputs, prediction_log, step_io, tables
from mlops_runtime.cli import output_path_option, step
from mlops_runtime.errors import BadInputError
from mlops_runtime.lineage import lineage
from mlops_runtime.log import get_logger

BATCH_FILE = "batch.parquet"
MAX_RANGE = dt.timedelta(days=92)
MAX_ROWS = 5_000_000

log = get_logger("join_labels")


def parse_time(text: str, *, label: str) -> dt.datetime:
    try:
        moment = pd.Timestamp(text)
    except (ValueError, TypeError):
        raise BadInputError(f"'{text}' is not an ISO 8601 time (e.g. 2026-12-02T05:00:00Z)", label=label) from None
    if pd.isna(moment):
        raise BadInputError(f"'{text}' is not an ISO 8601 time", label=label)
    moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
    return moment.to_pydatetime()


def join(predictions: pd.DataFrame, labels: pd.DataFrame, target_column: str, *, uri: str) -> pd.DataFrame:
    """Predictions with their label, matched on request id (and row within the request, when given)."""
    step_io.require_column(labels, "request_id", uri=uri, label="--labels-uri")
    step_io.require_column(labels, target_column, uri=uri, label="--target-column")
    keys = ["request_id", "row"] if "row" in labels.columns else ["request_id"]
    labels = labels[keys + [target_column]].copy()
    labels["request_id"] = labels["request_id"].astype(str)
    if "row" in keys:
        rows = pd.to_numeric(labels["row"], errors="coerce")
        if rows.isna().any() or (rows % 1 != 0).any():
            raise BadInputError(f"{uri}: column 'row' must hold whole numbers", label="--labels-uri")
        labels["row"] = rows.astype("int64")
    elif predictions.groupby("request_id").size().max() > 1:
        raise BadInputError(f"{uri}: some logged requests have several rows; give a 'row' column too",
                            label="--labels-uri")
    if labels.duplicated(keys).any():
        first = labels[labels.duplicated(keys)].iloc[0]
        raise BadInputError(f"{uri}: request {first['request_id']} is labelled more than once", label="--labels-uri")
    if labels[target_column].isna().any():
        raise BadInputError(f"{uri}: column '{target_column}' has missing labels", label="--labels-uri")
    if target_column in predictions.columns:
        raise BadInputError(f"'{target_column}' is also a logged column", label="--target-column")
    return predictions.merge(labels, on=keys, how="inner", validate="one_to_one")


@step("join_labels", help="Read the served predictions logged between --start and --end and, when --labels-uri "
                          "is given, join the labels that arrived later by request id; writes "
                          "<output-dir>/batch.parquet, a monitoring batch (labeled or not).")
@click.option("--log-uri", required=True, help="Prediction log root the serve image writes (s3://... or a folder).")
@click.option("--model-name", required=True, help="Served model name (the log's folder under --log-uri).")
@click.option("--start", required=True, help="Start of the time range, ISO 8601 (UTC unless a zone is given).")
@click.option("--end", required=True,
              help="End of the time range (exclusive), ISO 8601; at most 92 days after --start.")
@click.option("--labels-uri", default=None,
              help="Table of labels (CSV or Parquet): request_id, optional row, and --target-column.")
@click.option("--target-column", default="target", show_default=True, help="Label column of --labels-uri.")
@click.option("--output-dir", required=True, help="URI prefix (s3://... or a local folder) for this step's objects.")
# A value-taking option (bare flag = true) because KFP can only pass a Boolean input as a value.
@click.option("--with-predictions", type=click.BOOL, is_flag=False, flag_value=True, default=False,
              show_default=True, metavar="[BOOLEAN]",
              help="Keep the request metadata and prediction columns (default: the model's inputs and the label).")
@output_path_option("batch_uri", "URI of the written batch.parquet.")
def cli(log_uri, model_name, start, end, labels_uri, target_column, output_dir, with_predictions,
        batch_uri_output_path):
    batch_uri = step_io.output_uri(output_dir, BATCH_FILE)
    begin, finish = parse_time(start, label="--start"), parse_time(end, label="--end")
    if finish <= begin or finish - begin > MAX_RANGE:
        raise BadInputError(f"must be after --start and at most {MAX_RANGE.days} days later", label="--end")
    predictions = prediction_log.read_prediction_logs(log_uri, model_name, start=begin, end=finish, max_rows=MAX_ROWS)
    records = []
    batch, unmatched_labels = predictions, 0
    if labels_uri:
        labels, record = step_io.read_input_table(labels_uri, label="--labels-uri")
        records.append(record)
        batch = join(predictions, labels, target_column, uri=labels_uri)
        unmatched_labels = len(labels) - len(batch)
        if batch.empty:
            raise BadInputError(f"{labels_uri}: no label matches a prediction logged in the range",
                                label="--labels-uri")
    if not with_predictions:
        batch = batch[[c for c in batch.columns if not prediction_log.is_log_column(str(c))]]
    parameters = {"log_uri": log_uri, "model_name": model_name, "start": begin.isoformat(), "end": finish.isoformat(),
                  "labels_uri": labels_uri, "target_column": target_column, "with_predictions": with_predictions}
    step_lineage = lineage("join_labels", parameters, records)
    data = tables.table_bytes(batch.reset_index(drop=True), step_io.lineage_metadata(step_lineage))
    with outputs.publication(output_dir, lineage=step_lineage) as out:
        out.put(batch_uri, data, label="--output-dir")
        out.parameters({"batch_uri": (batch_uri_output_path, batch_uri)})
    summary = {"batch_uri": batch_uri, "n_rows": len(batch), "n_predictions": len(predictions),
               "n_unlabeled_predictions": len(predictions) - len(batch) if labels_uri else None,
               "n_unmatched_labels": unmatched_labels if labels_uri else None}
    log.info("wrote %s: %s", batch_uri, summary)
    step_io.print_outputs(summary)


if __name__ == "__main__":
    cli()
