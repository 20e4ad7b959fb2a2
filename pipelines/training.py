"""The training pipeline: load_data -> split -> train -> evaluate -> deploy (gate, register, promote).

    python pipelines/training.py compile --output training.yaml
    python pipelines/training.py submit --host http://kfp.example:8080 --experiment iris [--n-estimators 200 ...]
    python pipelines/training.py run-local --specs-dir DIR [--threshold 1.0 ...]

Steps hand typed KFP artifacts to one another: load_data's ``data`` (Dataset) -> split's ``splits`` (Dataset:
train.parquet and test.parquet) -> train's ``model`` (Model: model.skops, its card and profile) -> evaluate's
``metrics`` (Metrics: metrics.json, its scalars as the artifact's metadata) -> deploy. Their folders live under
the pipeline root (an ``s3://`` root on a cluster, a local folder with kfp.local), so KFP records the lineage.

Caching: load_data, split, train (seeded) and evaluate cache; deploy (it writes the registry) never does.
load_data caches because KFP keys a task on its input artifacts' identities: an uncached load would make
every downstream key new, so nothing could hit. Its key is its parameters: a ``source_uri`` whose contents
change under the same URI is served from the cache. Use a versioned URI, or run without caching
(``run-local --no-cache``, ``submit``'s run with caching disabled).

Tasks retry 3 times (60 s backoff, doubling) on the cluster: every step publishes all of its objects or
none and deploy is idempotent, so a retry is safe. KFP retries any failure, bad input included.
``max_depth`` 0 means unlimited (KFP cannot pass "no value" for an optional input).
Deploy snapshots the loaded table (and the ``comparison_data_uri`` rows) into the registry version, which the
monitoring pipeline's next retraining reads as its history.

Importable: :func:`build_pipeline` returns a ``@dsl.pipeline`` function that another pipeline (the
monitoring loop) can call as a sub-pipeline; its outputs are those of :class:`TrainingOutputs`.
"""

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import click

if __package__ in (None, ""):  # run as a script: python pipelines/training.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.cli import PipelineDefinition, pipeline_cli  # noqa: E402
from pipelines.common import CLUSTER, Resources, TaskPolicy, configure_task, load_components  # noqa: E402

PIPELINE_NAME = "mlops-training"
STEPS = ("load_data", "split", "train", "evaluate", "deploy")

# Peak memory measured per step container on iris and digits: 117-170 MiB. Requests cover that; limits
# leave room for larger tables. train fits with n_jobs=1, so more than one core would sit idle.
RESOURCES = {
    "load_data": Resources(cpu_request="250m", cpu_limit="1", memory_request="256Mi", memory_limit="1Gi"),
    "split": Resources(cpu_request="250m", cpu_limit="1", memory_request="256Mi", memory_limit="1Gi"),
    "train": Resources(cpu_request="500m", cpu_limit="1", memory_request="512Mi", memory_limit="2Gi"),
    "evaluate": Resources(cpu_request="250m", cpu_limit="1", memory_request="256Mi", memory_limit="1Gi"),
    "deploy": Resources(cpu_request="100m", cpu_limit="500m", memory_request="256Mi", memory_limit="512Mi"),
}


# Which tasks KFP may answer from its cache (see the module's docstring).
CACHING = {"load_data": True, "split": True, "train": True, "evaluate": True, "deploy": False}


def _outputs_class() -> type:
    from kfp import dsl

    class TrainingOutputs(NamedTuple):
        model: dsl.Model
        metrics: dsl.Metrics
        model_uri: str
        metrics_uri: str
        accuracy: float
        score: float
        decision: str
        promoted: bool
        registered_uri: str
        reason: str
        registered_model: dsl.Model

    return TrainingOutputs


