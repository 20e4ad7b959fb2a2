"""Publishing outputs: all of a step's objects or none of them, then its KFP output parameters.

A step's output folder is complete only when its manifest, ``<output_dir>/_manifest.json``, exists.
``publication(output_dir)`` removes an older manifest first, writes the objects, and writes the manifest
(each object's name, URI, sha256 and size, plus the step's lineage) last. A failure or SIGTERM removes
what was written; after a SIGKILL, which nothing can intercept, objects may remain but no manifest does,
so readers that follow the rule (:func:`read_manifest`, :func:`is_complete`, :func:`verify_published`)
never take a partial folder for a result.
"""
from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import file_transfer, storage
from .errors import BadInputError, ComponentError, StorageError
from .log import get_logger

log = get_logger(__name__)

MANIFEST_FILE = "_manifest.json"
MANIFEST_FORMAT = "mlops-components/manifest/v1"


class Publication:
    """Objects written by one step; if the step fails before it completes, they are deleted again."""

    def __init__(self, output_dir: str | None = None, *, lineage: dict[str, Any] | None = None,
                 label: str = "--output-dir") -> None:
        self.output_dir = output_dir.rstrip("/") if output_dir else None
        self.lineage = lineage
        self.label = label
        self.written: list[str] = []
        self.objects: list[dict[str, Any]] = []

    def put(self, uri: str, data: bytes, *, label: str | None = None, if_absent: bool = False) -> str:
        """Write one object as part of this publication; ``if_absent`` refuses to replace an existing one."""
        self._write(uri, data, label=label, if_absent=if_absent)
        self.objects.append({"name": self._name(uri), "uri": uri, "sha256": storage.sha256_hex(data),
                             "bytes": len(data)})
        return uri

    def put_file(self, uri: str, path: Path, *, label: str | None = None) -> str:
        """Write a local file as one object of this publication, streaming it (for tables of any size)."""
        from concurrent.futures import ThreadPoolExecutor

        self.written.append(uri)  # recorded first, as in _write
        with ThreadPoolExecutor(max_workers=1) as hashing:  # hashed on the second core while it uploads
            digest = hashing.submit(file_transfer.file_sha256, path)
            try:
                file_transfer.upload_file(uri, path, label=label)
            except ComponentError as error:
                if _never_stored(error):
                    self.written.pop()
                raise
            self.objects.append({"name": self._name(uri), "uri": uri, "sha256": digest.result(),
                                 "bytes": path.stat().st_size})
        return uri

    def put_json(self, uri: str, document: Any, *, label: str | None = None) -> str:
        return self.put(uri, json_bytes(document), label=label)

    def begin(self) -> None:
        """Invalidate the folder: remove a manifest left by an earlier run before writing anything."""
        if self.output_dir is None:
            return
        uri = manifest_uri(self.output_dir)
        try:
            storage.delete(uri)
        except ComponentError as error:
            raise error.about(self.label) from None
        except OSError as error:
            raise StorageError(f"{uri}: cannot remove the previous manifest ({error.strerror})",
                               label=self.label) from None

    def commit(self) -> None:
        """Write the manifest, last: from now on the folder is complete."""
        if self.output_dir is None:
            return
        document = {"format": MANIFEST_FORMAT, "output_dir": self.output_dir, "objects": self.objects,
                    "lineage": self.lineage}
        self._write(manifest_uri(self.output_dir), json_bytes(document), label=self.label)

    def _write(self, uri: str, data: bytes, *, label: str | None, if_absent: bool = False) -> None:
        # Recorded before writing: a write interrupted after the server stored the object (SIGTERM, or a
        # timeout while waiting for the answer) must be rolled back too. Only a write the store refused or
        # never received is forgotten, so an unreachable store does not cost a second retry window.
        self.written.append(uri)
        try:
            created = storage.write_bytes(uri, data, label=label, if_absent=if_absent)
        except ComponentError as error:
            if _never_stored(error):
                self.written.pop()
            raise
        if not created:  # another writer's object: never ours to roll back
            self.written.pop()
            raise StorageError(f"{uri}: an object of that name already exists", label=label)

    def rollback(self) -> None:
        with _sigterm_ignored():  # a second SIGTERM must not cut the clean-up short
            for uri in reversed(self.written):
                try:
                    storage.delete(uri)
                except Exception as error:  # best effort: report, keep deleting the rest
                    log.warning("could not remove partial output %s: %s", uri, error)
        self.written.clear()
        self.objects.clear()

    def _name(self, uri: str) -> str:
        if self.output_dir and uri.startswith(self.output_dir + "/"):
            return uri[len(self.output_dir) + 1:]
        return uri


