"""Publishing outputs: all of a step's objects or none of them, then its KFP outputs.

A step's output folder is complete only when its manifest, ``<output_dir>/_manifest.json``, exists.
``publication(output_dir)`` removes an older manifest first, writes the objects, and writes the manifest
(each object's name, URI, sha256 and size, plus the step's lineage) last. A failure or SIGTERM removes
what was written; after a SIGKILL, which nothing can intercept, objects may remain but no manifest does,
so readers that follow the rule (:func:`read_manifest`, :func:`is_complete`, :func:`verify_published`)
never take a partial folder for a result.

KFP outputs (parameter files, the ExecutorOutput file, output artifacts' files) go through the same
publication: checked before the step writes anything and written after the manifest, so a downstream
task never receives the URI of an incomplete output; one that cannot be written removes everything.
"""
from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from . import file_transfer, storage
from .errors import BadInputError, ComponentError, StorageError
from .kfp_files import (  # noqa: F401 (re-exported)
    check_output_path,
    executor_output,
    parameter_option,
    parameter_text,
)
from .log import get_logger

log = get_logger(__name__)

MANIFEST_FILE = "_manifest.json"
MANIFEST_FORMAT = "mlops-components/manifest/v1"
ROLLBACK_RETRY_SECONDS = 2.0


class Publication:
    """Objects written by one step and its KFP outputs; if the step fails before it completes, all are removed.

    Inside the block a step writes its objects with ``put`` and registers its KFP outputs (``parameters``,
    ``executor_output``, ``file``); :meth:`commit` writes the manifest, then the KFP files. A failure
    at any point, a KFP file included, removes every object, the manifest and the KFP files written.
    """

    def __init__(self, output_dir: str | None = None, *, lineage: dict[str, Any] | None = None,
                 label: str = "--output-dir") -> None:
        self.output_dir = output_dir.rstrip("/") if output_dir else None
        self.lineage = lineage
        self.label = label
        self.written: list[str] = []
        self.objects: list[dict[str, Any]] = []
        self.kfp_files: list[tuple[str, bytes, str]] = []  # (path, content, option naming it)
        self.kfp_written: list[Path] = []
        self.store_unreachable = False

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

    def parameters(self, values: dict[str, tuple[str | None, Any]]) -> None:
        """KFP parameter outputs, ``{name: (path or None, value)}``, written at commit (a None path is skipped)."""
        for name, (path, value) in values.items():
            if path:
                self.file(path, parameter_text(value).encode(), label=parameter_option(name))

    def executor_output(self, executor_input: str | None, *, metrics: dict[str, float] | None = None,
                        confusion_matrix: tuple[list[str], list[list[int]]] | None = None,
                        roc_curve: list[dict[str, float]] | None = None,
                        parameters: dict[str, Any] | None = None,
                        metadata: dict[str, dict[str, Any]] | None = None) -> None:
        """KFP's ExecutorOutput (the output artifacts, UI metrics, confusion matrix, ROC curve), written at
        commit; see :func:`executor_output`."""
        found = executor_output(executor_input, metrics=metrics, confusion_matrix=confusion_matrix,
                                roc_curve=roc_curve, parameters=parameters, metadata=metadata)
        if found is None:
            return
        self.file(found[0], found[1], label="--executor-input")
        # A local artifact the step writes nothing at (evaluate's classification_metrics, its metadata only) gets
        # that metadata as its file: kfp.local's cache takes an artifact whose local URI is missing for a miss.
        for entry in json.loads(found[1])["artifacts"].values():
            artifact = entry["artifacts"][0]
            uri = (artifact.get("uri") or "").rstrip("/")
            if uri and "://" not in uri and uri != self.output_dir and not Path(uri).exists():
                self._write(uri, json_bytes(artifact.get("metadata") or {}), label="--executor-input")

    def file(self, path: str, data: bytes, *, label: str) -> None:
        """A local file KFP collects (an outputPath), written at commit after the manifest."""
        check_output_path(path, label=label)
        self.kfp_files.append((path, data, label))

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
        """Write the manifest (from now on the folder is complete), then the KFP files."""
        if self.output_dir is not None:
            document = {"format": MANIFEST_FORMAT, "output_dir": self.output_dir, "objects": self.objects,
                        "lineage": self.lineage}
            self._write(manifest_uri(self.output_dir), json_bytes(document), label=self.label)
        for path, data, label in self.kfp_files:
            self._write_kfp_file(Path(path), data, label=label)

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
            self.store_unreachable = _unreachable(error)
            raise
        if not created:  # another writer's object: never ours to roll back
            self.written.pop()
            raise StorageError(f"{uri}: an object of that name already exists", label=label)

    def _write_kfp_file(self, target: Path, data: bytes, *, label: str) -> None:
        self.kfp_written.append(target)
        tmp = target.with_name(f".{target.name}.partial")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, target)
        except OSError as error:
            with suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise storage.local_error(str(target), error, writing=True).about(label) from None

    def rollback(self) -> list[str]:
        """Remove what was written; returns the objects that could not be removed (the store failed)."""
        left: list[str] = []
        # Once the store proved unreachable, a short window: the step is failing, do not wait a second time.
        window = ROLLBACK_RETRY_SECONDS if self.store_unreachable else None
        with _sigterm_ignored():  # a second SIGTERM must not cut the clean-up short
            for target in reversed(self.kfp_written):
                try:
                    target.unlink(missing_ok=True)
                except OSError as error:
                    log.debug("could not remove KFP output %s: %s", target, error)
                    left.append(str(target))
            for uri in reversed(self.written):
                try:
                    storage.delete(uri, retry_window=window)
                except Exception as error:  # best effort: keep deleting the rest, report in the error line
                    log.debug("could not remove partial output %s: %s", uri, error)
                    left.append(uri)
        self.written.clear()
        self.objects.clear()
        self.kfp_written.clear()
        return left

    def _name(self, uri: str) -> str:
        if self.output_dir and uri.startswith(self.output_dir + "/"):
            return uri[len(self.output_dir) + 1:]
        return uri


