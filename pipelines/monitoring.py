"""The monitoring loop: check performance and drift on the newest batch, retrain when either is bad.

    check_performance --> detect_drift --> decide_retrain --[retrain == true]--> training (nested)
    (production model     (reference: the      (drift OR degraded;            load_data -> split -> train
     on the batch,         production model's    writes reference + batch      -> evaluate -> deploy with
     its training data)    training data)        and records why)              compare_to_production=True)

    python pipelines/monitoring.py compile --output monitoring.yaml
    python pipelines/monitoring.py submit --host http://kfp.example:8080 --batch-uri s3://prod/batches/
    python pipelines/monitoring.py run-local --specs-dir DIR --batch-uri s3://prod/batches/2025-06-01/batch.parquet

``batch_uri`` may name a folder (ending in '/'): check_performance then takes the newest
``batch.parquet`` below it, which is what a scheduled run wants (see pipelines/schedule.py). The
reference for drift and the data retrained on come from the production model's card (its training
table), so after a retraining the next run compares against what the new model was trained on.
KFP conditions cannot say "or", hence decide_retrain, which also records every decision, either way,
under ``<registry>/<model>/monitoring/``. Deploy only promotes the retrained model when it beats the
production model's accuracy (champion/challenger).

Every task writes under ``<storage_root>/<run id>/<step>`` and caching is off, as in the training pipeline:
each run must look at the registry and the batch as they are now.
"""

import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import click

if __package__ in (None, ""):  # run as a script: python pipelines/monitoring.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines import training  # noqa: E402
from pipelines.common import (  # noqa: E402
    CLUSTER,
    LOCAL,
    Resources,
    TaskPolicy,
    compile_pipeline,
    configure_task,
    load_components,
    run_local,
    submit,
)

PIPELINE_NAME = "mlops-monitoring"
STEPS = ("check_performance", "detect_drift", "decide_retrain")

