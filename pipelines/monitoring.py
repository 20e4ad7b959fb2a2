"""The labeled monitoring loop: check performance and drift on the newest labeled batch, retrain when either is
bad, and promote the retrained model only when it beats the champion on rows neither trained on.

    check_performance --> detect_drift --> decide_retrain --[retrain]--> build_training_set --> training (nested)
    (production model     (reference: the   (drift OR degraded;      (history: the production   load_data -> split
     on the batch)         production        records why)             version's registered        -> train -> evaluate
                           model's profile)                           rows + the batch; window;   -> deploy: paired
                                                                      newest batch rows held out)  test on the holdout

    python pipelines/monitoring.py compile --output monitoring.yaml
    python pipelines/monitoring.py submit --host http://kfp.example:8080 --batch-uri s3://prod/batches/
    python pipelines/monitoring.py run-local --specs-dir DIR --batch-uri s3://prod/batches/2025-06-01/batch.parquet

``batch_uri`` may name a folder (ending in '/'): check_performance then takes the newest
``batch.parquet`` below it, which is what a scheduled run wants (see pipelines/schedule.py). The
retraining table is the production version's training-data snapshot (in the registry, written by deploy)
plus the batch, under ``window``; the newest ``holdout_fraction`` of the batch rows is held out, and deploy
scores champion and challenger on that holdout with a paired test (McNemar for accuracy), promoting only a
significant improvement of at least ``min_improvement``. The promoted version snapshots its training table
plus the holdout, so the next cycle's history holds every row seen so far (none lost, none twice).
KFP conditions cannot say "or", hence decide_retrain, which also records every decision, either way,
under ``<registry>/<model>/monitoring/``.

check_performance and decide_retrain write under ``<storage_root>/<run id>/<step>`` and never cache: each run
must look at the registry and the batch as they are now; detect_drift's folder is its ``drift`` artifact and
it caches (:data:`CACHING`). The retraining sub-pipeline's tasks exchange artifacts under the
pipeline root and cache as in the training pipeline (its load reads build_training_set's per-run table).
"""

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import click

if __package__ in (None, ""):  # run as a script: python pipelines/monitoring.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines import training  # noqa: E402
from pipelines.cli import PipelineDefinition, pipeline_cli  # noqa: E402
from pipelines.common import CLUSTER, Resources, TaskPolicy, configure_task, load_components  # noqa: E402

PIPELINE_NAME = "mlops-monitoring"
STEPS = ("check_performance", "detect_drift", "decide_retrain", "build_training_set")
# detect_drift is pure (the same reference, batch and thresholds give the same report: its folder is its
# `drift` artifact); check_performance appends to the registry's history, decide_retrain journals and
# build_training_set reads the registry's current training-data snapshot.
CACHING = {"check_performance": False, "detect_drift": True, "decide_retrain": False, "build_training_set": False}

RESOURCES = {
    "check_performance": Resources(cpu_request="500m", cpu_limit="1", memory_request="512Mi", memory_limit="2Gi"),
    "detect_drift": Resources(cpu_request="500m", cpu_limit="2", memory_request="512Mi", memory_limit="2Gi"),
    "decide_retrain": Resources(cpu_request="250m", cpu_limit="1", memory_request="512Mi", memory_limit="2Gi"),
    "build_training_set": Resources(cpu_request="250m", cpu_limit="1", memory_request="512Mi", memory_limit="2Gi"),
}


class MonitoringOutputs(NamedTuple):
    batch_uri: str
    accuracy: float
    degraded: bool
    drift_detected: bool
    retrain: bool
    reason: str
    performance_report_uri: str
    drift_report_uri: str


