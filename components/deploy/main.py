"""The gate: register and promote a model to production when its metric clears the bar.

``--metric`` (auto: accuracy for a classifier, r2 for a regressor) is read from evaluate's metrics.json.
For a higher-is-better metric ``--threshold`` is a minimum, for a lower-is-better one (rmse, mae, mape,
log_loss, brier) a maximum; both exclusive. With ``--compare-to-production`` the model must also beat
the production model: with ``--comparison-data-uri`` both are scored on that same labeled table and a
paired test decides (mlops_runtime.comparison); without it the recorded metrics are compared, which is
weaker (the two numbers come from different test sets). With ``--training-data-uri`` the registered version
snapshots that table plus the comparison rows (``training_data.parquet``): the next retraining's history.
"""
from __future__ import annotations

import math
import re
from typing import Any

import click

from mlops_runtime import metrics, models, outputs, promotion, step_io
from mlops_runtime.cli import FloatRange, artifact_input_option, executor_input_option, output_path_option, step
from mlops_runtime.errors import ComponentError, UsageError
from mlops_runtime.registry import ModelRegistry

MAX_SEED = 2**32 - 1
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ThresholdType(click.types.StringParamType):
    """A finite number, or ``auto`` (None): a text option, so KFP has a value that means "the default"."""

    name = "NUMBER|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float | None:
        if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is neither a number nor 'auto'.", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def check_model_name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if not MODEL_NAME.match(value):
        raise click.BadParameter("use letters, digits, '.', '_' or '-' (starting with a letter or digit)")
    return value


def read_comparison(uri: str | None, compare_to_production: bool) -> tuple[Any, dict | None]:
    if not uri:
        return None, None
    if not compare_to_production:
        raise UsageError("only used with --compare-to-production", label="--comparison-data-uri")
    return step_io.read_input_table(uri, label="--comparison-data-uri")


@step("deploy", help="Gate a model: when its --metric clears --threshold (and, with --compare-to-production, "
                     "beats the production model), register it and point production at it.")
@artifact_input_option("--model-uri", "model", "Model", "model.skops", required=True,
                       help="URI of the model (model.skops, its model_card.json beside it).")
@artifact_input_option("--metrics-uri", "metrics", "Metrics", "metrics.json", required=True,
                       help="URI of the model's metrics.json (from evaluate).")
@click.option("--registry-uri", required=True, help="URI prefix (s3://... or a local folder) of the model registry.")
@click.option("--model-name", default="classifier", show_default=True, callback=check_model_name,
              help="Name of the model in the registry.")
@click.option("--metric", type=click.Choice(("auto", *metrics.SCALAR_METRICS)), default="auto", show_default=True,
              help="Metric the gate is about; auto: accuracy for a classifier, r2 for a regressor.")
@click.option("--threshold", type=ThresholdType(), default="auto", show_default=True,
              help="Bar the metric must strictly beat, within the metric's range: a minimum for higher-is-better "
                   "metrics (auto: 0.9), a maximum for lower-is-better ones (rmse, mae, mape, log_loss, brier: "
                   "auto is refused, give the number).")
# A value-taking option (bare flag = true) because KFP can only pass a Boolean input as a value.
@click.option("--compare-to-production", type=click.BOOL, is_flag=False, flag_value=True, default=False,
              show_default=True, metavar="[BOOLEAN]",
              help="Also require beating the current production model on the metric.")
@click.option("--no-compare-to-production", is_flag=True, default=False,
              help="Same as --compare-to-production false (the default).")
@click.option("--comparison-data-uri", default=None,
              help="Labeled table neither model trained on (the newest labeled rows, or a time-ordered holdout): "
                   "with --compare-to-production both models are scored on it and a paired test decides; empty: "
                   "compare the recorded metrics instead (weaker: different test sets).")
@click.option("--alpha", type=FloatRange(0.0001, 0.5), default=0.05, show_default=True,
              help="Significance level of the paired test (McNemar for accuracy, else paired bootstrap).")
