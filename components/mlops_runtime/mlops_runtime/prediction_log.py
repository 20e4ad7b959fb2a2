"""Prediction logs: every served request's inputs and outputs as time-partitioned Parquet batches.

Layout: ``<log-uri>/<model>/date=YYYY-MM-DD/hour=HH/<first timestamp>-<random>.parquet`` (URI order is
time order), one row per predicted row with
``request_id``, ``row`` (its index in the request), ``timestamp`` (UTC), ``model_version``, the model's
input columns, ``prediction`` and, for classifiers, ``proba_<class>`` columns.

``PredictionLog.record`` only appends to a bounded in-memory buffer (it never waits on storage and never
raises); a background thread writes a batch when it reaches ``max_rows`` or is ``max_seconds`` old,
converting it to Arrow column by column (:mod:`mlops_runtime.log_tables`). A full
buffer or a failed write drops records and counts them (``stats()``); ``close()`` writes what is left.
"""
from __future__ import annotations

import datetime as dt
import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlops_runtime import log_tables, storage, tables
from mlops_runtime.columnar import Columns, category_key
from mlops_runtime.errors import BadInputError, ComponentError
from mlops_runtime.log import get_logger

log = get_logger(__name__)
META_COLUMNS = ["request_id", "row", "timestamp", "model_version"]
PREDICTION_COLUMN = "prediction"
PROBA_PREFIX = "proba_"
TEXT_VALUE_BYTES = 64  # a short Python str and its pointer
_PARTITION = re.compile(r"/date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/[^/]+\.parquet$")


@dataclass
class _Pending:
    frames: list[tuple] = field(default_factory=list)  # record() arguments, converted when written
    rows: int = 0
    bytes: int = 0
    since: float | None = None