@contextmanager
def publication(output_dir: str | None = None, *, lineage: dict[str, Any] | None = None,
                label: str = "--output-dir",
                parameters: dict[str, tuple[str | None, Any]] | None = None) -> Iterator[Publication]:
    """``with publication(output_dir, lineage=record, parameters={name: (path, value)}) as out: out.put(...)``.

    Every KFP output (``parameters`` here or ``out.parameters``/``out.executor_output``/``out.file`` inside)
    is checked up front and written only after the manifest. An exception inside, or while committing,
    removes what was written. With ``output_dir`` the folder's manifest is removed first and written
    last; without it (a step whose output is elsewhere, e.g. the registry) no manifest is kept.
    """
    published = Publication(output_dir, lineage=lineage, label=label)
    try:
        if parameters:
            published.parameters(parameters)
        published.begin()
        yield published
        published.commit()
    except BaseException as error:
        left = published.rollback()
        if left and isinstance(error, ComponentError):
            error.args = (f"{error.args[0]} ({len(left)} partial output(s) could not be removed, e.g. {left[0]}; "
                          "no manifest was written)",)
        raise


def _never_stored(error: ComponentError) -> bool:
    from botocore.exceptions import ClientError, EndpointConnectionError

    cause = error.__cause__  # None for local writes (atomic: a temporary file renamed into place)
    if isinstance(cause, storage.Unreachable):
        cause = cause.last
    if isinstance(cause, ClientError):  # a 4xx refusal; a 5xx may come after the backend stored it
        return int(cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 500) < 500
    return cause is None or isinstance(cause, EndpointConnectionError)


def _unreachable(error: ComponentError) -> bool:
    return isinstance(error.__cause__, storage.Unreachable)


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
