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


def read_recent(folder: str, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` records, oldest first; records that vanish or do not parse are skipped."""
    records = []
    for uri in [u for u in storage.list_uris(folder) if u.endswith(".json")][-limit:]:
        try:
            records.append(json.loads(storage.read_bytes(uri)))
        except (ValueError, BadInputError) as error:
            log.warning("skipping journal record %s: %s", uri, error)
    return records
