"""The unlabeled production pipeline: every new batch, once, checked without labels, and alerts.

    ExitHandler(notify pipeline_failure, only when the run did not succeed):
      claim_batches --> ParallelFor(batch_uris):                         --> complete_batches --> history_report
      (watermark;        detect_drift (feature + prediction drift, data
       production        quality; reference: the production model's
       model, profile,   profile) --> notify drift, prediction_drift, data_quality (active: its verdicts)
       calibration)      estimate_performance (CBPE, classifiers) --> notify estimated_degradation

    python pipelines/production.py compile --output production.yaml
    python pipelines/production.py submit --host http://kfp.example:8080 --batches-uri s3://prod/batches
    python pipelines/production.py run-local --specs-dir DIR --batches-uri s3://prod/batches --webhook-url URL

claim_batches takes the oldest unchecked batches under ``batches_uri`` (at most ``max_batches``; name the
batch folders by time) and the production model's references from the registry; only after every batch was
checked does complete_batches mark them in the watermark, so a failed run leaves its batches for the next
(the claim's lease expires). Alerts are labeled with the batch, so each drifted batch alerts once within
notify's deduplication window. No labels are read: drift never depends on them.

No task caches: claim, complete and notify change the registry; detect_drift and estimate_performance append
to its journals (what the history report reads), so each run must see the registry and the batches as they are.
"""

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click
import yaml

if __package__ in (None, ""):  # run as a script: python pipelines/production.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.cli import PipelineDefinition, pipeline_cli  # noqa: E402
from pipelines.common import CLUSTER, Resources, TaskPolicy, configure_task, load_components  # noqa: E402

PIPELINE_NAME = "mlops-production"
STEPS = ("claim_batches", "detect_drift", "estimate_performance", "notify", "complete_batches", "history_report")
CACHING = dict.fromkeys(STEPS, False)
SMALL = Resources(cpu_request="100m", cpu_limit="500m", memory_request="128Mi", memory_limit="512Mi")
RESOURCES = {
    "claim_batches": SMALL, "notify": SMALL, "complete_batches": SMALL,
    "detect_drift": Resources(cpu_request="500m", cpu_limit="2", memory_request="512Mi", memory_limit="2Gi"),
    "estimate_performance": Resources(cpu_request="500m", cpu_limit="1", memory_request="512Mi",
                                      memory_limit="2Gi"),
    "history_report": Resources(cpu_request="250m", cpu_limit="1", memory_request="256Mi", memory_limit="1Gi"),
}


def exit_variant(notify: Any) -> Callable[..., Any]:
    """notify taking KFP's PipelineTaskFinalStatus (``--pipeline-status``): KFP allows that input in exit tasks
    only, so notify's own spec leaves it out and the exit task's spec adds it (the same image)."""
    from kfp import components

    spec = yaml.safe_load(notify.component_yaml)
    spec["inputs"].append({"name": "pipeline_status", "type": "PipelineTaskFinalStatus",
                           "description": "The final status of the run's tasks."})
    spec["implementation"]["container"]["args"] += ["--pipeline-status", {"inputValue": "pipeline_status"}]
    return components.load_component_from_text(yaml.safe_dump(spec, sort_keys=False))


