"""decide_retrain: the monitoring loop's decision -- retrain when data drifted OR performance degraded.

KFP conditions cannot say "or", so this step turns the two monitoring verdicts into one Boolean
(``retrain``) and a sentence saying why. When it decides to retrain it also writes the retraining
table: the reference data plus the rows of the new labeled batch (those with every value present).
Every decision, either way, is recorded in the registry as one JSON object under
``<registry>/<model>/monitoring/`` (an :mod:`mlops_runtime.journal`: never overwritten).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import click
import pandas as pd

from mlops_runtime import journal, models, outputs, step_io, storage, tables
from mlops_runtime.cli import output_path_option, step
from mlops_runtime.errors import BadInputError, ComponentError
from mlops_runtime.lineage import lineage
from mlops_runtime.log import get_logger
from mlops_runtime.registry import ModelRegistry

DATA_FILE = "retrain_data.parquet"
DECISION_FILE = "decision.json"
DECISIONS_DIR = "monitoring"

log = get_logger("decide_retrain")


def reason_for(drift_detected: bool, degraded: bool) -> str:
    causes = [text for flag, text in ((drift_detected, "data drift detected"),
                                      (degraded, "performance degraded")) if flag]
    if not causes:
        return "no data drift and no performance degradation: keep the production model"
    return f"retrain: {' and '.join(causes)}"


def production_training_data(registry: ModelRegistry) -> str:
    """The default reference data: the production version's training-data snapshot in the registry, else the
    training table its card records (which may have lived in a pipeline run's root, gone since)."""
    pointer = registry.production().pointer
    if pointer is None:
        raise BadInputError(f"{registry.base}: no production model, so no reference data; pass --reference-uri",
                            label="--reference-uri")
    version = int(pointer["version"])
    if registry.entry(version).get("training_data") is not None:
        return registry.training_data(version)[0]
    card = models.read_card(pointer["model_uri"], label="--registry-uri")
    uri = (card.get("training_data") or {}).get("uri")
    if not isinstance(uri, str) or not uri:
        raise BadInputError(f"the production model's card ({pointer['model_uri']}) records no training data; "
                            "pass --reference-uri", label="--reference-uri")
    return uri


def retraining_table(reference: pd.DataFrame, batch: pd.DataFrame, *, reference_uri: str, batch_uri: str,
                     target_column: str) -> tuple[pd.DataFrame, int]:
    """Reference rows then the batch's complete rows, in the reference's column order; (table, rows dropped)."""
    step_io.require_column(reference, target_column, uri=reference_uri, label="--reference-uri")
    step_io.require_column(batch, target_column, uri=batch_uri, label="--batch-uri")
    missing = [str(c) for c in reference.columns if c not in batch.columns]
    extra = [str(c) for c in batch.columns if c not in reference.columns]
    if missing or extra:
        parts = [f"missing column(s): {', '.join(missing[:10])}" if missing else "",
                 f"unexpected column(s): {', '.join(extra[:10])}" if extra else ""]
        details = "; ".join(part for part in parts if part)
        raise BadInputError(f"{batch_uri}: columns differ from the reference {reference_uri} ({details})",
                            label="--batch-uri")
    complete = batch[list(reference.columns)].dropna()
    for column in reference.columns:
        check_same_kind(reference[column], complete[column], target=column == target_column,
                        reference_uri=reference_uri, batch_uri=batch_uri)
    merged = pd.concat([reference, complete], ignore_index=True)
    for column in reference.columns:  # keep integer labels integer when the batch's column became float
        if pd.api.types.is_integer_dtype(reference[column]) and pd.api.types.is_float_dtype(merged[column]):
            if (merged[column] % 1 == 0).all():
                merged[column] = merged[column].astype(reference[column].dtype)
    return merged, len(batch) - len(complete)


VALUE_KINDS = {"integer": "number", "floating": "number", "mixed-integer-float": "number", "decimal": "number",
               "string": "text", "boolean": "boolean", "datetime64": "datetime", "datetime": "datetime",
               "date": "datetime"}


def check_same_kind(reference: pd.Series, batch: pd.Series, *, target: bool, reference_uri: str,
                    batch_uri: str) -> None:
    """The batch's values of a column must be of the reference's kind (numbers, text, ...): one table
    cannot hold both, and a label of another type is another class."""
    if batch.empty or reference.empty:
        return
    kinds = [VALUE_KINDS.get(pd.api.types.infer_dtype(values, skipna=True), "mixed") for values in (reference, batch)]
    if kinds[0] != kinds[1]:
        raise BadInputError(f"{batch_uri}: column '{batch.name}' holds {kinds[1]} values where the reference "
                            f"{reference_uri} holds {kinds[0]}", label="--batch-uri")
    if target and pd.api.types.is_integer_dtype(reference) and pd.api.types.is_float_dtype(batch):
        fractional = batch[batch % 1 != 0]
        if len(fractional):
            raise BadInputError(f"{batch_uri}: label column '{batch.name}' has non-integer values "
                                f"({step_io.describe_values(fractional.unique().tolist())}) where the reference's "
                                "labels are integers", label="--batch-uri")


@step("decide_retrain", help="Decide to retrain when data drifted or performance degraded; when retraining, write "
                             "<output-dir>/retrain_data.parquet (reference rows plus the labeled batch). Records "
                             "the decision in <registry>/<model>/monitoring/ and <output-dir>/decision.json.")
# Value-taking Booleans because KFP passes a Boolean input as a value (true/false).
@click.option("--drift-detected", type=click.BOOL, required=True, help="detect_drift's verdict (true/false).")
@click.option("--degraded", type=click.BOOL, required=True, help="check_performance's verdict (true/false).")
@click.option("--batch-uri", required=True, help="The labeled production batch that was checked.")
@click.option("--reference-uri", default=None,
              help="Reference table to retrain on together with the batch [default: the production version's "
                   "training-data snapshot in the registry, else the training data its card records].")
@click.option("--registry-uri", required=True, help="Model registry root (s3://... or a local folder).")
@click.option("--model-name", default="classifier", show_default=True, help="Name of the model in the registry.")
@click.option("--target-column", default="target", show_default=True, help="Label column of both tables.")
@click.option("--drift-report-uri", default="", help="detect_drift's report, recorded with the decision.")
@click.option("--performance-report-uri", default="", help="check_performance's report, recorded with the decision.")
@click.option("--run-id", default="", help="Pipeline run that made the decision, recorded with it.")
@click.option("--output-dir", required=True, help="URI prefix (s3://... or a local folder) for this step's objects.")
@output_path_option("retrain", "Whether to retrain (drift detected or performance degraded).", "Boolean")
@output_path_option("reason", "Why, in one sentence.")
@output_path_option("data_uri", "URI of retrain_data.parquet ('' when not retraining).")
def cli(drift_detected: bool, degraded: bool, batch_uri: str, reference_uri: str | None, registry_uri: str,
        model_name: str, target_column: str, drift_report_uri: str, performance_report_uri: str, run_id: str,
        output_dir: str, retrain_output_path: str | None, reason_output_path: str | None,
        data_uri_output_path: str | None) -> None:
    decision_uri = step_io.output_uri(output_dir, DECISION_FILE)
    data_uri = step_io.output_uri(output_dir, DATA_FILE)
    try:
        registry = ModelRegistry(registry_uri, model_name)
    except ComponentError as error:
        raise error.about("--registry-uri") from None
    retrain = drift_detected or degraded
    reason = reason_for(drift_detected, degraded)
    inputs: list[dict[str, Any]] = []
    merged: pd.DataFrame | None = None
    dropped = 0
    if retrain:
        reference_uri = reference_uri or production_training_data(registry)
        reference, reference_record = step_io.read_input_table(reference_uri, label="--reference-uri")
        batch, batch_record = step_io.read_input_table(batch_uri, label="--batch-uri")
        merged, dropped = retraining_table(reference, batch, reference_uri=reference_uri, batch_uri=batch_uri,
                                           target_column=target_column)
        if dropped:
            log.warning("%d batch rows with missing values are left out of the retraining data", dropped)
        inputs = [reference_record, batch_record]
        reason = (f"{reason}; retraining on {len(reference)} reference rows + {len(merged) - len(reference)} "
                  f"batch rows")
    step_lineage = lineage("decide_retrain", {"drift_detected": drift_detected, "degraded": degraded,
                                              "reference_uri": reference_uri, "batch_uri": batch_uri,
                                              "target_column": target_column}, inputs)
    try:
        payload = None if merged is None else tables.table_bytes(merged, step_io.lineage_metadata(step_lineage))
    except (ValueError, TypeError) as error:  # pyarrow's errors derive from these: a column it cannot type
        raise BadInputError(f"{batch_uri}: the batch and the reference cannot form one table "
                            f"({' '.join(str(error).split())[:200]})", label="--batch-uri") from None
    decided_at = dt.datetime.now(dt.UTC)
    production = registry.production().pointer
    record: dict[str, Any] = {
        "decided_at": decided_at.isoformat(), "model": model_name,
        "production_version": production["version"] if production else None,
        "retrain": retrain, "reason": reason, "drift_detected": drift_detected, "degraded": degraded,
        "batch_uri": batch_uri, "reference_uri": reference_uri if retrain else None,
        "data_uri": data_uri if retrain else None, "batch_rows_dropped": dropped,
        "drift_report_uri": drift_report_uri or None, "performance_report_uri": performance_report_uri or None,
        "run_id": run_id or None,
    }

    with outputs.publication(output_dir, lineage=step_lineage) as out:
        if payload is not None:
            out.put(data_uri, payload, label="--output-dir")
        record_uri = journal.append(out, storage.join(registry.base, DECISIONS_DIR), record, at=decided_at,
                                    label="--registry-uri")
        out.put_json(decision_uri, {**record, "record_uri": record_uri}, label="--output-dir")
        values = {"retrain": retrain, "reason": reason, "data_uri": data_uri if retrain else ""}
        out.parameters({name: (path, values[name]) for name, path in (
            ("retrain", retrain_output_path), ("reason", reason_output_path), ("data_uri", data_uri_output_path))})
    log.info("%s (recorded in %s)", reason, record_uri)
    step_io.print_outputs(values)


if __name__ == "__main__":
    cli()
