"""train: fit a preprocessing + estimator Pipeline and write ``model.skops`` with its ``model_card.json``."""
from __future__ import annotations

from typing import Any

import click
import numpy as np
import pandas as pd

from mlops_runtime import (
    drift,
    estimators,
    models,
    outputs,
    prediction_drift,
    preprocessing,
    signature,
    step_io,
    storage,
)
from mlops_runtime.cli import (
    FloatRange,
    artifact_input_option,
    executor_input_option,
    output_dir_option,
    output_path_option,
    step,
)
from mlops_runtime.errors import BadInputError
from mlops_runtime.lineage import lineage
from mlops_runtime.log import get_logger

MAX_SEED = 2**32 - 1  # numpy's RandomState accepts seeds in [0, 2**32 - 1]
MAX_SEARCH_ITERATIONS = 200

PREDICTION_REFERENCE_ROWS = 20_000  # rows whose out-of-fold outputs form the prediction-drift reference

log = get_logger("train")


def column_names(text: str, table: pd.DataFrame, *, target_column: str, label: str) -> list[str]:
    """Comma-separated column names, each required to be a column of the table other than the target."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    columns = {str(c) for c in table.columns}
    unknown = [name for name in names if name not in columns]
    if unknown:
        raise BadInputError(f"column(s) not in the table: {step_io.describe_values(unknown)}", label=label)
    if target_column in names:
        raise BadInputError(f"'{target_column}' is the target column", label=label)
    return names


def training_rows(table: pd.DataFrame, target_column: str, requested_task: str, *,
                  uri: str) -> tuple[pd.DataFrame, pd.Series, str, int]:
    """The rows with a target, their target (whole-number floats as integers for classification), the task."""
    present = table[target_column].notna()
    n_missing = int((~present).sum())
    if not present.any():
        raise BadInputError(f"{uri}: target column '{target_column}' has no values (all {len(table)} rows are "
                            "missing)", label="--target-column")
    rows = table.loc[present]
    target = rows[target_column]
    if isinstance(target.dtype, pd.CategoricalDtype):  # classes are the values present, not every declared category
        target = target.astype(target.cat.categories.dtype)
    task = signature.infer_task(target, requested_task, label="--task")
    if task == "classification" and pd.api.types.is_float_dtype(target.dtype):
        target = target.astype("int64")  # infer_task checked that every value is a whole number
    if task == "regression":
        target = target.astype("float64")
        if target.nunique() < 2:
            raise BadInputError(f"{uri}: target column '{target_column}' has a single value "
                                f"({float(target.iloc[0])!r}); a regressor needs at least two", label="--train-uri")
    return rows, target, task, n_missing


def model_card(pipeline: Any, model_bytes: bytes, *, target_column: str, task: str, n_rows: int,
               n_target_missing: int, model_signature: dict[str, Any], training_record: dict[str, Any],
               class_counts: dict[str, int] | None, lineage_record: dict[str, Any]) -> dict:
    estimator = pipeline.named_steps["model"]
    return {
        "model_format": "skops",
        "model_file": models.MODEL_FILE,
        "model_sha256": storage.sha256_hex(model_bytes),
        "model_bytes": len(model_bytes),
        "estimator": estimators.estimator_name(pipeline),
        "parameters": {key: (value if isinstance(value, (str, int, float, bool, list, type(None))) else str(value))
                       for key, value in estimator.get_params(deep=False).items()},
        "task": task,
        "feature_names": [feature["name"] for feature in model_signature["features"]],
        "signature": model_signature,
        "classes": estimator.classes_.tolist() if task == "classification" else None,
        "target_column": target_column,
        "n_train_rows": n_rows,
        "n_target_missing": n_target_missing,
        "n_encoded_features": preprocessing.n_encoded_columns(pipeline),
        "library_versions": models.library_versions(),
        "training_data": {"uri": training_record["uri"], "sha256": training_record["sha256"],
                          "bytes": training_record["bytes"], "class_counts": class_counts},
        "lineage": lineage_record,
    }


def reference_sample(features: pd.DataFrame, target: pd.Series, *, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """At most :data:`PREDICTION_REFERENCE_ROWS` training rows, drawn with the seed: a distribution's worth."""
    if len(features) <= PREDICTION_REFERENCE_ROWS:
        return features, target
    rows = np.random.default_rng(seed).choice(len(features), PREDICTION_REFERENCE_ROWS, replace=False)
    rows.sort()
    return features.iloc[rows], target.iloc[rows]


