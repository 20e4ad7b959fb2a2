"""A model registry laid out on object storage (s3:// or a local folder).

    <root>/<model>/<version>/model.skops        the model (skops)
    <root>/<model>/<version>/model_card.json    its card (features, classes, parameters, sha256...)
    <root>/<model>/<version>/metrics.json       its evaluation metrics
    <root>/<model>/<version>/<extra files>      e.g. reference_profile.json, when the caller has one
    <root>/<model>/<version>/training_data.parquet  snapshot of the labeled rows the version was built from
    <root>/<model>/<version>/entry.json         written last: the version is complete once it exists
    <root>/<model>/sha256/<sha256>.json         which version holds the model with that sha256
    <root>/<model>/production.json              the production pointer, replaced atomically

Versions are 1, 2, 3... Each is claimed with a conditional create (``If-None-Match``), so two
concurrent registrations never share a number. Registering a model whose sha256 is already in the
registry returns that version (reruns are idempotent); when two registrations of the same model
race, the first to create its sha256 index entry wins and the other removes its copy again.
The production pointer is replaced with a conditional write against the ETag that was read
(``If-Match``): a promotion decided on a stale view of production is refused, not silently
overwritten. The training-data snapshot (its entry's ``training_data``: uri, sha256, rows) is what the
next retraining reads as history, so no retraining depends on a run's scratch objects under ``runs/``.
Every promotion increments the pointer's ``generation``, so no two pointers have the
same bytes (an S3 ETag is a content hash) and a lost update would show as a missing generation.
"""
from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from . import documents, models, storage, tables
from .errors import BadInputError, ComponentError, ModelError, StorageError
from .log import get_logger
from .models import CARD_FILE, MODEL_FILE
from .outputs import json_bytes

ENTRY_FILE = "entry.json"
METRICS_FILE = "metrics.json"
CLAIM_FILE = ".claim"
POINTER_FILE = "production.json"
SHA_INDEX_DIR = "sha256"
MAX_CLAIM_TRIES = 50
TRAINING_DATA_FILE = "training_data.parquet"
RESERVED_FILES = {MODEL_FILE, CARD_FILE, METRICS_FILE, ENTRY_FILE, CLAIM_FILE, TRAINING_DATA_FILE}

log = get_logger(__name__)
T = TypeVar("T")


@dataclass
class Production:
    pointer: dict[str, Any] | None
    etag: str | None


