"""build_training_set: the retraining table under an explicit window, a holdout neither model trained on, and
an account of every row.

Sources, oldest first: the history (the data the production model was built from: ``--history-uri``, or
with ``--registry-uri`` the training-data snapshot registered with the production version) and then the
labeled batches in the order given (``--batch-uris``, then ``--batch-uri``). Rows whose target is missing
are left out; the window keeps the newest rows
(``all``, ``batches:N``, ``rows:N`` or ``days:N`` by ``--time-column``); the newest ``--holdout-fraction``
of the batch rows in the window (never history rows: the production model trained on those) becomes the
holdout on which champion and challenger are compared. ``accounting.json`` says, per source, how many rows
went where, and the counts always add up to the rows read.
"""
from __future__ import annotations

import math
import re

import click
import pandas as pd

from mlops_runtime import outputs, step_io, tables
from mlops_runtime.cli import FloatRange, KfpOption, output_path_option, step
from mlops_runtime.errors import BadInputError
from mlops_runtime.lineage import lineage
from mlops_runtime.log import get_logger
from mlops_runtime.registry import ModelRegistry

DATA_FILE = "train_data.parquet"
HOLDOUT_FILE = "holdout.parquet"
ACCOUNTING_FILE = "accounting.json"
MAX_BATCHES = 1000
WINDOW = re.compile(r"^(all|(batches|rows|days):([1-9][0-9]{0,8}))$")
SOURCE = "__source__"

log = get_logger("build_training_set")


def parse_window(text: str) -> tuple[str, int]:
    match = WINDOW.match(text.strip())
    if not match:
        raise click.BadParameter("use all, batches:N, rows:N or days:N (N a positive integer)",
                                 param_hint="'--window'")
    return ("all", 0) if match.group(1) == "all" else (match.group(2), int(match.group(3)))


def conform(batch: pd.DataFrame, like: pd.DataFrame, *, uri: str, target_column: str) -> pd.DataFrame:
    """The batch's columns of ``like`` in its order and types (extra columns, e.g. predictions, are dropped).

    Integer labels stay integers: a fractional label where the history's are whole is refused (it would be a
    new class, or turn a classifier into a regressor), while a fractional feature just becomes float."""
    missing = [str(c) for c in like.columns if c not in batch.columns]
    if missing:
        raise BadInputError(f"{uri}: missing column(s) of the history: {', '.join(missing[:10])}",
                            label="--batch-uris")
    conformed = batch[list(like.columns)].copy()
    for column in like.columns:
        wanted, values = like[column].dtype, conformed[column]
        if column == target_column and pd.api.types.is_integer_dtype(wanted):
            numbers = pd.to_numeric(values, errors="coerce")
            fractional = values[numbers.notna() & (numbers % 1 != 0)]
            if len(fractional):
                raise BadInputError(f"{uri}: label column '{column}' has non-integer values "
                                    f"({step_io.describe_values(fractional.unique().tolist())}) where the history's "
                                    "labels are integers", label="--batch-uris")
        if values.dtype == wanted:
            continue
        try:
            conformed[column] = _as_type(values, wanted)
        except (TypeError, ValueError):
            example = values.dropna().iloc[0] if values.notna().any() else None
            raise BadInputError(f"{uri}: column '{column}' holds {example!r} ({values.dtype}) where the history "
                                f"has {wanted} values", label="--batch-uris") from None
    return conformed


def _as_type(values: pd.Series, wanted: object) -> pd.Series:
    types = pd.api.types
    if types.is_bool_dtype(wanted):
        if not types.is_bool_dtype(values.dtype):
            raise TypeError(values.dtype)
        return values
    if types.is_numeric_dtype(wanted):
        if types.is_bool_dtype(values.dtype):
            raise TypeError(values.dtype)
        numbers = pd.to_numeric(values, errors="raise")
        whole = numbers.notna().all() and bool((numbers % 1 == 0).all())
        return numbers.astype(wanted) if types.is_integer_dtype(wanted) and whole else numbers.astype("float64")
    if types.is_datetime64_any_dtype(wanted):
        return pd.to_datetime(values, format="ISO8601", utc=True).dt.tz_convert(getattr(wanted, "tz", None))
    return values.astype("object").where(values.isna(), values.astype(str))


def as_times(values: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values.dtype) or pd.api.types.is_numeric_dtype(values.dtype):
        return values
    return pd.to_datetime(values, format="ISO8601", utc=True, errors="coerce")