@step("train", help="Train a scikit-learn Pipeline (preprocessing + estimator) on a table of raw columns (numbers, "
                    "text, booleans, dates, missing values) for classification or regression, and write "
                    "<output-dir>/model.skops (canonical skops bytes) and <output-dir>/model_card.json (task, "
                    "signature, parameters, feature importances, lineage).")
@artifact_input_option("--train-uri", "splits", "Dataset", "train.parquet", required=True,
                       help="Training table (CSV or Parquet; s3://bucket/key or a local path).")
@click.option("--target-column", default="target", show_default=True,
              help="Target column; every other column is a feature unless left out.")
@click.option("--task", type=click.Choice(["auto", *signature.TASKS]), default="auto", show_default=True,
              help="auto: text/boolean or integer targets with at most 20 values are classification, else regression.")
@click.option("--estimator", type=click.Choice(preprocessing.ESTIMATOR_FAMILIES), default="random_forest",
              show_default=True, help="random_forest, hist_gradient_boosting or linear (logistic regression / ridge).")
@click.option("--categorical-features", default="", show_default=True,
              help="Comma-separated numeric columns to treat as categories (codes).")
@click.option("--drop-columns", default="", show_default=True, help="Comma-separated columns to leave out.")
@click.option("--n-estimators", type=click.IntRange(1, 10000), default=100, show_default=True,
              help="Trees of random_forest (1 to 10000).")
@click.option("--max-depth", type=click.IntRange(0, 1000), default=0, show_default=True,
              help="Maximum tree depth of random_forest / hist_gradient_boosting; 0 = unlimited.")
@click.option("--min-samples-leaf", type=click.IntRange(0, 1_000_000), default=0, show_default=True,
              help="Minimum rows per leaf; 0 = the estimator's default (1 for random_forest, 20 for boosting).")
@click.option("--learning-rate", type=FloatRange(0, 1, min_open=True), default=0.1, show_default=True,
              help="Learning rate of hist_gradient_boosting (0 < rate <= 1).")
@click.option("--max-iter", type=click.IntRange(1, 10000), default=100, show_default=True,
              help="Boosting iterations of hist_gradient_boosting (1 to 10000).")
@click.option("--c", "c", type=FloatRange(1e-6, 1e6), default=1.0, show_default=True,
              help="Inverse regularisation strength C of linear classification (1e-6 to 1e6).")
@click.option("--alpha", type=FloatRange(0, 1e6), default=1.0, show_default=True,
              help="Regularisation strength alpha of linear regression (0 to 1e6).")
@click.option("--class-weight", type=click.Choice(["none", "balanced"]), default="none", show_default=True,
              help="balanced: weight classes inversely to their frequency (classification).")
@click.option("--search-iterations", type=click.IntRange(0, MAX_SEARCH_ITERATIONS), default=0, show_default=True,
              help="Random hyperparameter search candidates, 3-fold cross-validated (0 = off, at most 200).")
@click.option("--random-state", type=click.IntRange(0, MAX_SEED), default=42, show_default=True,
              help="Seed of the estimator and the search: the same data and seed always give the same model bytes.")