RESOURCES = {
    "check_performance": Resources(cpu_request="500m", cpu_limit="1", memory_request="512Mi", memory_limit="2Gi"),
    "detect_drift": Resources(cpu_request="500m", cpu_limit="2", memory_request="512Mi", memory_limit="2Gi"),
    "decide_retrain": Resources(cpu_request="250m", cpu_limit="1", memory_request="512Mi", memory_limit="2Gi"),
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
        return configure_task(steps[name](**inputs), RESOURCES[name], caching=False, policy=policy)

    @dsl.pipeline(name=PIPELINE_NAME, description="Check the production model's performance and data drift on the "
                                                  "newest batch; retrain, evaluate and gate when either is bad.")
    def monitoring(
        batch_uri: str,
        registry_uri: str = "s3://mlops/registry",
        model_name: str = "classifier",
        storage_root: str = "s3://mlops/runs",
        target_column: str = "target",
        tolerance: float = 0.05,
        drift_share_threshold: float = 0.5,
        critical_features: str = "",
        test_size: float = 0.2,
        random_state: int = 42,
        n_estimators: int = 100,
        threshold: float = 0.9,
    ) -> MonitoringOutputs:
        run_root = f"{storage_root}/{dsl.PIPELINE_JOB_ID_PLACEHOLDER}"
        performance = task("check_performance", batch_uri=batch_uri, registry_uri=registry_uri, model_name=model_name,
                           model_ref="production", tolerance=tolerance, output_dir=f"{run_root}/check_performance")
        batch = performance.outputs["checked_batch_uri"]
        reference = performance.outputs["training_data_uri"]
        # The reference profile train stored beside the model; its training table only if it has none.
        drift = task("detect_drift", reference_profile_uri=performance.outputs["reference_profile_uri"],
                     reference_uri=reference, current_uri=batch, target_column=target_column,
                     drift_share_threshold=drift_share_threshold, critical_features=critical_features,
                     output_dir=f"{run_root}/detect_drift")
        decision = task("decide_retrain", drift_detected=drift.outputs["drift_detected"],
                        degraded=performance.outputs["degraded"], batch_uri=batch, reference_uri=reference,
                        registry_uri=registry_uri, model_name=model_name, target_column=target_column,
                        drift_report_uri=drift.outputs["html_report_uri"],
                        performance_report_uri=performance.outputs["report_uri"],
                        run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, output_dir=f"{run_root}/decide_retrain")
        with dsl.If(decision.outputs["retrain"] == True, name="retrain"):  # noqa: E712 (a KFP condition)
            retraining(source_uri=decision.outputs["data_uri"], target_column=target_column, test_size=test_size,
                       random_state=random_state, n_estimators=n_estimators, threshold=threshold,
                       compare_to_production=True, storage_root=storage_root, registry_uri=registry_uri,
                       model_name=model_name)
        return MonitoringOutputs(
            batch_uri=batch, accuracy=performance.outputs["accuracy"], degraded=performance.outputs["degraded"],
            drift_detected=drift.outputs["drift_detected"], retrain=decision.outputs["retrain"],
            reason=decision.outputs["reason"], performance_report_uri=performance.outputs["report_uri"],
            drift_report_uri=drift.outputs["html_report_uri"])

    return monitoring


# ---------------------------------------------------------------------------------------------- CLI

def _parameter_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The pipeline's run parameters as options (defaults equal the pipeline's; a test checks it)."""
    options = [
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
        click.option("--test-size", type=float, default=0.2, show_default=True, help="Test fraction when retraining."),
        click.option("--random-state", type=int, default=42, show_default=True, help="Seed when retraining."),
        click.option("--n-estimators", type=int, default=100, show_default=True, help="Trees when retraining."),
        click.option("--threshold", type=float, default=0.9, show_default=True,
                     help="Minimum test accuracy of a retrained model (it must also beat production)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def cli() -> None:
    """Compile, submit or locally run the monitoring pipeline."""


@cli.command("compile")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=Path("monitoring.yaml"),
              show_default=True, help="Pipeline package to write.")
@training.specs_dir_option
def compile_command(output: Path, specs_dir: Path | None) -> None:
    """Compile the pipeline (with retries and resource requests) to a YAML package."""
    compile_pipeline(build_pipeline(load_components(STEPS + training.STEPS, specs_dir)), output)
    click.echo(f"wrote {output}")


@cli.command("submit")
@click.option("--host", required=True, envvar="KFP_HOST", help="KFP API endpoint, e.g. http://127.0.0.1:8080.")
@click.option("--experiment", default="mlops-monitoring", show_default=True, help="Experiment (created if missing).")
@click.option("--run-name", default=None, help="Run name [default: generated by KFP].")
@click.option("--namespace", default=None, help="Kubernetes namespace of a multi-user deployment.")
@training.specs_dir_option
@_parameter_options
def submit_command(host: str, experiment: str, run_name: str | None, namespace: str | None, specs_dir: Path | None,
                   **parameters: Any) -> None:
    """Compile the pipeline and start one run of it on a KFP endpoint (pipelines/schedule.py: recurring runs)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mlops-monitoring-") as folder:
        package = compile_pipeline(build_pipeline(load_components(STEPS + training.STEPS, specs_dir)),
                                   Path(folder) / "monitoring.yaml")
        try:
            run_id = submit(package, host=host, experiment=experiment, arguments=parameters, run_name=run_name,
                            namespace=namespace)
        except Exception as error:  # the client raises urllib3, ApiException, ValueError...
            training.fail(f"cannot submit to {host}: {type(error).__name__}: {error}")
    click.echo(f"run_id: {run_id}")


@cli.command("run-local")
@training.specs_dir_option
@click.option("--pipeline-root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep kfp.local's task outputs here [default: a temporary folder, removed afterwards].")
@_parameter_options
def run_local_command(specs_dir: Path | None, pipeline_root: Path | None, **parameters: Any) -> None:
    """Run the pipeline with kfp.local on Docker; print the verdicts, the decision and production afterwards.

    The step containers use the host network and get the host's AWS_* S3 settings. Retries are off.
    """
    pipeline = build_pipeline(load_components(STEPS + training.STEPS, specs_dir), policy=LOCAL)
    started = time.monotonic()
    try:
        outputs = run_local(pipeline, parameters, pipeline_root=pipeline_root)
    except (RuntimeError, ValueError) as error:
        training.fail(str(error))
    elapsed = time.monotonic() - started
    click.echo(f"pipeline: {PIPELINE_NAME} succeeded in {elapsed:.1f}s")
    for line in summary_lines(outputs, parameters["registry_uri"], parameters["model_name"]):
        click.echo(line)


def summary_lines(outputs: Mapping[str, Any], registry_uri: str, model_name: str) -> list[str]:
    """The verdicts and the decision, then the production model the registry now points at."""
    from mlops_runtime.registry import ModelRegistry

    lines = [f"{name}: {str(outputs[name]).lower() if isinstance(outputs[name], bool) else outputs[name]}"
             for name in MonitoringOutputs._fields]
    pointer = ModelRegistry(registry_uri, model_name).production().pointer
    if pointer is None:
        return [*lines, "production: none"]
    return [*lines, f"production: version {pointer['version']} ({json.dumps(pointer.get('reason', ''))})"]


if __name__ == "__main__":
    cli()
