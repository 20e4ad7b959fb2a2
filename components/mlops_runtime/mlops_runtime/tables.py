"""Tables in and out: CSV or Parquet by URI, written as Parquet; validation of features and targets."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd

from . import storage
from .errors import BadInputError

PARQUET_MAGIC = b"PAR1"


def read_table(uri: str, *, label: str | None = None) -> pd.DataFrame:
    """Read a Parquet or CSV table (chosen by the content, then by the extension)."""
    return parse_table(storage.read_bytes(uri, label=label), uri, label=label)


def parse_table(data: bytes, uri: str, *, label: str | None = None) -> pd.DataFrame:
    """Parse bytes already read from ``uri`` as :func:`read_table` does (for steps that also hash them)."""
    try:
        if data[:4] == PARQUET_MAGIC or uri.lower().endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq

            table = pq.read_table(io.BytesIO(data)).to_pandas()
        else:
            # low_memory=False: one dtype per column from the whole file, not per chunk (mixed int/str
            # columns that Parquet cannot store, and a DtypeWarning line on stderr)
            table = pd.read_csv(io.BytesIO(data), low_memory=False)
    except Exception as error:  # pandas and pyarrow raise many types for malformed files
        kind = "Parquet" if data[:4] == PARQUET_MAGIC or uri.lower().endswith((".parquet", ".pq")) else "CSV"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BadInputError(f"{uri}: not a readable {kind} table ({first_line})", label=label) from None
    if table.shape[0] == 0 or table.shape[1] == 0:
        raise BadInputError(f"{uri}: the table is empty", label=label)
    return table


def table_bytes(table: pd.DataFrame, metadata: dict[str, str] | None = None) -> bytes:
    """Serialise a table as Parquet deterministically (same table and metadata, same bytes).

    ``metadata`` is added to the file's key-value metadata (beside pandas' own), e.g. ``mlops.lineage``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = pa.Table.from_pandas(table, preserve_index=False)
    if metadata:
        extra = {str(key).encode(): str(value).encode() for key, value in sorted(metadata.items())}
        arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), **extra})
    sink = io.BytesIO()
    pq.write_table(arrow, sink, compression="zstd")
    return sink.getvalue()


def table_metadata(data: bytes) -> dict[str, str]:
    """The key-value metadata of Parquet bytes (what :func:`table_bytes` wrote), pandas' own excluded."""
    import pyarrow.parquet as pq

    metadata = pq.read_schema(io.BytesIO(data)).metadata or {}
    return {key.decode(): value.decode() for key, value in metadata.items() if key != b"pandas"}


def split_features_target(
    table: pd.DataFrame, target: str, *, label: str | None = None, uri: str = ""
) -> tuple[pd.DataFrame, pd.Series]:
    """Split a table into numeric, finite features and its target column."""
    where = f"{uri}: " if uri else ""
    if target not in table.columns:
        columns = ", ".join(map(str, table.columns[:20]))
        raise BadInputError(f"{where}target column '{target}' not found (columns: {columns})", label=label)
    features = table.drop(columns=[target])
    if features.shape[1] == 0:
        raise BadInputError(f"{where}the table has no feature columns besides '{target}'", label=label)
    check_numeric_features(features, label=label, uri=uri)
    if table[target].isna().any():
        raise BadInputError(f"{where}target column '{target}' has missing values", label=label)
    return features, table[target]


def check_numeric_features(features: pd.DataFrame, *, label: str | None = None, uri: str = "") -> None:
    where = f"{uri}: " if uri else ""
    non_numeric = [str(c) for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])
                   or pd.api.types.is_bool_dtype(features[c])]
    if non_numeric:
        raise BadInputError(f"{where}non-numeric feature column(s): {', '.join(non_numeric[:10])}", label=label)
    values = features.to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        columns = [str(features.columns[i]) for i in np.flatnonzero(bad.any(axis=0))[:10]]
        raise BadInputError(f"{where}NaN or infinite values in feature column(s): {', '.join(columns)}", label=label)
