"""Append-only journals on object storage: one JSON object per event, never read, modified and rewritten.

    <folder>/<UTC time to the microsecond>Z-<random id>.json

Names sort by time. Each object is created with a conditional write (S3 ``If-None-Match: *``, an
exclusive link locally), so concurrent writers -- two monitoring runs checking the same model --
never overwrite each other, and no writer needs a lock or a read of what is there.
"""
from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

from . import documents, storage
from .errors import BadInputError
from .log import get_logger
from .outputs import Publication, json_bytes

log = get_logger(__name__)


def record_name(at: dt.datetime) -> str:
    return f"{at.astimezone(dt.UTC).strftime('%Y%m%dT%H%M%S%f')}Z-{uuid.uuid4().hex[:12]}.json"


def append(out: Publication, folder: str, document: dict[str, Any], *, at: dt.datetime, label: str) -> str:
    """Create a new record in ``folder`` as part of ``out`` (removed again if the step fails later)."""
    # The name carries 48 random bits: a clash never happens in practice, and is refused if it does.
    return out.put(storage.join(folder, record_name(at)), json_bytes(document), label=label, if_absent=True)


def read_recent(folder: str, limit: int, *, parse: Callable[..., dict[str, Any]] | None = None,
                label: str | None = None) -> list[dict[str, Any]]:
    """The newest ``limit`` records, oldest first. A record that vanished since the listing is skipped;
    one that does not parse (``parse(data, uri, label=label)``, a :mod:`mlops_runtime.documents` reader) is refused."""
    records = []
    for uri in [u for u in storage.list_uris(folder) if u.endswith(".json")][-limit:]:
        try:
            data = storage.read_bytes(uri, label=label)
        except BadInputError as error:
            log.debug("journal record %s vanished: %s", uri, error)
            continue
        if parse is not None:
            records.append(parse(data, uri, label=label))
            continue
        try:
            records.append(documents.parse_json(data))
        except documents.Invalid as invalid:
            raise BadInputError(f"{uri}: not a valid journal record ({invalid})", label=label) from None
    return records
