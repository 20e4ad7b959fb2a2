"""split: a stratified, seeded train/test split of a table into ``train.parquet`` and ``test.parquet``."""
from __future__ import annotations

import math

import click
import pandas as pd

from mlops_runtime import outputs, step_io, tables
from mlops_runtime.cli import FloatRange, output_path_option, step
from mlops_runtime.errors import BadInputError
from mlops_runtime.lineage import lineage
from mlops_runtime.log import get_logger

TRAIN_FILE = "train.parquet"
TEST_FILE = "test.parquet"
MAX_SEED = 2**32 - 1  # numpy's RandomState accepts seeds in [0, 2**32 - 1]

log = get_logger("split")


def check_stratifiable(target: pd.Series, test_size: float, *, uri: str) -> None:
    """Refuse, with a message saying what to change, what train_test_split would reject or split badly."""
    counts = step_io.class_counts(target, uri=uri, label="--data-uri")
    rare = counts[counts < 2]
    if len(rare):
        raise BadInputError(f"{uri}: class(es) {step_io.describe_values(list(rare.index))} of '{target.name}' "
                            "have a single row; a stratified split needs at least 2 rows per class", label="--data-uri")
    rows, classes = len(target), len(counts)
    n_test = math.ceil(test_size * rows)  # how train_test_split sizes the test set
    if n_test < classes:
        raise BadInputError(f"the test set would have {n_test} of {rows} rows, fewer than the {classes} classes; "
                            "raise --test-size or provide more rows", label="--test-size")
    if rows - n_test < classes:
        raise BadInputError(f"the train set would have {rows - n_test} of {rows} rows, fewer than the {classes} "
                            "classes; lower --test-size or provide more rows", label="--test-size")


@step("split", help="Split a table into stratified, seeded train and test sets, written as "
                    "<output-dir>/train.parquet and <output-dir>/test.parquet with their lineage.")
@click.option("--data-uri", required=True, help="Table to split (CSV or Parquet; s3://bucket/key or a local path).")
@click.option("--target-column", default="target", show_default=True,
              help="Label column; the split is stratified on it.")
@click.option("--test-size", type=FloatRange(0, 1, min_open=True, max_open=True), default=0.2, show_default=True,
              help="Fraction of the rows in the test set, in (0, 1), rounded up to whole rows.")
@click.option("--random-state", type=click.IntRange(0, MAX_SEED), default=42, show_default=True,
              help="Seed of the shuffle: the same table and seed always give the same split.")
@click.option("--output-dir", required=True, help="URI prefix (s3://... or a local folder) for this step's objects.")
@output_path_option("train_uri", "URI of the written train.parquet.")
@output_path_option("test_uri", "URI of the written test.parquet.")
def cli(data_uri: str, target_column: str, test_size: float, random_state: int, output_dir: str,
        train_uri_output_path: str | None, test_uri_output_path: str | None) -> None:
    from sklearn.model_selection import train_test_split

    train_uri = step_io.output_uri(output_dir, TRAIN_FILE)
    test_uri = step_io.output_uri(output_dir, TEST_FILE)
    table, record = step_io.read_input_table(data_uri, label="--data-uri")
    step_io.require_column(table, target_column, uri=data_uri, label="--target-column")
    _, target = tables.split_features_target(table, target_column, label="--data-uri", uri=data_uri)
    check_stratifiable(target, test_size, uri=data_uri)

    train, test = train_test_split(table, test_size=test_size, random_state=random_state, stratify=target)
    parameters = {"data_uri": data_uri, "target_column": target_column, "test_size": test_size,
                  "random_state": random_state}
    step_lineage = lineage("split", parameters, [record])
    metadata = step_io.lineage_metadata(step_lineage)
    train_bytes = tables.table_bytes(train.reset_index(drop=True), metadata)
    test_bytes = tables.table_bytes(test.reset_index(drop=True), metadata)

    with outputs.publication(output_dir, lineage=step_lineage) as out:
        out.put(train_uri, train_bytes, label="--output-dir")
        out.put(test_uri, test_bytes, label="--output-dir")
        out.parameters({"train_uri": (train_uri_output_path, train_uri), "test_uri": (test_uri_output_path, test_uri)})
    log.info("wrote %s (%d rows) and %s (%d rows)", train_uri, len(train), test_uri, len(test))
    step_io.print_outputs({"test_uri": test_uri, "train_uri": train_uri})


if __name__ == "__main__":
    cli()