@contextmanager
def publication(output_dir: str | None = None, *, lineage: dict[str, Any] | None = None,
                label: str = "--output-dir") -> Iterator[Publication]:
    """``with publication(output_dir, lineage=record) as out: out.put(...)``.

    An exception inside removes what was put. With ``output_dir`` the folder's manifest is removed
    first and written last (see the module docstring); without it (older callers) no manifest is kept.
    """
    published = Publication(output_dir, lineage=lineage, label=label)
    try:
        published.begin()
        yield published
        published.commit()
    except BaseException:
        published.rollback()
        raise


def _never_stored(error: ComponentError) -> bool:
    from botocore.exceptions import ClientError, EndpointConnectionError

    cause = error.__cause__  # None for local writes (atomic: a temporary file renamed into place)
    if isinstance(cause, ClientError):  # a 4xx refusal; a 5xx may come after the backend stored it
        return int(cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 500) < 500
    return cause is None or isinstance(cause, EndpointConnectionError)


@contextmanager
def _sigterm_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def manifest_uri(output_dir: str) -> str:
    return storage.join(output_dir, MANIFEST_FILE)


def read_manifest(output_dir: str, *, label: str | None = None) -> dict[str, Any] | None:
    """The manifest of a step's output folder, or None while the folder is incomplete (or absent)."""
    uri = manifest_uri(output_dir)
    try:
        data = storage.read_bytes(uri, label=label)
    except BadInputError:
        return None
    try:
        manifest = json.loads(data)
        if manifest.get("format") != MANIFEST_FORMAT or not isinstance(manifest.get("objects"), list):
            raise ValueError(manifest.get("format"))
    except (ValueError, AttributeError):
        raise BadInputError(f"{uri}: not a valid output manifest", label=label) from None
    return manifest


def is_complete(output_dir: str) -> bool:
    """The reader rule: a step's output folder counts only once its manifest exists."""
    return read_manifest(output_dir) is not None


def verify_published(output_dir: str, *, label: str | None = None) -> dict[str, Any]:
    """The manifest, after checking that it exists and that every object it lists has its recorded sha256."""
    manifest = read_manifest(output_dir, label=label)
    if manifest is None:
        raise BadInputError(f"{output_dir}: incomplete output (no {MANIFEST_FILE}: the step that writes it "
                            "did not finish)", label=label)
    for item in manifest["objects"]:
        digest = storage.sha256_hex(storage.read_bytes(item["uri"], label=label))
        if digest != item["sha256"]:
            raise BadInputError(f"{item['uri']}: sha256 {digest[:12]}… differs from the manifest's "
                                f"({item['sha256'][:12]}…): the object changed after publication", label=label)
    return manifest


def json_bytes(document: Any) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True, default=_jsonable) + "\n").encode()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def parameter_text(value: Any) -> str:
    """The text KFP expects in a parameter output file: booleans as true/false, no trailing newline."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def write_parameter_outputs(values: dict[str, tuple[str | None, Any]]) -> None:
    """Write KFP parameter outputs: ``{name: (path or None, value)}``; a None path is skipped.

    Called last, after every object is published, so a parameter never names a missing object.
    """
    for _name, (path, value) in values.items():
        if not path:
            continue
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.partial")
        tmp.write_text(parameter_text(value), encoding="utf-8")
        os.replace(tmp, target)


def write_executor_output(executor_input: str | None, *, metrics: dict[str, float] | None = None,
                          confusion_matrix: tuple[list[str], list[list[int]]] | None = None,
                          parameters: dict[str, Any] | None = None) -> None:
    """Write KFP's ExecutorOutput so the UI shows scalar metrics and a confusion matrix.

    ``executor_input`` is the JSON KFP substitutes for ``{executorInput: null}``; output artifacts
    named ``metrics`` (system.Metrics) and ``classification_metrics`` (system.ClassificationMetrics)
    receive the metadata when the component declares them. Without an executor input (a standalone
    run) nothing is written.
    """
    if not executor_input:
        return
    spec = json.loads(executor_input)
    outputs = spec.get("outputs", {})
    output_file = outputs.get("outputFile")
    if not output_file:
        return
    declared = outputs.get("artifacts", {})
    artifacts: dict[str, Any] = {}

    def artifact(name: str, metadata: dict[str, Any]) -> None:
        if name not in declared:
            return
        runtime = dict(declared[name]["artifacts"][0])
        runtime["metadata"] = {**runtime.get("metadata", {}), **metadata}
        artifacts[name] = {"artifacts": [runtime]}

    if metrics:
        artifact("metrics", {k: float(v) for k, v in metrics.items()})
    if confusion_matrix:
        labels, rows = confusion_matrix
        artifact("classification_metrics", {"confusionMatrix": {
            "annotationSpecs": [{"displayName": str(label)} for label in labels],
            "rows": [{"row": [int(v) for v in row]} for row in rows],
        }})
    document: dict[str, Any] = {"artifacts": artifacts}
    if parameters:
        document["parameterValues"] = parameters
    target = Path(output_file)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document), encoding="utf-8")