def build_pipeline(components: Mapping[str, Callable[..., Any]] | None = None, *,
                   policy: TaskPolicy = CLUSTER) -> Callable[..., Any]:
    """The training pipeline over the given step components (default: the specs in components/).

    ``policy`` sets retries and resource settings; use :data:`pipelines.common.LOCAL` for kfp.local runs.
    """
    from kfp import dsl

    steps = dict(components) if components is not None else load_components(STEPS)
    TrainingOutputs = _outputs_class()  # noqa: N806 (a class; kfp is imported only when a pipeline is built)

    def step(name: str, **inputs: Any) -> Any:
        return configure_task(steps[name](**inputs), RESOURCES[name], caching=CACHING[name], policy=policy)

    @dsl.pipeline(name=PIPELINE_NAME, description="Load, split, train, evaluate and gate a tabular model "
                                                  "(classification or regression).")
    def training(
        dataset: str = "iris",
        source_uri: str = "",
        target_column: str = "target",
        task: str = "auto",
        time_column: str = "",
        test_size: float = 0.2,
        random_state: int = 42,
        estimator: str = "random_forest",
        categorical_features: str = "",
        drop_columns: str = "",
        n_estimators: int = 100,
        max_depth: int = 0,
        metric: str = "auto",
        threshold: str = "auto",
        compare_to_production: bool = False,
        comparison_data_uri: str = "",
        min_improvement: float = 0.0,
        registry_uri: str = "s3://mlops/registry",
        model_name: str = "classifier",
    ) -> TrainingOutputs:
        data = step("load_data", dataset=dataset, source_uri=source_uri, target_column=target_column)
        split = step("split", data=data.outputs["data"], target_column=target_column, task=task,
                     time_column=time_column, test_size=test_size, random_state=random_state)
        train = step("train", splits=split.outputs["splits"], target_column=target_column, task=task,
                     estimator=estimator, categorical_features=categorical_features, drop_columns=drop_columns,
                     n_estimators=n_estimators, max_depth=max_depth, random_state=random_state)
        evaluate = step("evaluate", model=train.outputs["model"], splits=split.outputs["splits"])
        deploy = step("deploy", model=train.outputs["model"], metrics=evaluate.outputs["metrics"],
                      registry_uri=registry_uri, model_name=model_name, metric=metric, threshold=threshold,
                      compare_to_production=compare_to_production, comparison_data_uri=comparison_data_uri,
                      min_improvement=min_improvement, training_data_uri=data.outputs["data_uri"])
        return TrainingOutputs(
            model=train.outputs["model"], metrics=evaluate.outputs["metrics"],
            model_uri=train.outputs["model_uri"], metrics_uri=evaluate.outputs["metrics_uri"],
            accuracy=evaluate.outputs["accuracy"], score=evaluate.outputs["score"], decision=deploy.outputs["decision"],
            promoted=deploy.outputs["promoted"], registered_uri=deploy.outputs["registered_uri"],
            reason=deploy.outputs["reason"], registered_model=deploy.outputs["registered_model"])

    return training


# ---------------------------------------------------------------------------------------------- CLI

# The pipeline's run parameters as options (defaults equal the pipeline's; a test checks it).
PARAMETER_OPTIONS = [
    click.option("--dataset", default="iris", show_default=True,
                 help="Bundled dataset: iris, wine, breast_cancer or digits; ignored with --source-uri."),
    click.option("--source-uri", default="", help="CSV or Parquet table (s3:// or path) to train on instead."),
    click.option("--target-column", default="target", show_default=True, help="Label column."),
    click.option("--task", default="auto", show_default=True,
                 help="auto, classification or regression (split's and train's --task; README: the auto rule)."),
    click.option("--time-column", default="", help="Time-ordered split: the test set is the newest rows."),
    click.option("--test-size", type=float, default=0.2, show_default=True, help="Fraction held out for testing."),
    click.option("--random-state", type=int, default=42, show_default=True, help="Seed of the split and the model."),
    click.option("--estimator", default="random_forest", show_default=True,
                 help="random_forest, hist_gradient_boosting or linear."),
    click.option("--categorical-features", default="", help="Comma-separated numeric columns to treat as codes."),
    click.option("--drop-columns", default="", help="Comma-separated columns to leave out."),
    click.option("--n-estimators", type=int, default=100, show_default=True, help="Number of trees."),
    click.option("--max-depth", type=int, default=0, show_default=True, help="Maximum tree depth; 0: unlimited."),
    click.option("--metric", default="auto", show_default=True,
                 help="Metric of the gate; auto: accuracy for a classifier, r2 for a regressor."),
    click.option("--threshold", default="auto", show_default=True,
                 help="Bar the metric must strictly beat (a maximum for errors such as rmse); auto: 0.9."),
    click.option("--compare-to-production/--no-compare-to-production", default=False, show_default=True,
                 help="Also require beating the current production model."),
    click.option("--comparison-data-uri", default="",
                 help="Labeled table neither model trained on: with --compare-to-production both are scored on it "
                      "and a paired test decides (empty: the recorded metrics are compared)."),
    click.option("--min-improvement", type=float, default=0.0, show_default=True,
                 help="Smallest improvement over production on the comparison data, in the metric's units."),
    click.option("--registry-uri", default="s3://mlops/registry", show_default=True, help="Model registry root."),
    click.option("--model-name", default="classifier", show_default=True, help="Model name in the registry."),
]


def summary_lines(outputs: Mapping[str, Any], _parameters: Mapping[str, Any] | None = None) -> list[str]:
    """The run's metrics (from metrics.json), then the deploy decision, one ``key: value`` per line."""
    from mlops_runtime import storage

    metrics = json.loads(storage.read_bytes(outputs["metrics_uri"]))
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    lines = [f"model_uri: {outputs['model_uri']}", f"metrics_uri: {outputs['metrics_uri']}"]
    lines += [f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}"
              for name, value in sorted(scalars.items())]
    lines += [f"registered_uri: {outputs['registered_uri']}", f"promoted: {str(outputs['promoted']).lower()}",
              f"reason: {outputs['reason']}", f"decision: {outputs['decision']}"]
    return lines


DEFINITION = PipelineDefinition(name=PIPELINE_NAME, steps=STEPS, build=build_pipeline, summary=summary_lines,
                                help="Compile, submit or locally run the training pipeline.")
cli = pipeline_cli(DEFINITION, PARAMETER_OPTIONS)


if __name__ == "__main__":
    cli()