def _labelled(method: Callable[..., T]) -> Callable[..., T]:
    """Errors of a registry method name the registry's option (``--registry-uri``) unless they name another."""
    @functools.wraps(method)
    def wrapper(self: ModelRegistry, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except ComponentError as error:
            error.about(self.label)
            raise
    return wrapper


class ModelRegistry:
    def __init__(self, root: str, model_name: str, *, label: str = "--registry-uri") -> None:
        self.label = label
        if not model_name or "/" in model_name or model_name in (".", ".."):
            raise BadInputError(f"'{model_name}' is not a valid model name", label="--model-name")
        location = storage.parse(root)
        # storage.list_uris spells local files as str(Path): normalise a local root ("./reg",
        # "file:///reg", "reg/") the same way, or listed URIs would not start with self.base.
        self.root = str(location) if isinstance(location, Path) else root.rstrip("/")
        self.model_name = model_name
        self.base = storage.join(self.root, model_name)

    def version_uri(self, version: int) -> str:
        return storage.join(self.base, str(version))

    @_labelled
    def versions(self) -> list[int]:
        """Complete versions, oldest first."""
        found = set()
        for uri in storage.list_uris(self.base):
            parts = uri[len(self.base) + 1:].split("/")
            if len(parts) == 2 and parts[1] == ENTRY_FILE and parts[0].isdigit():
                found.add(int(parts[0]))
        return sorted(found)

    @_labelled
    def entry(self, version: int) -> dict[str, Any]:
        uri = storage.join(self.version_uri(version), ENTRY_FILE)
        entry = documents.registry_entry(storage.read_bytes(uri), uri)
        if entry["version"] != version:
            raise ModelError(f"{uri}: corrupted registry entry (version: {entry['version']}, not {version})")
        return entry

    @_labelled
    def find_by_sha(self, model_sha256: str) -> int | None:
        found = storage.read_with_etag(self._sha_index_uri(model_sha256))
        if found is None:
            return None
        try:
            index = documents.validate(documents.parse_json(found[0]), {"version": documents.integer(1)},
                                       required=("version",))
        except documents.Invalid as invalid:
            raise ModelError(f"{self._sha_index_uri(model_sha256)}: corrupted registry index ({invalid})") from None
        return index["version"]

    def _sha_index_uri(self, model_sha256: str) -> str:
        return storage.join(self.base, SHA_INDEX_DIR, f"{model_sha256}.json")

    @_labelled
    def register(self, *, model: bytes, card: bytes, metrics: bytes, entry: dict[str, Any],
                 extra_files: dict[str, bytes] | None = None,
                 training_data: TrainingData | None = None) -> tuple[int, bool]:
        """Store a model version; returns (version, created). The entry file is written last."""
        extra_files = extra_files or {}
        clashing = sorted(set(extra_files) & RESERVED_FILES)
        if clashing or any("/" in name or not name for name in extra_files):
            raise ValueError(f"extra file names must be plain and not reserved: {sorted(extra_files)}")
        model_sha = storage.sha256_hex(model)
        existing = self.find_by_sha(model_sha)
        if existing is not None:
            return existing, False
        version = self._claim_version()
        uri = self.version_uri(version)
        files = {MODEL_FILE: model, CARD_FILE: card, METRICS_FILE: metrics, **extra_files}
        if training_data is not None:
            files[TRAINING_DATA_FILE] = training_data.data
            entry = {**entry, "training_data": {"uri": storage.join(uri, TRAINING_DATA_FILE),
                                                "sha256": storage.sha256_hex(training_data.data),
                                                "rows": training_data.rows, "sources": training_data.sources}}
        # The claim goes too when the registration fails: no number is left taken by a version that never was.
        written: list[str] = [storage.join(uri, CLAIM_FILE)]
        try:
            for name, data in files.items():
                storage.write_bytes(storage.join(uri, name), data)
                written.append(storage.join(uri, name))
            record = {**entry, "model": self.model_name, "version": version, "model_sha256": model_sha,
                      "model_uri": storage.join(uri, MODEL_FILE), "files": sorted(files),
                      "registered_at": _now()}
            storage.write_bytes(storage.join(uri, ENTRY_FILE), json_bytes(record))
            written.append(storage.join(uri, ENTRY_FILE))
            claimed = storage.write_bytes(self._sha_index_uri(model_sha), json_bytes({"version": version}),
                                          if_absent=True)
        except BaseException:
            _remove(reversed(written))
            raise
        if claimed:
            return version, True
        # A concurrent registration of the same model indexed its version first: keep that one.
        _remove(reversed(written))
        winner = self.find_by_sha(model_sha)
        if winner is None:
            raise StorageError(f"{self._sha_index_uri(model_sha)}: the registry index vanished while registering")
        return winner, False

    def _claim_version(self) -> int:
        existing = self.versions()
        candidate = (existing[-1] if existing else 0) + 1
        for _ in range(MAX_CLAIM_TRIES):
            claim = storage.join(self.version_uri(candidate), CLAIM_FILE)
            if storage.write_bytes(claim, json_bytes({"claimed_at": _now()}), if_absent=True):
                return candidate
            candidate += 1
        raise StorageError(f"{self.base}: could not claim a new version after {MAX_CLAIM_TRIES} tries")

    @_labelled
    def production(self) -> Production:
        found = storage.read_with_etag(storage.join(self.base, POINTER_FILE))
        if found is None:
            return Production(None, None)
        data, etag = found
        return Production(documents.production_pointer(data, storage.join(self.base, POINTER_FILE)), etag)

    @_labelled
    def promote(self, version: int, *, reason: str, expected: Production) -> bool:
        """Point production at ``version`` if production is still what ``expected`` saw.

        Returns False (and changes nothing) when another promotion happened in between.
        """
        entry = self.entry(version)
        previous = expected.pointer["version"] if expected.pointer else None
        generation = int(expected.pointer.get("generation", 0)) + 1 if expected.pointer else 1
        pointer = {"model": self.model_name, "version": version, "version_uri": self.version_uri(version),
                   "model_uri": entry["model_uri"], "model_sha256": entry["model_sha256"],
                   "metrics": entry.get("metrics", {}), "previous_version": previous,
                   "generation": generation, "reason": reason, "promoted_at": _now()}
        target = storage.join(self.base, POINTER_FILE)
        if expected.etag is None:
            return storage.write_bytes(target, json_bytes(pointer), if_absent=True)
        return storage.write_bytes(target, json_bytes(pointer), if_match=expected.etag)

    @_labelled
    def training_data(self, version: int) -> tuple[str, str]:
        """(uri, sha256) of the version's training-data snapshot; refused when it has none or points elsewhere."""
        recorded = self.entry(version).get("training_data")
        if recorded is None:
            raise BadInputError(f"{self.version_uri(version)}: version {version} has no training-data snapshot "
                                "(registered without --training-data-uri)")
        expected = storage.join(self.version_uri(version), TRAINING_DATA_FILE)
        if recorded["uri"] != expected:
            raise ModelError(f"{self.version_uri(version)}: corrupted registry entry (training_data uri "
                             f"{recorded['uri']!r}, not {expected!r})")
        return recorded["uri"], recorded["sha256"]

    @_labelled
    def resolve_model_uri(self, reference: str) -> str:
        """``production`` or a version number to the model URI in this registry."""
        if reference == "production":
            pointer = self.production().pointer
            if pointer is None:
                raise BadInputError(f"{self.base}: no production model yet")
            return pointer["model_uri"]
        if reference.isdigit() and int(reference) in self.versions():
            return self.entry(int(reference))["model_uri"]
        raise BadInputError(f"{self.base}: no model version '{reference}'", label="--model-ref")

    @_labelled
    def monitoring_references(self) -> dict[str, str]:
        """What an unlabeled check of the production model needs: its model, its drift reference profile and a
        labeled table it never trained on (the copy of its test split in the version, which deploy registers,
        else its comparison holdout or recorded test split) to calibrate estimates.
        All empty when there is no production model yet (the batches can still be claimed)."""
        pointer = self.production().pointer
        if pointer is None:
            return {"model_uri": "", "reference_profile_uri": "", "calibration_uri": ""}
        version = int(pointer["version"])
        entry = self.entry(version)
        test_data, comparison = entry.get("test_data") or {}, entry.get("comparison") or {}
        held_out = (comparison.get("data") if isinstance(comparison, dict) else None) or test_data
        for record in (test_data, held_out):
            if not isinstance(record, dict) or not all(isinstance(record.get(key, ""), str)
                                                       for key in ("uri", "snapshot")):
                raise ModelError(f"{self.version_uri(version)}: corrupted registry entry (held-out data {record!r})")
        snapshot = test_data.get("snapshot", "")
        if snapshot and (snapshot in RESERVED_FILES or "/" in snapshot):
            raise ModelError(f"{self.version_uri(version)}: corrupted registry entry (test data copy {snapshot!r})")
        model_uri = pointer["model_uri"]
        profile = models.profile_uri_for(model_uri)
        # The test split's copy in the version first: the recorded tables may have lived in a removed run root.
        calibration = storage.join(self.version_uri(version), snapshot) if snapshot else held_out.get("uri") or ""
        return {"model_uri": model_uri, "reference_profile_uri": profile if storage.exists(profile) else "",
                "calibration_uri": calibration}


@dataclass
class TrainingData:
    """A training-data snapshot to register: Parquet bytes, their row count and the tables they came from."""
    data: bytes
    rows: int
    sources: list[dict[str, Any]]


def snapshot(parts: list[tuple[pd.DataFrame, dict[str, Any]]], *, label: str) -> TrainingData:
    """One table of ``parts`` (each a table and its lineage record), in order, with the first table's columns.

    A later table must hold exactly the first one's columns (the comparison holdout of the same retraining).
    """
    first = parts[0][0]
    for table, record in parts[1:]:
        if set(table.columns) != set(first.columns):
            raise BadInputError(f"{record['uri']}: its columns differ from the training table's, so the two "
                                "cannot form one training-data snapshot", label=label)
    rows = pd.concat([table[list(first.columns)] for table, _ in parts], ignore_index=True)
    sources = [{"uri": record["uri"], "sha256": record["sha256"], "rows": len(table)} for table, record in parts]
    return TrainingData(tables.table_bytes(rows), len(rows), sources)


def _remove(uris: Any) -> None:
    for uri in uris:
        try:
            storage.delete(uri)
        except Exception as error:  # best effort (the registration's own error is what the step reports)
            log.debug("could not remove %s: %s", uri, error)


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
