"""Buffered prediction records to Arrow tables, column by column, for a whole batch at once.

A record is what :meth:`mlops_runtime.prediction_log.PredictionLog.record` queued: ``(request_id,
model_version, timestamp, inputs DataFrame, outputs {name: array})``. Building one pandas frame per record
costs about a millisecond of interpreter time each (the writer thread then holds the GIL the request path
needs); here each column of a batch is gathered as arrays and handed to pyarrow once, so a batch of
thousands of small requests costs a few milliseconds of Python, and the Parquet encoding (``pq.write_table``)
runs in pyarrow's C++ without the GIL.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

Record = tuple[str, int, dt.datetime, pd.DataFrame, dict[str, Any]]
TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")


def schema_key(record: Record) -> tuple:
    """Records with the same key become one table: same input columns and dtypes, same output names."""
    inputs, outputs = record[3], record[4]
    return (tuple(map(str, inputs.columns)), tuple(map(str, inputs.dtypes)), tuple(outputs))


def runs_of_one_schema(records: list[Record]) -> Iterator[list[Record]]:
    """Consecutive records sharing a schema (a new model version may bring other columns)."""
    run: list[Record] = []
    key = None
    for record in records:
        this = schema_key(record)
        if run and this != key:
            yield run
            run = []
        run.append(record)
        key = this
    if run:
        yield run


def _text(values: np.ndarray) -> pa.Array:
    """An object column as text: one Parquet type per column, mixed text/number values as text."""
    try:
        return pa.array(values, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None or (isinstance(v, float) and v != v) or v is pd.NA else str(v)
                         for v in values], type=pa.string())


def _column(parts: list[Any]) -> pa.Array:
    if all(isinstance(part, np.ndarray) and part.dtype.kind in "biufM" for part in parts):
        return pa.array(np.concatenate(parts))  # the common case: numbers, one copy, no Python per value
    if all(isinstance(part, pd.Series) and part.dtype == object for part in parts):
        return _text(np.concatenate([part.to_numpy() for part in parts]))  # one conversion, not one per request
    if all(isinstance(part, np.ndarray) and part.dtype.kind in "OUS" for part in parts):
        return _text(np.concatenate([part.astype(object) for part in parts]))
    arrays = []
    for part in parts:
        if isinstance(part, pd.Series):
            textual = part.dtype == object or isinstance(part.dtype, pd.CategoricalDtype | pd.StringDtype)
            arrays.append(_text(part.to_numpy(dtype=object)) if textual else pa.Array.from_pandas(part))
        else:
            values = np.asarray(part)
            arrays.append(_text(values.astype(object)) if values.dtype.kind in "OUS" else pa.array(values))
    return pa.concat_arrays(arrays) if len(arrays) > 1 else arrays[0]


def to_table(records: list[Record]) -> pa.Table:
    """One table for records of one schema (:func:`runs_of_one_schema`): metadata, inputs, outputs."""
    counts = np.array([len(record[3]) for record in records], dtype=np.int64)
    ids = np.array([record[0] for record in records], dtype=object)
    columns: dict[str, pa.Array] = {
        "request_id": pa.array(np.repeat(ids, counts), type=pa.string()),
        "row": pa.array(np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)),
        "timestamp": pa.array(np.repeat(np.array([_utc_micros(r[2]) for r in records], dtype=np.int64), counts),
                              type=TIMESTAMP_TYPE),
        "model_version": pa.array(np.repeat(np.array([r[1] for r in records], dtype=np.int64), counts)),
    }
    first_inputs, first_outputs = records[0][3], records[0][4]
    for position, name in enumerate(first_inputs.columns):  # a schema run: unique column names
        parts = [record[3][name] for record in records]
        dtype = first_inputs.dtypes.iloc[position]
        if isinstance(dtype, np.dtype) and dtype.kind in "biufM":  # plain numpy: no per-value work
            parts = [part.to_numpy() for part in parts]
        columns[str(name)] = _column(parts)
    for name in first_outputs:
        columns[name] = _column([record[4][name] if isinstance(record[4][name], np.ndarray)
                                 else np.asarray(record[4][name]) for record in records])
    lengths = {len(array) for array in columns.values()}
    if len(lengths) != 1:
        raise ValueError(f"outputs and inputs differ in length ({sorted(lengths)})")
    return pa.table(columns)


def _utc_micros(moment: dt.datetime) -> int:
    stamp = pd.Timestamp(moment)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.value // 1000
