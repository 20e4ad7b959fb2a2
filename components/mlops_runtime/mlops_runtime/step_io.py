"""A step's inputs and outputs: where its objects go, input tables with their lineage, its final stdout line."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pandas as pd

from . import storage, tables
from .errors import BadInputError, ComponentError
from .lineage import input_record
from .outputs import MANIFEST_FILE

LINEAGE_KEY = "mlops.lineage"


def output_uri(output_dir: str, name: str, *, label: str = "--output-dir") -> str:
    """``<output_dir>/<name>``, refused up front (before any work) when the URI cannot be written to."""
    uri = storage.join(output_dir, name)
    try:
        storage.parse(uri)
    except BadInputError as error:
        raise error.about(label) from None
    return uri


def resolve_in_folder(uri: str, file_name: str, *, label: str) -> str:
    """The object an input option expects: ``<uri>/<file_name>`` when ``uri`` names a folder a step published
    (it holds ``_manifest.json``: a KFP artifact such as split's ``splits``), otherwise ``uri`` itself."""
    if not uri:
        return uri
    try:
        location = storage.parse(uri)
    except ComponentError as error:
        raise error.about(label) from None
    if isinstance(location, Path):
        try:
            if not location.is_dir():
                return uri  # a file, or unreadable: reading it reports that
            published = (location / MANIFEST_FILE).is_file()
        except OSError:
            return uri
        if not published:
            raise BadInputError(f"{uri}: a folder without {MANIFEST_FILE} (the step that writes it did not finish)",
                                label=label)
        return storage.join(uri, file_name)
    try:
        published = storage.exists(storage.join(uri, MANIFEST_FILE))
    except ComponentError as error:
        raise error.about(label) from None
    return storage.join(uri, file_name) if published else uri


def read_input_table(uri: str, *, label: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A table and the lineage record of the exact bytes it was parsed from."""
    data = storage.read_bytes(uri, label=label)
    return tables.parse_table(data, uri, label=label), input_record(label, uri, data)


def require_column(table: pd.DataFrame, column: str, *, uri: str, label: str) -> None:
    if column not in table.columns:
        columns = ", ".join(map(str, table.columns[:20]))
        more = f" and {len(table.columns) - 20} more" if len(table.columns) > 20 else ""
        raise BadInputError(f"column '{column}' not found in {uri} (columns: {columns}{more})", label=label)


def describe_values(values: list[Any], limit: int = 5) -> str:
    """``'a', 1 and 3 more``: values (numpy scalars as plain Python) for a one-line message."""
    shown = ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def class_counts(target: pd.Series, *, uri: str, label: str) -> pd.Series:
    """Rows per class of a classification target, refused unless there are at least two classes."""
    counts = target.value_counts(sort=False)
    if len(counts) < 2:
        raise BadInputError(f"{uri}: target column '{target.name}' has a single class "
                            f"({describe_values(list(counts.index))}); a classifier needs at least two", label=label)
    return counts


def lineage_metadata(record: dict[str, Any]) -> dict[str, str]:
    """Parquet key-value metadata that carries a lineage record."""
    return {LINEAGE_KEY: json.dumps(record, sort_keys=True, separators=(",", ":"))}


def read_lineage(parquet: bytes) -> dict[str, Any] | None:
    """The lineage record a step stored in a Parquet file, or None."""
    raw = tables.table_metadata(parquet).get(LINEAGE_KEY)
    return json.loads(raw) if raw is not None else None


def print_outputs(values: dict[str, Any]) -> None:
    """The step's last stdout line: its outputs as one JSON object (for ``docker run`` users)."""
    click.echo(json.dumps(values, sort_keys=True))


def uri_list(text: str, *, label: str, limit: int) -> list[str]:
    """A JSON list of at most ``limit`` non-empty URIs (a KFP JsonArray input); empty text is the empty list."""
    try:
        value = json.loads(text) if text.strip() else []
    except ValueError:
        raise BadInputError("not a JSON list of URIs", label=label) from None
    if not isinstance(value, list) or not all(isinstance(uri, str) and uri for uri in value):
        raise BadInputError("not a JSON list of URIs", label=label)
    if len(value) > limit:
        raise BadInputError(f"{len(value)} URIs; at most {limit}", label=label)
    return value