def build_pipeline(components: Mapping[str, Callable[..., Any]] | None = None, *,
                   policy: TaskPolicy = CLUSTER) -> Callable[..., Any]:
    """The production pipeline over the given components (default: the specs in components/)."""
    from kfp import dsl

    steps = dict(components) if components is not None else load_components(STEPS)
    notify_on_exit = exit_variant(steps["notify"])

    def task(name: str, **inputs: Any) -> Any:
        component = notify_on_exit if name == "notify_on_exit" else steps[name]
        settings = "notify" if name == "notify_on_exit" else name
        return configure_task(component(**inputs), RESOURCES[settings], caching=CACHING[settings], policy=policy)

    # The loop is over this sub-pipeline's input, not over claim_batches' output: stock kfp.local (2.17) finds
    # a ParallelFor's items among task outputs only when the output is named "Output" (as for dsl.If).
    @dsl.pipeline(name="check-batches")
    def check_batches(batch_uris: list, model_uri: str, reference_profile_uri: str, calibration_uri: str,
                      storage_root: str, registry_uri: str, model_name: str, target_column: str,
                      drift_share_threshold: float, weight_by_importance: bool, estimate: bool, max_drop: float,
                      webhook_url: str,
                      webhook_format: str, dedup_window_seconds: float) -> None:
        alerting = {"webhook_url": webhook_url, "webhook_format": webhook_format, "state_uri": registry_uri,
                    "dedup_window_seconds": dedup_window_seconds}
        with dsl.ParallelFor(batch_uris, name="each-batch") as batch:
            labels = f"model={model_name},pipeline=production,batch={batch}"
            drift = task("detect_drift", reference_profile_uri=reference_profile_uri, current_uri=batch,
                         model_uri=model_uri, target_column=target_column,
                         drift_share_threshold=drift_share_threshold, weight_by_importance=weight_by_importance,
                         registry_uri=registry_uri, model_name=model_name)
            for event, verdict, summary in (("drift", "drift_detected", "feature drift"),
                                            ("prediction_drift", "prediction_drift_detected", "model output drift"),
                                            ("data_quality", "data_quality_failed", "data quality failed")):
                task("notify", event=event, active=drift.outputs[verdict], labels=labels,
                     summary=f"{summary} in batch {batch}", report_uri=drift.outputs["html_report_uri"], **alerting)
            with dsl.If(estimate == True, name="classifier"):  # noqa: E712 (a KFP condition; on an input, see above)
                estimated = task("estimate_performance", model_uri=model_uri, reference_uri=calibration_uri,
                                 current_uri=batch, max_drop=max_drop, registry_uri=registry_uri,
                                 model_name=model_name, output_dir=f"{storage_root}/{dsl.PIPELINE_JOB_ID_PLACEHOLDER}/"
                                                                   f"{dsl.PIPELINE_TASK_ID_PLACEHOLDER}/estimate_performance")
                task("notify", event="estimated_degradation", active=estimated.outputs["estimated_degraded"],
                     labels=labels, summary=f"estimated degradation in batch {batch}",
                     report_uri=estimated.outputs["estimate_uri"], **alerting)

    @dsl.pipeline(name=PIPELINE_NAME, description="Check every new unlabeled batch once against the production "
                                                  "model (feature and prediction drift, data quality, estimated "
                                                  "performance) and alert on drift, prediction drift, data "
                                                  "quality, estimated degradation and a failed run.")
    def production(
        batches_uri: str,
        file_name: str = "batch.parquet",
        registry_uri: str = "s3://mlops/registry",
        model_name: str = "classifier",
        storage_root: str = "s3://mlops/runs",
        target_column: str = "target",
        max_batches: int = 10,
        drift_share_threshold: float = 0.5,
        weight_by_importance: bool = False,
        estimate_performance: bool = True,
        max_drop: float = 0.05,
        webhook_url: str = "",
        webhook_format: str = "slack",
        dedup_window_seconds: float = 3600.0,
    ) -> None:  # KFP returns no outputs from inside an ExitHandler: the watermark and the journals are the result
        run_root = f"{storage_root}/{dsl.PIPELINE_JOB_ID_PLACEHOLDER}"
        alerting = {"webhook_url": webhook_url, "webhook_format": webhook_format, "state_uri": registry_uri,
                    "dedup_window_seconds": dedup_window_seconds}
        failure = task("notify_on_exit", event="pipeline_failure", labels=f"model={model_name},pipeline=production",
                       summary=f"production monitoring run {dsl.PIPELINE_JOB_ID_PLACEHOLDER} failed", **alerting)
        with dsl.ExitHandler(failure, name="alert-on-failure"):
            claim = task("claim_batches", batches_uri=batches_uri, file_name=file_name, registry_uri=registry_uri,
                         model_name=model_name, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, max_batches=max_batches)
            checks = check_batches(
                batch_uris=claim.outputs["batch_uris"], model_uri=claim.outputs["model_uri"],
                reference_profile_uri=claim.outputs["reference_profile_uri"],
                calibration_uri=claim.outputs["calibration_uri"], storage_root=storage_root, registry_uri=registry_uri,
                model_name=model_name, target_column=target_column, drift_share_threshold=drift_share_threshold,
                weight_by_importance=weight_by_importance, estimate=estimate_performance, max_drop=max_drop,
                webhook_url=webhook_url, webhook_format=webhook_format,
                dedup_window_seconds=dedup_window_seconds).set_caching_options(False)
            done = task("complete_batches", registry_uri=registry_uri, model_name=model_name,
                        run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, batch_uris=claim.outputs["batch_uris"])
            done.after(checks)
            history = task("history_report", registry_uri=registry_uri, model_name=model_name,
                           output_dir=f"{run_root}/history_report")
            history.after(done)

    return production


