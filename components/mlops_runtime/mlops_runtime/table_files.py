"""Tables streamed through a step as files, so a table larger than the step's memory still fits through it.

:func:`open_source` opens a CSV or Parquet table by URI: an ``s3://`` object is streamed to a scratch
file (hashed on the way, for its lineage record), a local file is read in place. A Parquet source reads
single columns (:meth:`TableSource.column`) or record batches, one row group at a time (memory
follows the input's largest row group, not its size); a CSV is parsed with pandas exactly as
:func:`mlops_runtime.tables.parse_table` does. :func:`write_rows` copies the source's rows, batch by
batch, into Parquet files (all rows, or the rows a mask selects, in the source's order), with the
source's schema and key-value metadata plus the step's own. Scratch files go to the temporary folder
(``TMPDIR``).
"""
from __future__ import annotations

import json
import queue
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import file_transfer, storage, tables
from .errors import BadInputError, StorageError

BATCH_ROWS = 1 << 16
ROW_GROUP_ROWS = 1 << 18
_PANDAS_KEY = b"pandas"


class TableSource:
    """An opened table: its schema, row count and lineage record; single columns and record batches."""

    def __init__(self, uri: str, label: str, record: dict[str, Any], *, parquet: pq.ParquetFile | None = None,
                 table: pa.Table | None = None) -> None:
        self.uri, self.label, self.record = uri, label, record
        self._parquet, self._table = parquet, table
        self.schema: pa.Schema = parquet.schema_arrow if parquet is not None else table.schema
        self.num_rows: int = parquet.metadata.num_rows if parquet is not None else table.num_rows
        self.names: list[str] = list(self.schema.names)

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()

    def column(self, name: str) -> pd.Series:
        """One column as a pandas Series (what the rest of the runtime validates)."""
        with self._reading():
            array = self._parquet.read(columns=[name]).column(0) if self._parquet else self._table.column(name)
            return array.to_pandas().rename(name)

    def batches(self) -> Iterator[pa.RecordBatch]:
        with self._reading():
            if self._parquet is not None:
                # One reader per row group: a reader over the whole file keeps every column chunk it read
                # until it is closed, i.e. the whole file's bytes in memory by the end.
                for group in range(self._parquet.num_row_groups):
                    yield from self._parquet.iter_batches(batch_size=BATCH_ROWS, row_groups=[group])
            else:
                yield from self._table.to_batches(max_chunksize=BATCH_ROWS)

    @contextmanager
    def _reading(self) -> Iterator[None]:
        try:
            yield
        except (pa.ArrowException, OSError) as error:  # a corrupt page or column chunk inside the file
            raise BadInputError(f"{self.uri}: not a readable Parquet table ({_first_line(error)})",
                                label=self.label) from None


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _is_parquet(path: Path, uri: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == tables.PARQUET_MAGIC or uri.lower().endswith((".parquet", ".pq"))


@contextmanager
def open_source(uri: str, *, label: str) -> Iterator[TableSource]:
    """Open the table at ``uri`` (CSV or Parquet, s3:// or local) for streaming; refused when empty."""
    try:
        location = storage.parse(uri)
    except BadInputError as error:
        raise error.about(label) from None
    with tempfile.TemporaryDirectory(prefix="mlops-table-") as scratch:
        if isinstance(location, Path):
            try:
                if not location.exists():
                    raise BadInputError(f"{uri}: no such file", label=label)
                if location.is_dir():
                    raise BadInputError(f"{uri}: is a directory, not a file", label=label)
                path, sha256 = location, file_transfer.file_sha256(location)
            except PermissionError:
                raise StorageError(f"{uri}: permission denied", label=label) from None
        else:
            path = Path(scratch) / "source"
            sha256 = file_transfer.download_file(uri, path, label=label)
        record = {"name": label, "uri": uri, "sha256": sha256, "bytes": path.stat().st_size}
        if _is_parquet(path, uri):
            try:
                source = TableSource(uri, label, record, parquet=pq.ParquetFile(path))
            except (pa.ArrowException, OSError) as error:
                raise BadInputError(f"{uri}: not a readable Parquet table ({_first_line(error)})",
                                    label=label) from None
        else:
            frame = tables.parse_table(path.read_bytes(), uri, label=label)
            source = TableSource(uri, label, record, table=tables.arrow_table(frame, uri=uri, label=label))
            del frame
        try:
            if source.num_rows == 0 or not source.names:
                raise BadInputError(f"{uri}: the table is empty", label=label)
            yield source
        finally:
            source.close()


def output_schema(schema: pa.Schema, rows: int, metadata: dict[str, str]) -> pa.Schema:
    """``schema`` with its key-value metadata for an output of ``rows`` rows plus ``metadata``.

    pandas' own metadata stays (it restores dtypes such as categories and nullable integers), with a
    stored RangeIndex renumbered 0..rows: the output is a new table, as ``reset_index(drop=True)`` gives.
    """
    kept = {key: value for key, value in (schema.metadata or {}).items() if key.decode() not in metadata}
    if _PANDAS_KEY in kept:
        try:
            document = json.loads(kept[_PANDAS_KEY])
            for index in document.get("index_columns", []):
                if isinstance(index, dict) and index.get("kind") == "range":
                    index.update(start=0, stop=rows, step=1)
            kept[_PANDAS_KEY] = json.dumps(document).encode()
        except (ValueError, AttributeError):
            del kept[_PANDAS_KEY]  # not pandas' document after all: drop it rather than mislead pandas
    extra = {key.encode(): value.encode() for key, value in sorted(metadata.items())}
    return schema.with_metadata({**kept, **extra})


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns worth dictionary-encoding: text and categories. For numbers zstd alone gives files as small
    (often smaller) at a third of the CPU time, which decides how fast large tables stream."""
    return [field.name for field in schema if pa.types.is_string(field.type) or pa.types.is_large_string(field.type)
            or pa.types.is_string_view(field.type) or pa.types.is_dictionary(field.type)
            or pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type)]


class _Output:
    """One Parquet file being written: filtered batches gathered into row groups of ROW_GROUP_ROWS rows."""

    def __init__(self, path: Path, schema: pa.Schema, mask: np.ndarray | None) -> None:
        self.schema, self.mask = schema, mask
        self.writer = pq.ParquetWriter(path, schema, compression="zstd", use_dictionary=dictionary_columns(schema))
        self.pending: list[pa.RecordBatch] = []
        self.pending_rows = 0

    def add(self, batch: pa.RecordBatch, start: int) -> None:
        if self.mask is not None:
            batch = batch.filter(pa.array(self.mask[start:start + batch.num_rows]))
        if batch.num_rows:
            self.pending.append(batch)
            self.pending_rows += batch.num_rows
        if self.pending_rows >= ROW_GROUP_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            group = pa.Table.from_batches(self.pending).replace_schema_metadata(self.schema.metadata)
            self.writer.write_table(group, row_group_size=self.pending_rows)
            self.pending, self.pending_rows = [], 0

    def close(self) -> None:
        self.flush()
        self.writer.close()


def write_rows(source: TableSource, outputs: list[tuple[Path, np.ndarray | None, dict[str, str]]]) -> None:
    """Write each ``(path, mask, metadata)``: the source's rows the boolean mask selects (all for None)."""
    files: list[_Output] = []
    try:
        for path, mask, metadata in outputs:
            rows = source.num_rows if mask is None else int(np.count_nonzero(mask))
            files.append(_Output(path, output_schema(source.schema, rows, metadata), mask))
        start = 0
        for batch in _read_ahead(source.batches()):
            for output in files:
                output.add(batch, start)
            start += batch.num_rows
    finally:
        for output in files:
            output.close()


def _read_ahead(batches: Iterator[pa.RecordBatch], depth: int = 2) -> Iterator[pa.RecordBatch]:
    """The batches, decoded in a second thread while the caller encodes the previous ones (Arrow releases
    the GIL in both, so a large table streams on two cores); the reader's error is re-raised here."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                while not stop.is_set():
                    try:
                        ready.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ready.put(done)
        except BaseException as error:  # handed to the consumer, which raises it in the step's thread
            ready.put(error)

    reader = threading.Thread(target=produce, name="table-read-ahead", daemon=True)
    reader.start()
    try:
        while (item := ready.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while reader.is_alive():  # unblock a producer waiting on a full queue, then let it finish
            try:
                ready.get(timeout=0.1)
            except queue.Empty:
                pass
        reader.join()
