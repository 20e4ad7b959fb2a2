"""Append-only journals on object storage: one JSON object per event, never read, modified and rewritten.

    <folder>/<UTC time to the microsecond>Z-<random id>.json

Names sort by time. Each object is created with a conditional write (S3 ``If-None-Match: *``, an
exclusive link locally), so concurrent writers -- two monitoring runs checking the same model --
never overwrite each other, and no writer needs a lock or a read of what is there.
"""
from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from . import storage
from .errors import BadInputError, StorageError
from .log import get_logger
from .outputs import Publication, json_bytes

log = get_logger(__name__)


def record_name(at: dt.datetime) -> str:
    return f"{at.astimezone(dt.UTC).strftime('%Y%m%dT%H%M%S%f')}Z-{uuid.uuid4().hex[:12]}.json"


def append(out: Publication, folder: str, document: dict[str, Any], *, at: dt.datetime, label: str) -> str:
    """Create a new record in ``folder`` as part of ``out`` (removed again if the step fails later)."""
    uri = storage.join(folder, record_name(at))
    data = json_bytes(document)
    if not storage.write_bytes(uri, data, label=label, if_absent=True):  # 48 random bits: never in practice
        raise StorageError(f"{uri}: a record of that name already exists", label=label)
    out.written.append(uri)
    out.objects.append({"name": uri, "uri": uri, "sha256": storage.sha256_hex(data), "bytes": len(data)})
    return uri


def read_recent(folder: str, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` records, oldest first; records that vanish or do not parse are skipped."""
    records = []
    for uri in [u for u in storage.list_uris(folder) if u.endswith(".json")][-limit:]:
        try:
            records.append(json.loads(storage.read_bytes(uri)))
        except (ValueError, BadInputError) as error:
            log.warning("skipping journal record %s: %s", uri, error)
    return records
