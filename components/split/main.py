"""split: a seeded train/test split of a table into ``train.parquet`` and ``test.parquet``.

Only the target column (and the time column) is read into memory to choose the rows; the table itself
streams through in record batches (:mod:`mlops_runtime.table_files`), so its columns may be of any type
and its size is bounded by disk, not memory. Each output keeps the input's rows in their input order.
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import click
import numpy as np
import pandas as pd

from mlops_runtime import outputs, signature, step_io, table_files, tables
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


def check_sizes(rows: int, test_size: float) -> int:
    """The test set's row count; both sets need at least one row."""
    n_test = math.ceil(test_size * rows)
    if rows - n_test < 1:
        raise BadInputError(f"the train set would have {rows - n_test} of {rows} rows; lower --test-size or "
                            "provide more rows", label="--test-size")
    return n_test


def time_order(column: pd.Series, *, uri: str) -> np.ndarray:
    """Row positions from oldest to newest; equal times keep their order in the table."""
    name, label = column.name, "--time-column"
    if column.isna().any():
        raise BadInputError(f"{uri}: time column '{name}' has {int(column.isna().sum())} missing value(s) among "
                            "the rows with a target; a time-ordered split needs every row's time", label=label)
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        keys = column.to_numpy(dtype="datetime64[us]")  # tz-aware values are converted to UTC
    elif pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        keys = column.to_numpy()
    elif pd.api.types.is_string_dtype(column.dtype) or column.dtype == object:
        parsed = pd.to_datetime(column, format="ISO8601", utc=True, errors="coerce")
        if parsed.isna().any():
            example = column[parsed.isna()].iloc[0]
            raise BadInputError(f"{uri}: time column '{name}' holds {example!r}, not an ISO 8601 date or "
                                "date-time", label=label)
        keys = parsed.to_numpy(dtype="datetime64[us]")
    else:
        raise BadInputError(f"{uri}: time column '{name}' holds {column.dtype} values; it must hold datetimes, "
                            "numbers or ISO 8601 text", label=label)
    return np.argsort(keys, kind="stable")


def choose_test_rows(target: pd.Series, task: str, times: pd.Series | None, test_size: float, random_state: int,
                     *, uri: str) -> np.ndarray:
    """Positions (into ``target``) of the test rows: the newest with a time column, else a seeded draw
    (stratified on the target for classification)."""
    from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit

    if times is not None:
        if task == "classification":
            step_io.class_counts(target, uri=uri, label="--data-uri")
        n_test = check_sizes(len(target), test_size)
        order = time_order(times, uri=uri)
        if task == "classification" and target.iloc[order[:-n_test]].nunique() < 2:
            raise BadInputError(f"{uri}: the train set (the oldest {len(target) - n_test} rows) would hold a "
                                f"single class of '{target.name}'; lower --test-size or provide more rows",
                                label="--time-column")
        return np.sort(order[-n_test:])
    rows = np.zeros(len(target), dtype=np.int8)  # only its length matters to the splitters
    if task == "classification":
        check_stratifiable(target, test_size, uri=uri)
        # Sorted integer codes stratify exactly as the values do (the splitter sorts classes) and are far
        # cheaper than millions of strings. Same splitter, sizes and seed as train_test_split: same rows.
        codes, _ = pd.factorize(target, sort=True)
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=test_size, random_state=random_state)
        _, test = next(splitter.split(rows, codes))
    else:
        check_sizes(len(target), test_size)
        _, test = next(ShuffleSplit(n_splits=1, test_size=test_size, random_state=random_state).split(rows))
    return np.sort(test)


@step("split", help="Split a table into seeded train and test sets (stratified for classification, or "
                    "time-ordered), written as <output-dir>/train.parquet and <output-dir>/test.parquet with "
                    "their lineage.")
@artifact_input_option("--data-uri", "data", "Dataset", "data.parquet", required=True,
                       help="Table to split (CSV or Parquet; s3://bucket/key or a local path).")
@click.option("--target-column", default="target", show_default=True,
              help="Label column; rows where it is missing are left out.")
@click.option("--task", type=click.Choice(["auto", *signature.TASKS]), default="auto", show_default=True,
              help="auto (the documented rule on the target), classification (stratified) or regression.")
