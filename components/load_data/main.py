"""load_data: a scikit-learn bundled dataset, or a CSV/Parquet table, written as ``<output-dir>/data.parquet``."""
from __future__ import annotations

import tempfile
from pathlib import Path

import click
import pandas as pd

from mlops_runtime import datasets, outputs, step_io, table_files, tables
from mlops_runtime.cli import executor_input_option, output_dir_option, output_path_option, step
from mlops_runtime.lineage import input_record, lineage
from mlops_runtime.log import get_logger

DATA_FILE = "data.parquet"

log = get_logger("load_data")


@step("load_data", help="Load a scikit-learn bundled dataset (iris, wine, breast_cancer, digits) or a CSV/Parquet "
                        "table from s3:// or a local path, and write it as <output-dir>/data.parquet with its "
                        "lineage in the file's metadata.")
@click.option("--dataset", type=click.Choice(datasets.DATASETS), default="iris", show_default=True,
              help="scikit-learn bundled dataset to load; ignored when --source-uri is given.")
@click.option("--source-uri", default=None,
              help="CSV or Parquet table to load instead of --dataset (s3://bucket/key or a local path); "
                   "an empty value means none.")
@click.option("--target-column", default="target", show_default=True,
              help="Label column: the name the bundled dataset's label is written under, or the column of "
                   "--source-uri that must exist.")
@output_dir_option("data", "Dataset")
@executor_input_option()
@output_path_option("data_uri", "URI of the written data.parquet.")
def cli(dataset: str, source_uri: str | None, target_column: str, output_dir: str, executor_input: str | None,
        data_uri_output_path: str | None) -> None:
    data_uri = step_io.output_uri(output_dir, DATA_FILE)
    if source_uri:
        copy_source(source_uri, target_column, output_dir, data_uri, data_uri_output_path, executor_input)
    else:
        table = datasets.bundled_table(dataset, target_column)
        # The table's own digest identifies the bundled data (it changes if scikit-learn's copy ever does).
        record = input_record("--dataset", f"sklearn.datasets.load_{dataset}", tables.table_bytes(table))
        parameters = {"dataset": dataset, "source_uri": None, "target_column": target_column}
        step_lineage = lineage("load_data", parameters, [record])
        payload = tables.table_bytes(table, step_io.lineage_metadata(step_lineage))
        with outputs.publication(output_dir, lineage=step_lineage) as out:
            out.put(data_uri, payload, label="--output-dir")
            out.parameters({"data_uri": (data_uri_output_path, data_uri)})
            out.executor_output(executor_input, metadata={"data": {"rows": table.shape[0],
                                                                   "columns": table.shape[1]}})
        log.info("wrote %s: %d rows, %d columns", data_uri, table.shape[0], table.shape[1])
    step_io.print_outputs({"data_uri": data_uri})


def copy_source(source_uri: str, target_column: str, output_dir: str, data_uri: str,
                data_uri_output_path: str | None, executor_input: str | None) -> None:
    """Stream the source table into data.parquet: its columns, types and row order unchanged."""
    with table_files.open_source(source_uri, label="--source-uri") as source:
        if target_column not in source.names:
            step_io.require_column(pd.DataFrame(columns=source.names), target_column, uri=source_uri,
                                   label="--target-column")
        parameters = {"dataset": None, "source_uri": source_uri, "target_column": target_column}
        step_lineage = lineage("load_data", parameters, [source.record])
        with tempfile.TemporaryDirectory(prefix="mlops-load-") as scratch:
            path = Path(scratch) / DATA_FILE
            table_files.write_rows(source, [(path, None, step_io.lineage_metadata(step_lineage))])
            with outputs.publication(output_dir, lineage=step_lineage) as out:
                out.put_file(data_uri, path, label="--output-dir")
                out.parameters({"data_uri": (data_uri_output_path, data_uri)})
                out.executor_output(executor_input, metadata={"data": {"rows": source.num_rows,
                                                                       "columns": len(source.names)}})
        log.info("wrote %s: %d rows, %d columns", data_uri, source.num_rows, len(source.names))


if __name__ == "__main__":
    cli()