@click.option("--min-improvement", type=FloatRange(0, metrics.UNBOUNDED), default=0.0, show_default=True,
              help="Smallest improvement of the metric over production on the comparison data, in its units.")
@click.option("--n-bootstrap", type=click.IntRange(100, 10000), default=1000, show_default=True,
              help="Resamples of the paired bootstrap.")
@click.option("--random-state", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
              help="Seed of the paired bootstrap.")
@click.option("--onnx-dir", default="", help="export_onnx's output folder for this model: its model.onnx (when the "
                                            "parity check passed) and onnx_report.json are registered beside the "
                                            "model (empty: none).")
@click.option("--training-data-uri", default="", help="Table the model was built from (load_data's output: its "
                                                   "train and test rows): snapshotted into the registry version "
                                                   "with the --comparison-data-uri rows, as the next retraining's "
                                                   "history (empty: no snapshot).")
@output_path_option("decision", f"'{promotion.APPROVED}' or '{promotion.REJECTED}'.")
@output_path_option("promoted", "Whether production now points at this model.", "Boolean")
@output_path_option("registered_uri", "URI of the registry version now in production ('' when not promoted).")
@output_path_option("reason", "Why the model was or was not promoted.")
@executor_input_option({"registered_model": (
    "Model", "The registry version now in production, for KFP's lineage: its metadata holds the version's URI "
             "(registered_uri), the registry, model name, version, sha256 and gated metric (promoted: false when "
             "not promoted).")})
def cli(model_uri: str, metrics_uri: str, registry_uri: str, model_name: str, metric: str, threshold: float | None,
        compare_to_production: bool, no_compare_to_production: bool, comparison_data_uri: str | None, alpha: float,
        min_improvement: float, n_bootstrap: int, random_state: int, onnx_dir: str, training_data_uri: str,
        decision_output_path: str | None,
        promoted_output_path: str | None, registered_uri_output_path: str | None,
        reason_output_path: str | None, executor_input: str | None) -> None:
    if compare_to_production and no_compare_to_production:
        raise click.UsageError("--compare-to-production and --no-compare-to-production contradict each other")
    try:
        registry = ModelRegistry(registry_uri, model_name)
    except ComponentError as error:
        raise error.about("--registry-uri") from None
    candidate = promotion.read_candidate(model_uri, metrics_uri)
    if onnx_dir:
        candidate.extra_files.update(models.onnx_files(onnx_dir, candidate.stored.card["model_sha256"],
                                                       label="--onnx-dir"))
    metric, threshold = promotion.choose_metric(candidate, metric, threshold)
    low, high = metrics.METRIC_RANGES[metric]
    if min_improvement > high - low:
        raise UsageError(f"{min_improvement:g} is more than {metric} can change", label="--min-improvement")
    table, table_record = read_comparison(comparison_data_uri or None, compare_to_production)
    candidate.training_data = promotion.training_snapshot(training_data_uri, (table, table_record))
    gate = promotion.Gate(metric, threshold, compare_to_production, comparison_data_uri or None, table,
                table_record["sha256"] if table_record else None, alpha, min_improvement, n_bootstrap, random_state)
    try:
        outcome = promotion.deploy(candidate, registry, gate)
    except ComponentError as error:
        raise error.about("--registry-uri") from None
    version = outcome.pop("version")
    with outputs.publication() as out:  # the registry is this step's output; only KFP files are published here
        out.parameters({name: (path, outcome[name]) for name, path in (
            ("decision", decision_output_path), ("promoted", promoted_output_path),
            ("registered_uri", registered_uri_output_path), ("reason", reason_output_path))})
        out.executor_output(executor_input, metadata={"registered_model": promotion.registered_model(
            {**outcome, "version": version}, candidate, registry_uri, model_name, metric)})
    step_io.print_outputs(outcome)


if __name__ == "__main__":
    cli()
