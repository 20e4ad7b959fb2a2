"""train: fit a RandomForestClassifier and write ``model.skops`` with its ``model_card.json``."""
from __future__ import annotations

from typing import Any

import click

from mlops_runtime import drift, models, outputs, step_io, storage, tables
from mlops_runtime.cli import output_path_option, step
from mlops_runtime.lineage import lineage
from mlops_runtime.log import get_logger

MAX_SEED = 2**32 - 1  # numpy's RandomState accepts seeds in [0, 2**32 - 1]
# 0 means unlimited: KFP cannot pass "no value" for an optional input; deeper than this is never useful.
MAX_DEPTH = 10_000

log = get_logger("train")


def model_card(model: Any, model_bytes: bytes, *, target_column: str, n_rows: int,
               training_record: dict[str, Any], class_counts: dict[str, int], lineage_record: dict[str, Any]) -> dict:
    estimator = type(model)
    return {
        "model_format": "skops",
        "model_file": models.MODEL_FILE,
        "model_sha256": storage.sha256_hex(model_bytes),
        "model_bytes": len(model_bytes),
        # the public import path (sklearn.ensemble), not the private module (sklearn.ensemble._forest)
        "estimator": f"{estimator.__module__.split('._')[0]}.{estimator.__name__}",
        "parameters": model.get_params(deep=False),
        "feature_names": [str(name) for name in model.feature_names_in_],
        "classes": model.classes_.tolist(),
        "target_column": target_column,
        "n_train_rows": n_rows,
        "library_versions": models.library_versions(),
        "training_data": {"uri": training_record["uri"], "sha256": training_record["sha256"],
                          "bytes": training_record["bytes"], "class_counts": class_counts},
        "lineage": lineage_record,
    }


@step("train", help="Train a RandomForestClassifier on a table and write <output-dir>/model.skops (canonical skops "
                    "bytes) and <output-dir>/model_card.json (sha256, parameters, features, classes, lineage).")
@click.option("--train-uri", required=True, help="Training table (CSV or Parquet; s3://bucket/key or a local path).")
@click.option("--target-column", default="target", show_default=True,
              help="Label column; every other column is a feature.")
@click.option("--n-estimators", type=click.IntRange(min=1), default=100, show_default=True, help="Number of trees.")
@click.option("--max-depth", type=click.IntRange(0, MAX_DEPTH), default=0, show_default=True,
              help=f"Maximum depth of each tree, at most {MAX_DEPTH}; 0 means unlimited.")
@click.option("--random-state", type=click.IntRange(0, MAX_SEED), default=42, show_default=True,
              help="Seed of the forest: the same data and seed always give the same model bytes.")
@click.option("--output-dir", required=True, help="URI prefix (s3://... or a local folder) for this step's objects.")
@output_path_option("model_uri", "URI of the written model.skops (its model_card.json is beside it).")
def cli(train_uri: str, target_column: str, n_estimators: int, max_depth: int, random_state: int,
        output_dir: str, model_uri_output_path: str | None) -> None:
    from sklearn.ensemble import RandomForestClassifier

    model_uri = step_io.output_uri(output_dir, models.MODEL_FILE)
    card_uri = models.card_uri_for(model_uri)
    table, record = step_io.read_input_table(train_uri, label="--train-uri")
    step_io.require_column(table, target_column, uri=train_uri, label="--target-column")
    features, target = tables.split_features_target(table, target_column, label="--train-uri", uri=train_uri)
    # Every class has at least one row, so "fewer rows than classes" cannot happen once there are two classes.
    counts = step_io.class_counts(target, uri=train_uri, label="--train-uri")

    # n_jobs=1: the fitted trees do not depend on it, but predictions in small pods should not fork per core.
    model = RandomForestClassifier(n_estimators=n_estimators, max_depth=max_depth or None, random_state=random_state,
                                   n_jobs=1)
    model.fit(features, target)
    payload = models.dumps(model)
    models.loads(payload)  # never publish a model that load_model would refuse

    parameters = {"train_uri": train_uri, "target_column": target_column, "n_estimators": n_estimators,
                  "max_depth": max_depth, "random_state": random_state}
    # The drift reference, computed once here so monitoring never re-reads the training data.
    profile = outputs.json_bytes(drift.build_profile(table, target_column=target_column))
    step_lineage = lineage("train", parameters, [record])
    card = model_card(model, payload, target_column=target_column, n_rows=len(table), training_record=record,
                      class_counts={str(k): int(v) for k, v in sorted(counts.items(), key=lambda kv: str(kv[0]))},
                      lineage_record=step_lineage)
    card["reference_profile"] = {"file": models.PROFILE_FILE, "sha256": storage.sha256_hex(profile)}
    with outputs.publication(output_dir, lineage=step_lineage) as out:
        out.put(model_uri, payload, label="--output-dir")
        out.put(models.profile_uri_for(model_uri), profile, label="--output-dir")
        out.put_json(card_uri, card, label="--output-dir")
        out.parameters({"model_uri": (model_uri_output_path, model_uri)})
    log.info("wrote %s (%d trees, %d features, %d classes, %d rows) and %s", model_uri, n_estimators,
             features.shape[1], len(counts), len(table), card_uri)
    step_io.print_outputs({"model_uri": model_uri})


if __name__ == "__main__":
    cli()
