"""Tables read one column at a time, so a table far larger than memory can still be scanned.

A :class:`Columns` source names its columns and row count up front (from the Parquet footer) and
hands out a single column on request: numerical columns as a private float64 array (missing as
NaN), categorical columns as value counts. :func:`open_columns` opens a URI: a local Parquet file
is read in place; an ``s3://`` Parquet object is streamed to a temporary file first (never held in
memory whole); a CSV (small by nature) is parsed with pandas.
"""
from __future__ import annotations

import hashlib
import math
import os
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import storage, tables
from .errors import BadInputError

NUMERICAL = "numerical"
CATEGORICAL = "categorical"
EMPTY = "empty"  # a column of nulls only (Parquet's null type): compatible with either kind
_HASH_CHUNK = 8 << 20
_BATCH_ROWS = 1 << 20


def category_key(value: Any) -> str | None:
    """The canonical text of a category value, None for a missing one.

    Sources disagree on how a category arrives (1 from an int column, 1.0 from the same column
    once it has a NaN, True or numpy.bool_), so every source maps values through this function.
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if math.isnan(number):
            return None
        return str(int(number)) if number.is_integer() else repr(number)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _add_counts(counts: dict[str, int], values: list[Any], numbers: np.ndarray) -> int:
    """Add value counts under their canonical keys; returns the count of missing values among them."""
    missing = 0
    for value, number in zip(values, numbers.tolist(), strict=True):
        if number == 0:  # an unused level of a pandas categorical
            continue
        key = category_key(value)
        if key is None:
            missing += number
        else:
            counts[key] = counts.get(key, 0) + number
    return missing


class Columns(ABC):
    """A table whose columns are loaded one at a time."""

    names: list[str]
    num_rows: int

    @abstractmethod
    def kind(self, name: str) -> str | None:
        """NUMERICAL, CATEGORICAL, EMPTY, or None for a type drift detection does not support."""

    @abstractmethod
    def type_name(self, name: str) -> str: ...

    @abstractmethod
    def numeric(self, name: str) -> np.ndarray:
        """The column as a new, writable float64 array; missing values are NaN."""

    @abstractmethod
    def value_counts(self, name: str) -> tuple[dict[str, int], int]:
        """``({category: count}, missing count)`` of the column, categories as :func:`category_key` text."""


class FrameColumns(Columns):
    """A pandas DataFrame."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.names = [str(c) for c in frame.columns]
        self._by_name = dict(zip(self.names, frame.columns, strict=True))
        self.num_rows = len(frame)

    def _series(self, name: str) -> pd.Series:
        return self.frame[self._by_name[name]]

    def kind(self, name: str) -> str | None:
        dtype = self._series(name).dtype
        if pd.api.types.is_bool_dtype(dtype):
            return CATEGORICAL
        if pd.api.types.is_numeric_dtype(dtype):
            return NUMERICAL
        if (isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype)
                or pd.api.types.is_object_dtype(dtype)):
            return CATEGORICAL
        return None

    def type_name(self, name: str) -> str:
        return str(self._series(name).dtype)

    def numeric(self, name: str) -> np.ndarray:
        return self._series(name).to_numpy(dtype=np.float64, na_value=np.nan, copy=True)

    def value_counts(self, name: str) -> tuple[dict[str, int], int]:
        series = self._series(name)
        counted = series.value_counts(dropna=False, sort=False)
        counts: dict[str, int] = {}
        missing = _add_counts(counts, list(counted.index), counted.to_numpy(dtype=np.int64))
        return counts, missing


def _arrow_kind(data_type: Any) -> str | None:
    import pyarrow as pa

    if pa.types.is_null(data_type):
        return EMPTY
    if pa.types.is_boolean(data_type):
        return CATEGORICAL
    if pa.types.is_integer(data_type) or pa.types.is_floating(data_type) or pa.types.is_decimal(data_type):
        return NUMERICAL
    if (pa.types.is_dictionary(data_type) or pa.types.is_string(data_type) or pa.types.is_large_string(data_type)
            or pa.types.is_binary(data_type) or pa.types.is_large_binary(data_type)
            or getattr(pa.types, "is_string_view", lambda _t: False)(data_type)):
        return CATEGORICAL
    return None


def _arrow_floats(column: Any) -> np.ndarray:
    """An Arrow array or chunked array as float64 (nulls as NaN); possibly a read-only view of Arrow memory."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_null(column.type):
        return np.full(len(column), np.nan)
    if column.type != pa.float64():
        column = pc.cast(column, pa.float64())
    if column.null_count:
        column = pc.fill_null(column, np.nan)
    return column.to_numpy(zero_copy_only=False)


def _arrow_numeric(column: Any) -> np.ndarray:
    values = _arrow_floats(column)
    # a single chunk converts without a copy, read-only in Arrow's memory: the caller needs its own
    return values if values.flags.writeable else values.copy()


def _arrow_value_counts(column: Any) -> tuple[dict[str, int], int]:
    import pyarrow as pa
    import pyarrow.compute as pc

    counts: dict[str, int] = {}
    if pa.types.is_null(column.type):
        return counts, len(column)
    missing = 0
    for chunk in column.chunks:
        if pa.types.is_dictionary(chunk.type):  # count the codes, then name them: no decoding of rows
            counted = pc.value_counts(chunk.indices)
            codes = counted.field("values")
            names = chunk.dictionary.take(pc.fill_null(codes, 0)).to_pylist()
            values = [None if code is None else name for code, name in zip(codes.to_pylist(), names, strict=True)]
        else:
            counted = pc.value_counts(chunk)
            values = counted.field("values").to_pylist()
        missing += _add_counts(counts, values, counted.field("counts").to_numpy(zero_copy_only=False))
    return counts, missing


class ArrowColumns(Columns):
    """A pyarrow Table already in memory."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.names = [str(name) for name in table.column_names]
        self.num_rows = table.num_rows

    def kind(self, name: str) -> str | None:
        return _arrow_kind(self.table.schema.field(name).type)

    def type_name(self, name: str) -> str:
        return str(self.table.schema.field(name).type)

    def numeric(self, name: str) -> np.ndarray:
        return _arrow_numeric(self.table.column(name))

    def value_counts(self, name: str) -> tuple[dict[str, int], int]:
        return _arrow_value_counts(self.table.column(name))


