"""The monitoring watermark: which production batches have been checked, so every batch is checked once.

    <registry>/<model>/watermark.json

One JSON document per model, replaced only with a conditional write against the version that was
read (``If-Match``; ``If-None-Match`` for the first one), so concurrent monitoring runs never both
take a batch. Each batch it lists is ``claimed`` by one run (with a lease) or ``done``:

* :meth:`Watermark.claim` takes the oldest unprocessed batches, in URI order, up to a bound. A batch
  claimed by another run is skipped while that run's lease lasts and taken over once it has expired
  (the run died). Claiming again with the same run id returns the same batches (a retried task).
* :meth:`Watermark.complete` marks a run's batches done once they have been checked.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from . import storage
from .errors import BadInputError, StorageError
from .log import get_logger
from .outputs import json_bytes

WATERMARK_FILE = "watermark.json"
FORMAT = "mlops-components/watermark/v1"
MAX_WRITE_ATTEMPTS = 20
STATES = ("claimed", "done")

log = get_logger(__name__)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _time(value: Any, where: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise BadInputError(f"{where}: not a valid watermark (bad time {value!r})") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def validate(document: Any, where: str) -> dict[str, Any]:
    """The watermark document, refused with one line when it is not one (a tampered file is bad input)."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise BadInputError(f"{where}: not a watermark document (format {FORMAT!r} expected)")
    batches = document.get("batches")
    generation = document.get("generation")
    if not isinstance(batches, dict) or isinstance(generation, bool) or not isinstance(generation, int) \
            or generation < 1:
        raise BadInputError(f"{where}: not a valid watermark (batches or generation malformed)")
    for uri, state in batches.items():
        if not isinstance(state, dict) or state.get("state") not in STATES or not isinstance(state.get("run_id"), str):
            raise BadInputError(f"{where}: not a valid watermark (entry for {uri} malformed)")
        _time(state.get("at"), where)
    return document


@dataclass(frozen=True)
class Claim:
    batches: list[str]
    pending: int  # unprocessed batches left for later runs (beyond the bound, or leased by others)


class Watermark:
    def __init__(self, registry_uri: str, model_name: str) -> None:
        from .registry import ModelRegistry

        self.uri = storage.join(ModelRegistry(registry_uri, model_name).base, WATERMARK_FILE)

    def read(self) -> tuple[dict[str, Any], str | None]:
        found = storage.read_with_etag(self.uri)
        if found is None:
            return {"format": FORMAT, "generation": 0, "batches": {}}, None
        data, etag = found
        try:
            document = json.loads(data)
        except ValueError:
            raise BadInputError(f"{self.uri}: not valid JSON") from None
        return validate(document, self.uri), etag

    def _update(self, change: Any) -> Any:
        """Apply ``change(document) -> (result, changed)``; write it back conditionally, retrying on a race."""
        for _ in range(MAX_WRITE_ATTEMPTS):
            document, etag = self.read()
            result, changed = change(document)
            if not changed:
                return result
            document["generation"] += 1
            data = json_bytes(document)
            written = storage.write_bytes(self.uri, data, if_absent=True) if etag is None else \
                storage.write_bytes(self.uri, data, if_match=etag)
            if written:
                return result
            log.info("the watermark changed while updating it; reading it again")
        raise StorageError(f"{self.uri}: changed {MAX_WRITE_ATTEMPTS} times while updating it; run the step again")

    def claim(self, candidates: list[str], *, run_id: str, limit: int, lease: dt.timedelta,
              now: dt.datetime | None = None) -> Claim:
        """Claim for ``run_id`` the oldest unprocessed of ``candidates`` (at most ``limit``)."""
        at = now or _now()

        def change(document: dict[str, Any]) -> tuple[Claim, bool]:
            batches = document["batches"]
            mine = [uri for uri in sorted(candidates)
                    if batches.get(uri, {}).get("state") == "claimed" and batches[uri]["run_id"] == run_id]
            taken: list[str] = []
            pending = 0
            for uri in sorted(candidates):
                state = batches.get(uri)
                if state is not None and state["state"] == "done":
                    continue
                free = state is None or state["run_id"] == run_id or \
                    _time(state["at"], self.uri) + dt.timedelta(seconds=state.get("lease_seconds", 0)) <= at
                if free and len(taken) < max(limit, len(mine)):
                    taken.append(uri)
                else:
                    pending += 1
            for uri in taken:
                previous = batches.get(uri)
                if previous is not None and previous["run_id"] != run_id:
                    log.info("taking over %s from run %s (its lease expired)", uri, previous["run_id"])
                batches[uri] = {"state": "claimed", "run_id": run_id, "at": at.isoformat(),
                                "lease_seconds": int(lease.total_seconds())}
            return Claim(taken, pending), bool(taken)

        return self._update(change)

    def complete(self, batch_uris: list[str], *, run_id: str, now: dt.datetime | None = None) -> int:
        """Mark ``run_id``'s claimed batches done; returns how many changed (0 on a repeated call)."""
        at = now or _now()

        def change(document: dict[str, Any]) -> tuple[int, bool]:
            batches = document["batches"]
            changed = 0
            for uri in batch_uris:
                state = batches.get(uri)
                if state is None:
                    raise BadInputError(f"{uri}: this batch was never claimed in {self.uri}", label="--batch-uris")
                if state["state"] == "done":
                    continue
                if state["run_id"] != run_id:
                    raise BadInputError(f"{uri}: claimed by run {state['run_id']}, not {run_id}",
                                        label="--batch-uris")
                batches[uri] = {"state": "done", "run_id": run_id, "at": at.isoformat()}
                changed += 1
            return changed, changed > 0

        return self._update(change)


def list_batches(prefix: str, file_name: str) -> list[str]:
    """Every object under ``prefix`` named ``file_name`` (``*.parquet``: any Parquet file), in URI order."""
    def wanted(uri: str) -> bool:
        name = uri.rsplit("/", 1)[-1]
        return name.endswith(".parquet") if file_name == "*.parquet" else name == file_name

    return sorted(uri for uri in storage.list_uris(prefix) if wanted(uri))