def build_pipeline(components: Mapping[str, Callable[..., Any]] | None = None, *,
                   policy: TaskPolicy = CLUSTER) -> Callable[..., Any]:
    """The monitoring pipeline over the given components (default: the specs in components/).

    ``components`` holds this pipeline's steps and the training pipeline's; ``policy`` is applied to both.
    """
    from kfp import dsl

    steps = dict(components) if components is not None else load_components(STEPS + training.STEPS)
    retraining = training.build_pipeline({name: steps[name] for name in training.STEPS}, policy=policy)

    def task(name: str, **inputs: Any) -> Any:
        return configure_task(steps[name](**inputs), RESOURCES[name], caching=CACHING[name], policy=policy)

    # The condition is on this sub-pipeline's input, not on decide_retrain's output: stock kfp.local (2.17)
    # resolves a dsl.If on a task output only when the output is named "Output" (which a v1 spec cannot
    # name: kfp lower-cases it), and silently skips the branch otherwise; an input resolves everywhere.
    @dsl.pipeline(name="retrain-if-needed")
    def retrain_if_needed(retrain: bool, batch_uri: str, window: str, holdout_fraction: float, min_improvement: float,
                          target_column: str,
                          test_size: float, random_state: int, n_estimators: int, threshold: str, storage_root: str,
                          registry_uri: str, model_name: str) -> None:
        with dsl.If(retrain == True, name="retrain"):  # noqa: E712 (a KFP condition)
            rows = task("build_training_set", registry_uri=registry_uri, model_name=model_name, batch_uri=batch_uri,
                        target_column=target_column, window=window, holdout_fraction=holdout_fraction,
                        output_dir=f"{storage_root}/{dsl.PIPELINE_JOB_ID_PLACEHOLDER}/build_training_set")
            retraining(source_uri=rows.outputs["data_uri"], target_column=target_column, test_size=test_size,
                       random_state=random_state, n_estimators=n_estimators, threshold=threshold,
                       compare_to_production=True, comparison_data_uri=rows.outputs["holdout_uri"],
                       min_improvement=min_improvement, registry_uri=registry_uri, model_name=model_name)

    @dsl.pipeline(name=PIPELINE_NAME, description="Check the production model's performance and data drift on the "
                                                  "newest labeled batch; when either is bad, retrain on the "
                                                  "registered history plus the batch and promote only a "
                                                  "challenger better on a holdout neither trained on.")
    def monitoring(
        batch_uri: str,
        registry_uri: str = "s3://mlops/registry",
        model_name: str = "classifier",
        storage_root: str = "s3://mlops/runs",
        target_column: str = "target",
        tolerance: float = 0.05,
        drift_share_threshold: float = 0.5,
        critical_features: str = "",
        window: str = "all",
        holdout_fraction: float = 0.2,
        min_improvement: float = 0.0,
        test_size: float = 0.2,
        random_state: int = 42,
        n_estimators: int = 100,
        threshold: str = "auto",
    ) -> MonitoringOutputs:
        run_root = f"{storage_root}/{dsl.PIPELINE_JOB_ID_PLACEHOLDER}"
        performance = task("check_performance", batch_uri=batch_uri, registry_uri=registry_uri, model_name=model_name,
                           model_ref="production", tolerance=tolerance, output_dir=f"{run_root}/check_performance")
        batch = performance.outputs["checked_batch_uri"]
        reference = performance.outputs["training_data_uri"]
        # The reference profile train stored beside the model; its training table only if it has none.
        drift = task("detect_drift", reference_profile_uri=performance.outputs["reference_profile_uri"],
                     reference_uri=reference, current_uri=batch, target_column=target_column,
                     drift_share_threshold=drift_share_threshold, critical_features=critical_features)
        decision = task("decide_retrain", drift_detected=drift.outputs["drift_detected"],
                        degraded=performance.outputs["degraded"], batch_uri=batch,
                        registry_uri=registry_uri, model_name=model_name,
                        drift_report_uri=drift.outputs["html_report_uri"],
                        performance_report_uri=performance.outputs["report_uri"],
                        run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, output_dir=f"{run_root}/decide_retrain")
        retrain_if_needed(retrain=decision.outputs["retrain"], batch_uri=batch, window=window,
                          holdout_fraction=holdout_fraction, min_improvement=min_improvement,
                          target_column=target_column, test_size=test_size,
                          random_state=random_state,
                          n_estimators=n_estimators, threshold=threshold, storage_root=storage_root,
                          registry_uri=registry_uri, model_name=model_name)
        return MonitoringOutputs(
            batch_uri=batch, accuracy=performance.outputs["accuracy"], degraded=performance.outputs["degraded"],
            drift_detected=drift.outputs["drift_detected"], retrain=decision.outputs["retrain"],
            reason=decision.outputs["reason"], performance_report_uri=performance.outputs["report_uri"],
            drift_report_uri=drift.outputs["html_report_uri"])

    return monitoring


# ---------------------------------------------------------------------------------------------- CLI

# The pipeline's run parameters as options (defaults equal the pipeline's; a test checks it).
PARAMETER_OPTIONS = [
    click.option("--batch-uri", required=True,
                 help="Labeled production batch, or a folder ending in '/' (its newest batch.parquet)."),
    click.option("--registry-uri", default="s3://mlops/registry", show_default=True, help="Model registry root."),
    click.option("--model-name", default="classifier", show_default=True, help="Model name in the registry."),
    click.option("--storage-root", default="s3://mlops/runs", show_default=True,
                 help="Prefix under which each run writes <run id>/<step>/..."),
    click.option("--target-column", default="target", show_default=True, help="Label column."),
    click.option("--tolerance", type=float, default=0.05, show_default=True,
                 help="Largest acceptable accuracy drop below the production model's baseline."),
    click.option("--drift-share-threshold", type=float, default=0.5, show_default=True,
                 help="Share of drifted features at which the data counts as drifted."),
    click.option("--critical-features", default="", help="Comma-separated features whose drift alone counts."),
    click.option("--window", default="all", show_default=True,
                 help="Rows retrained on: all, batches:N, rows:N (build_training_set's --window)."),
    click.option("--holdout-fraction", type=float, default=0.2, show_default=True,
                 help="Newest share of the batch rows held out to compare champion and challenger on."),
    click.option("--min-improvement", type=float, default=0.0, show_default=True,
                 help="Smallest accuracy gain of the challenger over the champion on the holdout (and significant "
                      "by McNemar's test)."),
    click.option("--test-size", type=float, default=0.2, show_default=True, help="Test fraction when retraining."),
    click.option("--random-state", type=int, default=42, show_default=True, help="Seed when retraining."),
    click.option("--n-estimators", type=int, default=100, show_default=True, help="Trees when retraining."),
    click.option("--threshold", default="auto", show_default=True,
                 help="Minimum test accuracy of a retrained model (it must also beat production on the holdout)."),
]


def summary_lines(outputs: Mapping[str, Any], parameters: Mapping[str, Any]) -> list[str]:
    """The verdicts and the decision, then the production model the registry now points at."""
    from mlops_runtime.registry import ModelRegistry

    lines = [f"{name}: {str(outputs[name]).lower() if isinstance(outputs[name], bool) else outputs[name]}"
             for name in MonitoringOutputs._fields]
    pointer = ModelRegistry(parameters["registry_uri"], parameters["model_name"]).production().pointer
    if pointer is None:
        return [*lines, "production: none"]
    return [*lines, f"production: version {pointer['version']} ({json.dumps(pointer.get('reason', ''))})"]


DEFINITION = PipelineDefinition(name=PIPELINE_NAME, steps=STEPS + training.STEPS, build=build_pipeline,
                                summary=summary_lines,
                                help="Compile, submit or locally run the monitoring pipeline.")
cli = pipeline_cli(DEFINITION, PARAMETER_OPTIONS)


if __name__ == "__main__":
    cli()