def order_by_time(values: pd.Series) -> list[int]:
    """Row positions sorted by time, stably; rows without a readable time come first (oldest)."""
    times = as_times(values).reset_index(drop=True)
    return times.sort_values(kind="stable", na_position="first").index.tolist()


def window_mask(rows: pd.DataFrame, kind: str, size: int, *, time_column: str, n_sources: int) -> pd.Series:
    if kind == "all":
        return pd.Series(True, index=rows.index)
    if kind == "rows":
        return pd.Series(range(len(rows)), index=rows.index) >= len(rows) - size
    if kind == "batches":
        return rows[SOURCE] >= n_sources - size
    times = as_times(rows[time_column])
    if pd.api.types.is_numeric_dtype(times.dtype):
        raise BadInputError(f"'{time_column}' holds numbers, not times: a days window needs dates",
                            label="--time-column")
    if times.isna().all():
        raise BadInputError(f"no readable times in '{time_column}' for a days window", label="--time-column")
    return times >= times.max() - pd.Timedelta(days=size)


def registered_history(registry_uri: str, model_name: str) -> tuple[str, str]:
    """(uri, sha256) of the production version's training-data snapshot."""
    registry = ModelRegistry(registry_uri, model_name)
    pointer = registry.production().pointer
    if pointer is None:
        raise BadInputError(f"{registry.base}: no production model yet, so no history", label="--registry-uri")
    return registry.training_data(int(pointer["version"]))


def read_sources(sources: list[tuple[str, str]], expected_sha256: str | None,
                 columns: tuple[str, str]) -> tuple[list[pd.DataFrame], list[dict]]:
    frames, records, like = [], [], None
    for index, (uri, label) in enumerate(sources):
        table, record = step_io.read_input_table(uri, label=label)
        if index == 0 and label == "--registry-uri" and record["sha256"] != expected_sha256:
            raise BadInputError(f"{uri}: the snapshot's sha256 {record['sha256'][:12]}… is not the one its "
                                "registry entry recorded (tampered or replaced)", label=label)
        for column in columns:
            if column:
                step_io.require_column(table, column, uri=uri, label="--target-column" if column == columns[0]
                                       else "--time-column")
        table = table if like is None else conform(table, like, uri=uri, target_column=columns[0])
        like = table if like is None else like
        frames.append(table.reset_index(drop=True).assign(**{SOURCE: index}))
        records.append(record)
    return frames, records


@step("build_training_set", help="Build the retraining table from the history and the labeled batches under an "
                                 "explicit window, hold out the newest batch rows for a fair champion/challenger "
                                 "comparison, and account for every row (<output-dir>/accounting.json).")
@click.option("--history-uri", default="", help="Table the production model was built from (its full data); "
                                                "empty for none.")
@click.option("--batch-uris", default="[]", show_default=True, cls=KfpOption, kfp={"type": "JsonArray"},
              help="JSON list of labeled batch tables, oldest first.")
@click.option("--batch-uri", default="", help="One more labeled batch, after --batch-uris (empty: none).")
@click.option("--registry-uri", default="", help="Model registry: the history is its production version's "
                                                 "training-data snapshot (instead of --history-uri).")
@click.option("--model-name", default="classifier", show_default=True, help="Model name in the registry.")
@click.option("--target-column", default="target", show_default=True, help="Label column.")
@click.option("--time-column", default="", help="Orders rows within each source, and measures a days window.")
@click.option("--window", default="all", show_default=True, help="Rows to keep: all, batches:N (the newest N "
                                                                 "sources), rows:N or days:N (needs --time-column).")
@click.option("--holdout-fraction", type=FloatRange(0, 0.5, max_open=False), default=0.2, show_default=True,
              help="Share of the batch rows in the window, newest first, held out for the comparison (0 to 0.5).")