class PredictionLog:
    """A bounded, non-blocking buffer of prediction records, flushed to ``<log_uri>/<model_name>/``."""

    def __init__(self, log_uri: str, model_name: str, *, max_rows: int = 10_000, max_seconds: float = 60.0,
                 max_buffered_bytes: int = 64 * 2**20, clock: Any = None) -> None:
        self.base = storage.join(log_uri, model_name)
        self.max_rows, self.max_seconds, self.max_buffered_bytes = max_rows, max_seconds, max_buffered_bytes
        self._clock = clock or _monotonic
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending = _Pending()
        self._counters = {"logged_rows": 0, "dropped_rows": 0, "written_files": 0, "failed_writes": 0,
                          "buffered_rows": 0}
        self._closing = False
        self._writer = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        self._writer.start()

    def record(self, request_id: str, model_version: int, inputs: pd.DataFrame, outputs: dict[str, Any],
               *, timestamp: dt.datetime | None = None) -> bool:
        """Queue one request's rows; False (and counted as dropped) when the buffer is full or closed.

        Only an O(columns) size estimate happens here; the rows become a table in the writer thread.
        Keeps references to ``inputs`` and ``outputs``: the caller must not change them afterwards.
        """
        rows = len(inputs)
        try:
            entry = (str(request_id), int(model_version), timestamp or dt.datetime.now(dt.UTC), inputs, outputs)
            size = approx_bytes(inputs, outputs)
        except Exception as error:  # a record that cannot be queued must not fail the request
            log.warning("prediction log: could not record request %s (%s)", request_id, error)
            with self._lock:
                self._counters["dropped_rows"] += rows
            return False
        with self._lock:
            if self._closing or self._pending.bytes + size > self.max_buffered_bytes:
                self._counters["dropped_rows"] += rows
                return False
            pending = self._pending
            pending.frames.append(entry)
            pending.rows += rows
            pending.bytes += size
            pending.since = pending.since if pending.since is not None else self._clock()
            self._counters["buffered_rows"] = pending.rows
            if pending.rows >= self.max_rows:
                self._wake.notify()
        return True

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counters)

    def close(self, timeout: float = 30.0) -> dict[str, int]:
        """Stop accepting records, write everything buffered, and return the counters."""
        with self._lock:
            self._closing = True
            self._wake.notify()
        self._writer.join(timeout)
        return self.stats()

    def _take(self) -> _Pending:
        pending, self._pending = self._pending, _Pending()
        self._counters["buffered_rows"] = 0
        return pending

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._closing and not self._due():
                    since = self._pending.since
                    wait = self.max_seconds - (self._clock() - since) if since is not None else self.max_seconds
                    self._wake.wait(max(0.05, min(wait, 1.0)))
                closing = self._closing
                batch = self._take()
            if batch.rows:
                self._write(batch)
            if closing:
                return

    def _due(self) -> bool:
        pending = self._pending
        return pending.rows >= self.max_rows or (
            pending.since is not None and self._clock() - pending.since >= self.max_seconds)

    def _write(self, batch: _Pending) -> None:
        """Write a batch: one file per hour and schema, its rows converted to Arrow column by column."""
        by_hour: dict[dt.datetime, list[log_tables.Record]] = {}
        for record in batch.frames:
            by_hour.setdefault(_hour(record[2]), []).append(record)
        for hour, records in sorted(by_hour.items()):
            for run in log_tables.runs_of_one_schema(records):
                table = self._table(run)
                if table is not None:
                    self._put(hour, table)

    def _table(self, records: list[log_tables.Record]) -> pa.Table | None:
        try:
            return log_tables.to_table(records)
        except Exception:  # one odd request must not lose the batch: find it, drop it alone
            kept = []
            for record in records:
                try:
                    kept.append(log_tables.to_table([record]))
                except Exception as error:
                    log.warning("prediction log: dropped request %s (%s)", record[0], error)
                    with self._lock:
                        self._counters["dropped_rows"] += len(record[3])
            return pa.concat_tables(kept, promote_options="permissive") if kept else None

    def _put(self, hour: dt.datetime, table: pa.Table) -> None:
        first = pd.Timestamp(pc.min(table["timestamp"]).as_py()).tz_convert("UTC")
        name = f"{first:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:12]}.parquet"  # URI order is time order
        uri = storage.join(self.base, f"date={hour:%Y-%m-%d}", f"hour={hour:%H}", name)
        try:
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink, compression="zstd")
            storage.write_bytes(uri, sink.getvalue().to_pybytes())
        except Exception as error:  # a storage outage drops logs, never requests
            log.warning("prediction log: dropped %d rows, cannot write %s (%s)", table.num_rows, uri, error)
            with self._lock:
                self._counters["dropped_rows"] += table.num_rows
                self._counters["failed_writes"] += 1
            return
        with self._lock:
            self._counters["logged_rows"] += table.num_rows
            self._counters["written_files"] += 1


def approx_bytes(inputs: pd.DataFrame, outputs: dict[str, Any]) -> int:
    """What a record holds in memory, roughly: array bytes plus a Python string per text value."""
    per_row = 0  # from the dtypes alone: DataFrame.memory_usage costs more than the rest of record()
    for dtype in inputs.dtypes:
        plain = isinstance(dtype, np.dtype) and dtype.kind in "biufcmM"
        per_row += dtype.itemsize if plain else 8 + TEXT_VALUE_BYTES
    size = per_row * len(inputs)
    for values in outputs.values():
        array = np.asarray(values)
        size += array.nbytes + (TEXT_VALUE_BYTES * array.size if array.dtype.kind in "OUS" else 0)
    return size


def is_log_column(name: str) -> bool:
    """Whether a logged column is request metadata or a prediction rather than a model input."""
    return name in META_COLUMNS or name == PREDICTION_COLUMN or name.startswith(PROBA_PREFIX)


def _hour(moment: dt.datetime) -> dt.datetime:
    moment = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


def _monotonic() -> float:
    import time

    return time.monotonic()


def _hour_of(uri: str) -> dt.datetime | None:
    match = _PARTITION.search(uri)
    if not match:
        return None
    return dt.datetime.strptime(f"{match.group(1)} {match.group(2)}", "%Y-%m-%d %H").replace(tzinfo=dt.UTC)


