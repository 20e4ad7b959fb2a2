"""decide_retrain: the monitoring loop's decision -- retrain when data drifted OR performance degraded.

KFP conditions cannot say "or", so this step turns the two monitoring verdicts into one Boolean
(``retrain``) and a sentence saying why. It reads no table: what to retrain on (the registered history,
the batch, a window, the holdout) is build_training_set's job. Every decision, either way, is recorded
in the registry as one JSON object under ``<registry>/<model>/monitoring/`` (an :mod:`mlops_runtime.journal`:
never overwritten), with the production version it was about.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import click

from mlops_runtime import journal, outputs, step_io, storage
from mlops_runtime.cli import output_path_option, step
from mlops_runtime.errors import ComponentError
from mlops_runtime.lineage import lineage
from mlops_runtime.log import get_logger
from mlops_runtime.registry import ModelRegistry

DECISION_FILE = "decision.json"
DECISIONS_DIR = "monitoring"

log = get_logger("decide_retrain")


def reason_for(drift_detected: bool, degraded: bool) -> str:
    causes = [text for flag, text in ((drift_detected, "data drift detected"),
                                      (degraded, "performance degraded")) if flag]
    if not causes:
        return "no data drift and no performance degradation: keep the production model"
    return f"retrain: {' and '.join(causes)}"


@step("decide_retrain", help="Decide to retrain when data drifted or performance degraded (build_training_set then "
                             "makes the retraining table). Records the decision in <registry>/<model>/monitoring/ "
                             "and <output-dir>/decision.json.")
# Value-taking Booleans because KFP passes a Boolean input as a value (true/false).
@click.option("--drift-detected", type=click.BOOL, required=True, help="detect_drift's verdict (true/false).")
@click.option("--degraded", type=click.BOOL, required=True, help="check_performance's verdict (true/false).")
@click.option("--batch-uri", required=True, help="The labeled production batch that was checked, recorded with the "
                                                 "decision.")
@click.option("--registry-uri", required=True, help="Model registry root (s3://... or a local folder).")
@click.option("--model-name", default="classifier", show_default=True, help="Name of the model in the registry.")
@click.option("--drift-report-uri", default="", help="detect_drift's report, recorded with the decision.")
@click.option("--performance-report-uri", default="", help="check_performance's report, recorded with the decision.")
@click.option("--run-id", default="", help="Pipeline run that made the decision, recorded with it.")
@click.option("--output-dir", required=True, help="URI prefix (s3://... or a local folder) for this step's objects.")
@output_path_option("retrain", "Whether to retrain (drift detected or performance degraded).", "Boolean")
@output_path_option("reason", "Why, in one sentence.")
def cli(drift_detected: bool, degraded: bool, batch_uri: str, registry_uri: str, model_name: str,
        drift_report_uri: str, performance_report_uri: str, run_id: str, output_dir: str,
        retrain_output_path: str | None, reason_output_path: str | None) -> None:
    decision_uri = step_io.output_uri(output_dir, DECISION_FILE)
    try:
        registry = ModelRegistry(registry_uri, model_name)
        production = registry.production().pointer
    except ComponentError as error:
        raise error.about("--registry-uri") from None
    retrain = drift_detected or degraded
    reason = reason_for(drift_detected, degraded)
    step_lineage = lineage("decide_retrain", {"drift_detected": drift_detected, "degraded": degraded,
                                              "batch_uri": batch_uri}, [])
    decided_at = dt.datetime.now(dt.UTC)
    record: dict[str, Any] = {
        "decided_at": decided_at.isoformat(), "model": model_name,
        "production_version": production["version"] if production else None,
        "retrain": retrain, "reason": reason, "drift_detected": drift_detected, "degraded": degraded,
        "batch_uri": batch_uri, "drift_report_uri": drift_report_uri or None,
        "performance_report_uri": performance_report_uri or None, "run_id": run_id or None,
    }

    with outputs.publication(output_dir, lineage=step_lineage) as out:
        record_uri = journal.append(out, storage.join(registry.base, DECISIONS_DIR), record, at=decided_at,
                                    label="--registry-uri")
        out.put_json(decision_uri, {**record, "record_uri": record_uri}, label="--output-dir")
        values = {"retrain": retrain, "reason": reason}
        out.parameters({name: (path, values[name]) for name, path in (
            ("retrain", retrain_output_path), ("reason", reason_output_path))})
    log.info("%s (recorded in %s)", reason, record_uri)
    step_io.print_outputs(values)


if __name__ == "__main__":
    cli()
