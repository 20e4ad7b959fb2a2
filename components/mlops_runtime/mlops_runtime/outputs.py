"""Publishing outputs: all of a step's objects or none of them, then its KFP output parameters."""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from . import storage
from .log import get_logger

log = get_logger(__name__)


class Publication:
    """Objects written by one step; if the step fails before it completes, they are deleted again."""

    def __init__(self) -> None:
        self.written: list[str] = []

    def put(self, uri: str, data: bytes, *, label: str | None = None) -> str:
        storage.write_bytes(uri, data, label=label)
        self.written.append(uri)
        return uri

    def put_json(self, uri: str, document: Any, *, label: str | None = None) -> str:
        return self.put(uri, json_bytes(document), label=label)

    def rollback(self) -> None:
        for uri in reversed(self.written):
            try:
                storage.delete(uri)
            except Exception as error:  # best effort: report, keep deleting the rest
                log.warning("could not remove partial output %s: %s", uri, error)
        self.written.clear()


@contextmanager
def publication() -> Iterator[Publication]:
    """``with publication() as out: out.put(...)`` -- an exception inside removes what was put."""
    published = Publication()
    try:
        yield published
    except BaseException:
        published.rollback()
        raise


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
        tmp.write_text(parameter_text(value))
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
    target.write_text(json.dumps(document))