@click.option("--time-column", default=None,
              help="Column of times (datetimes, numbers or ISO 8601 text): the test set is then the newest rows "
                   "instead of a random draw; empty means none.")
@click.option("--test-size", type=FloatRange(0, 1, min_open=True, max_open=True), default=0.2, show_default=True,
              help="Fraction of the rows in the test set, in (0, 1), rounded up to whole rows.")
@click.option("--random-state", type=click.IntRange(0, MAX_SEED), default=42, show_default=True,
              help="Seed of the shuffle: the same table and seed always give the same split.")
@output_dir_option("splits", "Dataset")
@executor_input_option()
@output_path_option("train_uri", "URI of the written train.parquet.")
@output_path_option("test_uri", "URI of the written test.parquet.")
def cli(data_uri: str, target_column: str, task: str, time_column: str | None, test_size: float,
        random_state: int, output_dir: str, executor_input: str | None, train_uri_output_path: str | None,
        test_uri_output_path: str | None) -> None:
    train_uri = step_io.output_uri(output_dir, TRAIN_FILE)
    test_uri = step_io.output_uri(output_dir, TEST_FILE)
    time_column = time_column or None
    with table_files.open_source(data_uri, label="--data-uri") as source:
        for column, label in ((target_column, "--target-column"), (time_column, "--time-column")):
            if column is not None and column not in source.names:
                step_io.require_column(pd.DataFrame(columns=source.names), column, uri=data_uri, label=label)
        if len(source.names) < 2:
            raise BadInputError(f"{data_uri}: the table has no feature columns besides '{target_column}'",
                                label="--data-uri")
        target = source.column(target_column)
        tables.check_target_values(target, label="--data-uri", target_label="--target-column", uri=data_uri)
        present = target.notna().to_numpy()
        kept = np.flatnonzero(present)
        if len(kept) < len(present):
            target = target[present].reset_index(drop=True)
        resolved = signature.infer_task(target, task, label="--task")
        times = None if time_column is None else source.column(time_column)
        if times is not None and len(kept) < len(present):
            times = times[present].reset_index(drop=True)
        test_rows = kept[choose_test_rows(target, resolved, times, test_size, random_state, uri=data_uri)]
        del target, times
        in_test = np.zeros(source.num_rows, dtype=bool)
        in_test[test_rows] = True
        in_train = present & ~in_test

        summary = {"task": resolved, "stratified": resolved == "classification" and time_column is None,
                   "n_rows": source.num_rows, "n_target_missing": int(source.num_rows - len(kept)),
                   "n_train": int(in_train.sum()), "n_test": int(in_test.sum())}
        parameters = {"data_uri": data_uri, "target_column": target_column, "task": task,
                      "time_column": time_column, "test_size": test_size, "random_state": random_state}
        step_lineage = {**lineage("split", parameters, [source.record]), "summary": summary}
        metadata = step_io.lineage_metadata(step_lineage)
        with tempfile.TemporaryDirectory(prefix="mlops-split-") as scratch:
            train_path, test_path = Path(scratch) / TRAIN_FILE, Path(scratch) / TEST_FILE
            table_files.write_rows(source, [(train_path, in_train, metadata), (test_path, in_test, metadata)])
            with outputs.publication(output_dir, lineage=step_lineage) as out:
                out.put_file(train_uri, train_path, label="--output-dir")
                out.put_file(test_uri, test_path, label="--output-dir")
                out.parameters({"train_uri": (train_uri_output_path, train_uri),
                                "test_uri": (test_uri_output_path, test_uri)})
                out.executor_output(executor_input, metadata={"splits": summary})
    log.info("%s split (%s) of %d rows: %s (%d rows) and %s (%d rows); %d row(s) without a target left out",
             resolved, "time-ordered" if time_column else "stratified" if summary["stratified"] else "random",
             summary["n_rows"], train_uri, summary["n_train"], test_uri, summary["n_test"],
             summary["n_target_missing"])
    step_io.print_outputs({"test_uri": test_uri, "train_uri": train_uri})


if __name__ == "__main__":
    cli()