def read_prediction_logs(log_uri: str, model_name: str, *, start: dt.datetime, end: dt.datetime,
                         label: str = "--log-uri", max_rows: int = 5_000_000) -> pd.DataFrame:
    """Every logged row with ``start <= timestamp < end``, oldest first, as one table.

    Columns: the request metadata, the model's input columns and the prediction columns; usable as a
    monitoring batch (the steps' signature checks ignore the extra columns).
    """
    start, end = _utc(start), _utc(end)
    if end <= start:
        raise BadInputError(f"empty time range: {start.isoformat()} .. {end.isoformat()}", label=label)
    base = storage.join(log_uri, model_name)
    first_hour = start.replace(minute=0, second=0, microsecond=0)
    uris = [uri for uri in storage.list_uris(base) if (hour := _hour_of(uri)) is not None and first_hour <= hour < end]
    frames, rows = [], 0
    for uri in sorted(uris):
        try:
            frame = tables.read_table(uri, label=label)
        except ComponentError:
            raise
        frame = frame[(frame["timestamp"] >= start) & (frame["timestamp"] < end)]
        rows += len(frame)
        if rows > max_rows:
            raise BadInputError(f"{base}: more than {max_rows} logged rows in the range; narrow it", label=label)
        frames.append(frame)
    if not frames or rows == 0:
        raise BadInputError(f"{base}: no logged predictions between {start.isoformat()} and {end.isoformat()}",
                            label=label)
    table = pd.concat(frames, ignore_index=True)
    return table.sort_values(["timestamp", "request_id", "row"], kind="stable").reset_index(drop=True)


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def is_log_table(names: list[str]) -> bool:
    """Whether a table is a prediction-log partition (or a join_labels batch kept --with-predictions)."""
    return all(name in names for name in META_COLUMNS) and PREDICTION_COLUMN in names


class FeatureColumns(Columns):
    """A log partition seen as a monitoring batch: the model's inputs only (no metadata, no predictions)."""

    def __init__(self, source: Columns) -> None:
        self.source = source
        self.names = [name for name in source.names if not is_log_column(name)]
        self.num_rows = source.num_rows

    def kind(self, name: str) -> str | None:
        return self.source.kind(name)

    def type_name(self, name: str) -> str:
        return self.source.type_name(name)

    def numeric(self, name: str) -> np.ndarray:
        return self.source.numeric(name)

    def value_counts(self, name: str) -> tuple[dict[str, int], int]:
        return self.source.value_counts(name)


def probability_column(klass: Any) -> str:
    """The log's column of a class's probability, named by the class's category key (1.0 and 1 are "1"), as
    the reference profile names it (``probability:<key>``)."""
    return f"{PROBA_PREFIX}{category_key(klass)}"


def logged_predictions(frame: pd.DataFrame) -> pd.DataFrame:
    """The served outputs of a log table in :mod:`mlops_runtime.prediction_drift`'s columns (as the reference
    profile holds them): ``predicted_class`` and ``probability:<class>`` for classifiers (the log has
    ``proba_<class>`` columns), else ``prediction`` as a number."""
    from mlops_runtime import prediction_drift

    probabilities = [name for name in frame.columns if str(name).startswith(PROBA_PREFIX)]
    if not probabilities:
        return pd.DataFrame({prediction_drift.PREDICTION: pd.to_numeric(frame[PREDICTION_COLUMN], errors="coerce")})
    columns: dict[str, Any] = {prediction_drift.PREDICTED_CLASS: pd.Series(
        [category_key(value) for value in frame[PREDICTION_COLUMN]], dtype=object)}
    for name in probabilities:
        columns[prediction_drift.PROBABILITY_PREFIX + str(name)[len(PROBA_PREFIX):]] = \
            frame[name].to_numpy(dtype=np.float64)
    return pd.DataFrame(columns)


def list_partitions(log_uri: str, model_name: str) -> list[str]:
    """The log's partition files of ``model_name`` under ``log_uri``, oldest first (files are named by time)."""
    base = storage.join(log_uri, model_name)
    return sorted(uri for uri in storage.list_uris(base) if _hour_of(uri) is not None)