@click.option("--output-dir", required=True, help="URI prefix (s3://... or a local folder) for this step's objects.")
@output_path_option("data_uri", "URI of train_data.parquet, the retraining table.")
@output_path_option("holdout_uri", "URI of holdout.parquet ('' when there is no holdout).")
@output_path_option("n_rows", "Rows in the retraining table.", "Integer")
def cli(history_uri: str, batch_uris: str, batch_uri: str, registry_uri: str, model_name: str, target_column: str,
        time_column: str, window: str,
        holdout_fraction: float, output_dir: str, data_uri_output_path: str | None,
        holdout_uri_output_path: str | None, n_rows_output_path: str | None) -> None:
    kind, size = parse_window(window)
    if kind == "days" and not time_column:
        raise click.BadParameter("a days window needs --time-column", param_hint="'--window'")
    data_uri = step_io.output_uri(output_dir, DATA_FILE)
    holdout_uri = step_io.output_uri(output_dir, HOLDOUT_FILE)
    accounting_uri = step_io.output_uri(output_dir, ACCOUNTING_FILE)
    if history_uri and registry_uri:
        raise click.UsageError("give the history as --history-uri or --registry-uri, not both")
    expected_sha256 = None
    if registry_uri:
        history_uri, expected_sha256 = registered_history(registry_uri, model_name)
    batches = step_io.uri_list(batch_uris, label="--batch-uris", limit=MAX_BATCHES) + ([batch_uri] if batch_uri else [])
    sources = ([(history_uri, "--registry-uri" if registry_uri else "--history-uri")] if history_uri else []) + \
        [(uri, "--batch-uris") for uri in batches]
    if not sources:
        raise BadInputError("no history and no batches: nothing to train on", label="--batch-uris")
    frames, records = read_sources(sources, expected_sha256, (target_column, time_column))
    rows = pd.concat(frames, ignore_index=True)
    if time_column:  # oldest first across sources, so "newest" means newest in time
        rows = rows.iloc[order_by_time(rows[time_column])].reset_index(drop=True)
    labeled = rows[target_column].notna()
    in_window = window_mask(rows[labeled], kind, size, time_column=time_column,
                            n_sources=len(sources)).reindex(rows.index, fill_value=False)
    kept = rows[labeled & in_window]
    first_batch = 1 if history_uri else 0
    batch_rows = kept[kept[SOURCE] >= first_batch]
    n_holdout = math.floor(holdout_fraction * len(batch_rows))
    holdout_index = batch_rows.index[len(batch_rows) - n_holdout:] if n_holdout else batch_rows.index[:0]
    train = kept.drop(index=holdout_index)
    holdout = kept.loc[holdout_index]
    if train.empty:
        raise BadInputError("no labeled rows are left to train on after the window and the holdout",
                            label="--window")
    accounting = []
    for index, (uri, _label) in enumerate(sources):
        mine = rows[SOURCE] == index
        accounting.append({"uri": uri, "rows": int(mine.sum()),
                           "target_missing": int((mine & ~labeled).sum()),
                           "outside_window": int((mine & labeled & ~in_window).sum()),
                           "holdout": int((holdout[SOURCE] == index).sum()),
                           "training": int((train[SOURCE] == index).sum())})
    parameters = {"history_uri": history_uri or None, "batch_uris": batches, "registry_uri": registry_uri or None,
                  "model_name": model_name,
                  "target_column": target_column, "time_column": time_column or None, "window": window,
                  "holdout_fraction": holdout_fraction}
    step_lineage = lineage("build_training_set", parameters, records)
    metadata = step_io.lineage_metadata(step_lineage)
    document = {"sources": accounting, "training_rows": len(train), "holdout_rows": len(holdout),
                "window": window, "lineage": step_lineage}
    with outputs.publication(output_dir, lineage=step_lineage) as out:
        out.put(data_uri, tables.table_bytes(train.drop(columns=SOURCE).reset_index(drop=True), metadata),
                label="--output-dir")
        if len(holdout):
            out.put(holdout_uri, tables.table_bytes(holdout.drop(columns=SOURCE).reset_index(drop=True), metadata),
                    label="--output-dir")
        out.put_json(accounting_uri, document, label="--output-dir")
        values = {"data_uri": data_uri, "holdout_uri": holdout_uri if len(holdout) else "", "n_rows": len(train)}
        out.parameters({"data_uri": (data_uri_output_path, values["data_uri"]),
                        "holdout_uri": (holdout_uri_output_path, values["holdout_uri"]),
                        "n_rows": (n_rows_output_path, values["n_rows"])})
    log.info("%d training rows and %d holdout rows from %d sources (window %s); %d rows without a target and %d "
             "outside the window left out", len(train), len(holdout), len(sources), window,
             sum(s["target_missing"] for s in accounting), sum(s["outside_window"] for s in accounting))
    step_io.print_outputs(values)


if __name__ == "__main__":
    cli()