@output_dir_option("model", "Model")
@executor_input_option()
@output_path_option("model_uri", "URI of the written model.skops (its model_card.json is beside it).")
def cli(train_uri: str, target_column: str, task: str, estimator: str, categorical_features: str, drop_columns: str,
        n_estimators: int, max_depth: int, min_samples_leaf: int, learning_rate: float, max_iter: int, c: float,
        alpha: float, class_weight: str, search_iterations: int, random_state: int, output_dir: str,
        executor_input: str | None, model_uri_output_path: str | None) -> None:
    model_uri = step_io.output_uri(output_dir, models.MODEL_FILE)
    card_uri = models.card_uri_for(model_uri)
    table, record = step_io.read_input_table(train_uri, label="--train-uri")
    step_io.require_column(table, target_column, uri=train_uri, label="--target-column")
    categorical = column_names(categorical_features, table, target_column=target_column,
                               label="--categorical-features")
    dropped_by_option = column_names(drop_columns, table, target_column=target_column, label="--drop-columns")
    rows, target, task, n_target_missing = training_rows(table, target_column, task, uri=train_uri)
    counts = None
    if task == "classification":
        # Every class has at least one row, so "fewer rows than classes" cannot happen once there are two classes.
        found = step_io.class_counts(target, uri=train_uri, label="--train-uri")
        counts = {str(k): int(v) for k, v in sorted(found.items(), key=lambda kv: str(kv[0]))}
        if search_iterations and min(counts.values()) < estimators.SEARCH_FOLDS:
            raise BadInputError(f"the smallest class has {min(counts.values())} row(s); a "
                                f"{estimators.SEARCH_FOLDS}-fold search needs at least {estimators.SEARCH_FOLDS}",
                                label="--search-iterations")
    elif class_weight == "balanced":
        raise BadInputError("balanced class weights need a classification task (the task is regression)",
                            label="--class-weight")
    if search_iterations and len(target) < 2 * estimators.SEARCH_FOLDS:
        raise BadInputError(f"{len(target)} rows are too few for a cross-validated search", label="--search-iterations")

    candidates = rows.drop(columns=[target_column, *dropped_by_option])
    kinds, dropped = preprocessing.plan_columns(candidates, categorical=set(categorical))
    dropped = [{"name": name, "reason": "--drop-columns"} for name in dropped_by_option] + dropped
    if not kinds:
        reasons = "; ".join(f"{entry['name']}: {entry['reason']}" for entry in dropped[:5])
        raise BadInputError(f"{train_uri}: no usable feature column besides '{target_column}'"
                            + (f" (left out: {reasons})" if reasons else ""), label="--train-uri")
    # logged once every input is known to be usable: a refusal stays one stderr line
    if n_target_missing:
        log.info("left out %d of %d rows whose target '%s' is missing", n_target_missing, len(table), target_column)
    for entry in dropped:
        log.info("left out column '%s': %s", entry["name"], entry["reason"])
    features = candidates[list(kinds)]

    hyperparameters = estimators.Hyperparameters(
        n_estimators=n_estimators, max_depth=max_depth, min_samples_leaf=min_samples_leaf,
        learning_rate=learning_rate, max_iter=max_iter, c=c, alpha=alpha, class_weight=class_weight)
    pipeline = estimators.build(estimator, task, kinds, hyperparameters, random_state)
    pipeline, search, fit_warnings = estimators.fit(pipeline, features, target, family=estimator, task=task,
                                                    search_iterations=search_iterations, seed=random_state)
    for message in fit_warnings:
        log.warning("while fitting: %s", message)
    payload = models.dumps(pipeline)
    models.loads(payload)  # never publish a model that load_model would refuse
    importance = estimators.feature_importance(pipeline, features, target, seed=random_state)

    parameters = {"train_uri": train_uri, "target_column": target_column, "task": task, "estimator": estimator,
                  "categorical_features": categorical, "drop_columns": dropped_by_option,
                  "n_estimators": n_estimators, "max_depth": max_depth, "min_samples_leaf": min_samples_leaf,
                  "learning_rate": learning_rate, "max_iter": max_iter, "c": c, "alpha": alpha,
                  "class_weight": class_weight, "search_iterations": search_iterations, "random_state": random_state}
    # The drift reference, computed once here so monitoring never re-reads the training data, with the model's
    # out-of-fold outputs on (a sample of) the training rows as the reference for prediction drift.
    reference_outputs = prediction_drift.out_of_fold_frame(
        pipeline, *reference_sample(features, target, seed=random_state), folds=5, random_state=random_state)
    profile = outputs.json_bytes(drift.build_profile(table, target_column=target_column,
                                                     categorical_features=categorical, predictions=reference_outputs))
    step_lineage = lineage("train", parameters, [record])
    model_signature = signature.build_signature(features, target, task, kinds=kinds, dropped=dropped)
    card = model_card(pipeline, payload, target_column=target_column, task=task, n_rows=len(features),
                      n_target_missing=n_target_missing, model_signature=model_signature, training_record=record,
                      class_counts=counts, lineage_record=step_lineage)
    card["feature_importance"] = importance
    card["search"] = search
    card["reference_profile"] = {"file": models.PROFILE_FILE, "sha256": storage.sha256_hex(profile)}
    with outputs.publication(output_dir, lineage=step_lineage) as out:
        out.put(model_uri, payload, label="--output-dir")
        out.put(models.profile_uri_for(model_uri), profile, label="--output-dir")
        out.put_json(card_uri, card, label="--output-dir")
        out.parameters({"model_uri": (model_uri_output_path, model_uri)})
        out.executor_output(executor_input, metadata={"model": {"task": task, "estimator": card["estimator"]}})
    log.info("wrote %s (%s, %s, %d input columns -> %d encoded, %d rows) and %s", model_uri, card["estimator"], task,
             len(kinds), card["n_encoded_features"], len(features), card_uri)
    step_io.print_outputs({"model_uri": model_uri})


if __name__ == "__main__":
    cli()