# ---------------------------------------------------------------------------------------------- CLI

# The pipeline's run parameters as options (defaults equal the pipeline's; a test checks it).
PARAMETER_OPTIONS = [
    click.option("--batches-uri", required=True, help="Folder of the production batches (named by time)."),
    click.option("--file-name", default="batch.parquet", show_default=True,
                 help="Batch file name below it ('*.parquet', or 'prediction-log' for the serve image's log)."),
    click.option("--registry-uri", default="s3://mlops/registry", show_default=True, help="Model registry root."),
    click.option("--model-name", default="classifier", show_default=True, help="Model name in the registry."),
    click.option("--storage-root", default="s3://mlops/runs", show_default=True,
                 help="Prefix under which each run writes <run id>/..."),
    click.option("--target-column", default="target", show_default=True,
                 help="Label column, left out of drift when a batch has it."),
    click.option("--max-batches", type=click.IntRange(1, 100), default=10, show_default=True,
                 help="Most batches one run checks; the rest wait for the next run."),
    click.option("--drift-share-threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True,
                 help="Share of drifted features at which a batch counts as drifted."),
    click.option("--weight-by-importance", type=click.BOOL, default=False, show_default=True,
                 help="Weight the drift share by the model's permutation importances."),
    click.option("--estimate-performance", type=click.BOOL, default=True, show_default=True,
                 help="Estimate the accuracy without labels (CBPE; classifiers only: false for a regressor)."),
    click.option("--max-drop", type=click.FloatRange(0, 1), default=0.05, show_default=True,
                 help="Tolerated drop of the estimated accuracy below the one realised on the calibration table."),
    click.option("--webhook-url", default="", help="Slack-compatible or Alertmanager webhook (empty: alerts are "
                                                   "only recorded in the registry)."),
    click.option("--webhook-format", type=click.Choice(["slack", "alertmanager"]), default="slack",
                 show_default=True, help="Payload format of the webhook."),
    click.option("--dedup-window-seconds", type=click.FloatRange(0, 30 * 86400), default=3600.0, show_default=True,
                 help="The same alert (event and labels) is not sent again within this window."),
]


def summary_lines(_outputs: Mapping[str, Any], parameters: Mapping[str, Any]) -> list[str]:
    """The watermark after the run: batches checked so far, claimed and not completed, not yet claimed."""
    from mlops_runtime import watermark

    document, _ = watermark.Watermark(parameters["registry_uri"], parameters["model_name"]).read()
    states = [entry["state"] for entry in document["batches"].values()]
    batches = watermark.list_batches(parameters["batches_uri"], parameters["file_name"]) \
        if parameters["file_name"] != "prediction-log" else []
    return [f"checked: {states.count('done')}", f"claimed: {states.count('claimed')}",
            f"unclaimed: {sum(1 for uri in batches if uri not in document['batches'])}"]


DEFINITION = PipelineDefinition(name=PIPELINE_NAME, steps=STEPS, build=build_pipeline, summary=summary_lines,
                                help="Compile, submit or locally run the unlabeled production pipeline.")
cli = pipeline_cli(DEFINITION, PARAMETER_OPTIONS)


if __name__ == "__main__":
    cli()
