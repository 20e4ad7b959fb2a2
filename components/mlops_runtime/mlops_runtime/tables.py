"""Tables in and out: CSV or Parquet by URI, written as Parquet; validation of features and targets.

CSV is parsed by pandas (``read_csv`` with one dtype per column): numbers, text, true/false, empty
cells as missing values; ISO 8601 dates stay text (the model signature recognises them as datetimes).
An integer beyond the 64-bit range (10**30) has no faithful Parquet or numpy type: it is refused as bad
input, naming the column (written as a float, ``1e30``, it is read as one).
"""
from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import storage
from .errors import BadInputError

if TYPE_CHECKING:
    import pyarrow as pa

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
    check_integer_range(table, uri=uri, label=label)
    return table


def check_integer_range(table: pd.DataFrame, *, uri: str, label: str | None = None) -> None:
    """Refuse object columns holding Python integers beyond 64 bits (what read_csv makes of 10**30)."""
    for name in table.columns:
        column = table[name]
        if column.dtype != object or pd.api.types.infer_dtype(column, skipna=True) not in (
                "integer", "mixed-integer", "mixed-integer-float"):
            continue
        huge = next((v for v in column if isinstance(v, int) and not isinstance(v, bool)
                     and not -2**63 <= v < 2**64), None)
        if huge is not None:
            shown = str(huge) if len(str(huge)) <= 40 else f"{str(huge)[:20]}... ({len(str(huge))} digits)"
            raise BadInputError(f"{uri}: column '{name}' holds an integer beyond the 64-bit range ({shown}); "
                                "write such values as floats (1e30) or as text", label=label)


def arrow_table(table: pd.DataFrame, *, uri: str = "", label: str | None = None) -> pa.Table:
    """The pandas table as Arrow (for Parquet), refused as bad input when a column has no Arrow type."""
    import pyarrow as pa

    try:
        return pa.Table.from_pandas(table, preserve_index=False)
    except (pa.ArrowException, OverflowError, TypeError, ValueError) as error:
        where = f"{uri}: " if uri else ""
        text = " ".join(str(error).split()) or type(error).__name__
        raise BadInputError(f"{where}a column cannot be stored as Parquet ({text})", label=label) from None


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


def features_and_target(table: pd.DataFrame, target: str, *, label: str | None = None, uri: str = "",
                        target_label: str | None = None) -> tuple[pd.DataFrame, pd.Series, int]:
    """Features of any type (strings, booleans, datetimes, missing values) and the target, rows whose
    target is missing left out; also returns how many were left out.

    Only the target is validated: it must exist and have at least one value, and a numeric target must
    be finite. Feature types are the model signature's business (:mod:`mlops_runtime.signature`).
    """
    where = f"{uri}: " if uri else ""
    if target not in table.columns:
        columns = ", ".join(map(str, table.columns[:20]))
        raise BadInputError(f"{where}target column '{target}' not found (columns: {columns})",
                            label=target_label or label)
    features = table.drop(columns=[target])
    if features.shape[1] == 0:
        raise BadInputError(f"{where}the table has no feature columns besides '{target}'", label=label)
    values = table[target]
    check_target_values(values, label=label, target_label=target_label, uri=uri)
    present = values.notna()
    n_missing = int(len(values) - present.sum())
    if n_missing:
        return features[present.to_numpy()], values[present.to_numpy()], n_missing
    return features, values, 0


def check_target_values(values: pd.Series, *, label: str | None = None, target_label: str | None = None,
                        uri: str = "") -> None:
    """A target needs at least one value; a numeric one must be finite where present."""
    where = f"{uri}: " if uri else ""
    present = int(values.notna().sum())
    if present == 0:
        raise BadInputError(f"{where}target column '{values.name}' has no values (all {len(values)} rows are "
                            "missing)", label=target_label or label)
    if pd.api.types.is_float_dtype(values.dtype) and np.isinf(values.to_numpy(dtype=float, na_value=np.nan)).any():
        raise BadInputError(f"{where}target column '{values.name}' has infinite values", label=label)


def split_features_target(
    table: pd.DataFrame, target: str, *, label: str | None = None, uri: str = ""
) -> tuple[pd.DataFrame, pd.Series]:
    """Split a table into numeric, finite features and its target column (for models of numeric inputs
    only; also available as :func:`split_numeric_features_target`). Mixed tables: :func:`features_and_target`."""
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


split_numeric_features_target = split_features_target
