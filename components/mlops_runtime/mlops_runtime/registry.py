"""A model registry laid out on object storage (s3:// or a local folder).

    <root>/<model>/<version>/model.skops        the model (skops)
    <root>/<model>/<version>/model_card.json    its card (features, classes, parameters, sha256...)
    <root>/<model>/<version>/metrics.json       its evaluation metrics
    <root>/<model>/<version>/entry.json         written last: the version is complete once it exists
    <root>/<model>/production.json              the production pointer, replaced atomically

Versions are 1, 2, 3... Each is claimed with a conditional create (``If-None-Match``), so two
concurrent registrations never share a number; registering a model whose sha256 is already in the
registry returns that version (reruns are idempotent). The production pointer is replaced with a
conditional write against the ETag that was read (``If-Match``): a promotion decided on a stale
view of production is refused, not silently overwritten.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from . import storage
from .errors import BadInputError, ModelError, StorageError
from .models import CARD_FILE, MODEL_FILE
from .outputs import json_bytes

ENTRY_FILE = "entry.json"
CLAIM_FILE = ".claim"
POINTER_FILE = "production.json"
MAX_CLAIM_TRIES = 50


@dataclass
class Production:
    pointer: dict[str, Any] | None
    etag: str | None


class ModelRegistry:
    def __init__(self, root: str, model_name: str) -> None:
        if not model_name or "/" in model_name:
            raise BadInputError(f"'{model_name}' is not a valid model name", label="--model-name")
        self.root = root.rstrip("/")
        self.model_name = model_name
        self.base = storage.join(self.root, model_name)

    def version_uri(self, version: int) -> str:
        return storage.join(self.base, str(version))

    def versions(self) -> list[int]:
        """Complete versions, oldest first."""
        found = set()
        for uri in storage.list_uris(self.base):
            parts = uri[len(self.base) + 1:].split("/")
            if len(parts) == 2 and parts[1] == ENTRY_FILE and parts[0].isdigit():
                found.add(int(parts[0]))
        return sorted(found)

    def entry(self, version: int) -> dict[str, Any]:
        return json.loads(storage.read_bytes(storage.join(self.version_uri(version), ENTRY_FILE)))

    def find_by_sha(self, model_sha256: str) -> int | None:
        for version in self.versions():
            if self.entry(version).get("model_sha256") == model_sha256:
                return version
        return None

    def register(self, *, model: bytes, card: bytes, metrics: bytes, entry: dict[str, Any]) -> tuple[int, bool]:
        """Store a model version; returns (version, created). The entry file is written last."""
        model_sha = storage.sha256_hex(model)
        existing = self.find_by_sha(model_sha)
        if existing is not None:
            return existing, False
        version = self._claim_version()
        uri = self.version_uri(version)
        written: list[str] = []
        try:
            for name, data in ((MODEL_FILE, model), (CARD_FILE, card), ("metrics.json", metrics)):
                storage.write_bytes(storage.join(uri, name), data)
                written.append(storage.join(uri, name))
            record = {**entry, "model": self.model_name, "version": version, "model_sha256": model_sha,
                      "model_uri": storage.join(uri, MODEL_FILE), "registered_at": _now()}
            storage.write_bytes(storage.join(uri, ENTRY_FILE), json_bytes(record))
        except BaseException:
            for item in written:
                storage.delete(item)
            raise
        return version, True

    def _claim_version(self) -> int:
        existing = self.versions()
        candidate = (existing[-1] if existing else 0) + 1
        for _ in range(MAX_CLAIM_TRIES):
            claim = storage.join(self.version_uri(candidate), CLAIM_FILE)
            if storage.write_bytes(claim, json_bytes({"claimed_at": _now()}), if_absent=True):
                return candidate
            candidate += 1
        raise StorageError(f"{self.base}: could not claim a new version after {MAX_CLAIM_TRIES} tries")

    def production(self) -> Production:
        found = storage.read_with_etag(storage.join(self.base, POINTER_FILE))
        if found is None:
            return Production(None, None)
        data, etag = found
        try:
            return Production(json.loads(data), etag)
        except ValueError:
            raise ModelError(f"{storage.join(self.base, POINTER_FILE)}: corrupted production pointer") from None

    def promote(self, version: int, *, reason: str, expected: Production) -> bool:
        """Point production at ``version`` if production is still what ``expected`` saw.

        Returns False (and changes nothing) when another promotion happened in between.
        """
        entry = self.entry(version)
        previous = expected.pointer["version"] if expected.pointer else None
        pointer = {"model": self.model_name, "version": version, "version_uri": self.version_uri(version),
                   "model_uri": entry["model_uri"], "model_sha256": entry["model_sha256"],
                   "metrics": entry.get("metrics", {}), "previous_version": previous,
                   "reason": reason, "promoted_at": _now()}
        target = storage.join(self.base, POINTER_FILE)
        if expected.etag is None:
            return storage.write_bytes(target, json_bytes(pointer), if_absent=True)
        return storage.write_bytes(target, json_bytes(pointer), if_match=expected.etag)

    def resolve_model_uri(self, reference: str) -> str:
        """``production`` or a version number to the model URI in this registry."""
        if reference == "production":
            pointer = self.production().pointer
            if pointer is None:
                raise BadInputError(f"{self.base}: no production model yet")
            return pointer["model_uri"]
        if reference.isdigit() and int(reference) in self.versions():
            return self.entry(int(reference))["model_uri"]
        raise BadInputError(f"{self.base}: no model version '{reference}'")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