class ParquetColumns(Columns):
    """A Parquet file on local disk: only the footer is read up front, then one column per request."""

    def __init__(self, path: str | os.PathLike[str], uri: str | None = None, *, label: str | None = None) -> None:
        import pyarrow.parquet as pq

        self.path = str(path)
        self.uri = uri or self.path
        try:
            parquet = pq.ParquetFile(self.path)
            schema = parquet.schema_arrow
            self.num_rows = parquet.metadata.num_rows
        except Exception as error:  # pyarrow raises several types for a malformed footer
            raise BadInputError(f"{self.uri}: not a readable Parquet table ({_first_line(error)})", label=label) \
                from None
        index_columns = set()
        pandas_metadata = schema.pandas_metadata or {}
        for entry in pandas_metadata.get("index_columns", []):
            if isinstance(entry, str):
                index_columns.add(entry)
        self.names = [name for name in schema.names if name not in index_columns]
        self._types = {name: schema.field(name).type for name in self.names}
        self.label = label
        self._per_thread = threading.local()

    def _file(self) -> Any:
        """This thread's reader. Opening one parses the whole footer (its cost grows with the number of
        columns), so each thread opens the file once, not once per column; a reader is not shared between
        threads."""
        import pyarrow.parquet as pq

        reader = getattr(self._per_thread, "reader", None)
        if reader is None:
            reader = self._per_thread.reader = pq.ParquetFile(self.path)
        return reader

    def _read(self, name: str) -> Any:
        try:
            return self._file().read(columns=[name], use_threads=False).column(0)
        except Exception as error:
            raise BadInputError(f"{self.uri}: cannot read column '{name}' ({_first_line(error)})",
                                label=self.label) from None

    def kind(self, name: str) -> str | None:
        return _arrow_kind(self._types[name])

    def type_name(self, name: str) -> str:
        return str(self._types[name])

    def numeric(self, name: str) -> np.ndarray:
        # batch by batch into one array: a single column-sized allocation, no Arrow-side copy of the column
        values, filled = np.empty(self.num_rows), 0
        try:
            batches = self._file().iter_batches(batch_size=_BATCH_ROWS, columns=[name], use_threads=False)
            for batch in batches:
                chunk = _arrow_floats(batch.column(0))
                values[filled:filled + chunk.size] = chunk
                filled += chunk.size
        except Exception as error:
            raise BadInputError(f"{self.uri}: cannot read column '{name}' ({_first_line(error)})",
                                label=self.label) from None
        if filled != self.num_rows:
            raise BadInputError(f"{self.uri}: column '{name}' has {filled} values, the footer says {self.num_rows}",
                                label=self.label)
        return values

    def value_counts(self, name: str) -> tuple[dict[str, int], int]:
        return _arrow_value_counts(self._read(name))


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def as_columns(table: Any) -> Columns:
    """Wrap a pandas DataFrame, a pyarrow Table or an existing :class:`Columns` source."""
    if isinstance(table, Columns):
        return table
    if isinstance(table, pd.DataFrame):
        return FrameColumns(table)
    import pyarrow as pa

    if isinstance(table, pa.Table):
        return ArrowColumns(table)
    raise TypeError(f"not a table: {type(table).__name__}")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _is_parquet(path: Path, uri: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == tables.PARQUET_MAGIC or uri.lower().endswith((".parquet", ".pq"))


def _download(uri: str, target: Path, *, label: str | None) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    location = storage.parse(uri)
    try:
        with open(target, "wb") as handle:
            storage.s3_client().download_fileobj(location.bucket, location.key, handle)
    except (ClientError, BotoCoreError) as error:
        raise storage._s3_error(uri, error, reading=True).about(label) from error  # noqa: SLF001


@contextmanager
def open_columns(uri: str, *, label: str | None = None) -> Iterator[tuple[Columns, dict[str, Any]]]:
    """Open a table by URI for column-wise reading; yields ``(columns, lineage input record)``.

    The record (name, uri, sha256, bytes) is what :func:`mlops_runtime.lineage.input_record`
    gives, computed by streaming the file instead of holding it in memory.
    """
    try:
        location = storage.parse(uri)
    except BadInputError as error:
        raise error.about(label) if label else error from None
    with tempfile.TemporaryDirectory(prefix="mlops-columns-") as scratch:
        if isinstance(location, Path):
            path = location
            if not path.exists():
                raise BadInputError(f"{uri}: no such file", label=label)
            if path.is_dir():
                raise BadInputError(f"{uri}: is a directory, not a file", label=label)
        else:
            path = Path(scratch) / "table"
            _download(uri, path, label=label)
        record = {"name": label, "uri": uri, "sha256": _file_sha256(path), "bytes": path.stat().st_size}
        if _is_parquet(path, uri):
            source: Columns = ParquetColumns(path, uri, label=label)
        else:
            source = FrameColumns(tables.parse_table(path.read_bytes(), uri, label=label))
        if source.num_rows == 0 or not source.names:
            raise BadInputError(f"{uri}: the table is empty", label=label)
        yield source, record
