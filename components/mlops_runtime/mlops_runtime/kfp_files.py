"""The files a step writes for KFP: parameter outputs, the ExecutorOutput (UI metrics), artifact files.

:mod:`mlops_runtime.outputs`' publication writes them after the manifest; this module makes their
contents and checks their paths before any work.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from . import storage
from .errors import BadInputError, StorageError


def parameter_option(name: str) -> str:
    """The option naming KFP parameter output ``name``: ``--<name>-output-path``."""
    return f"--{name.replace('_', '-')}-output-path"


def check_output_path(path: str, *, label: str) -> None:
    """Refuse, before any work, a KFP output file that cannot be created: its nearest existing folder
    must be a writable directory (KFP makes the folders of an outputPath; a standalone run may not)."""
    target = Path(path)
    try:
        if target.is_dir():
            raise BadInputError(f"{path}: is a directory, not a file", label=label)
        folder = target.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            raise BadInputError(f"{path}: {folder} is not a directory", label=label)
        writable = os.access(folder, os.W_OK | os.X_OK)
    except OSError as error:  # e.g. a folder of another user that this one cannot even look into
        raise storage.local_error(path, error, writing=True).about(label) from None
    if not writable:
        raise StorageError(f"{path}: cannot write in {folder} (permission denied or read-only)", label=label)


def parameter_text(value: Any) -> str:
    """The text KFP expects in a parameter output file: booleans as true/false, no trailing newline."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def executor_output(executor_input: str | None, *, metrics: dict[str, float] | None = None,
                    confusion_matrix: tuple[list[str], list[list[int]]] | None = None,
                    roc_curve: list[dict[str, float]] | None = None,
                    parameters: dict[str, Any] | None = None,
                    metadata: dict[str, dict[str, Any]] | None = None) -> tuple[str, bytes] | None:
    """KFP's ExecutorOutput, (file, content): every output artifact the executor input declares (kfp.local
    knows a task's output artifacts only from this file), with its metadata, so the UI shows scalar metrics,
    a confusion matrix, a ROC curve and the artifacts' properties.

    ``executor_input`` is the JSON KFP substitutes for ``{executorInput: null}``; output artifacts
    named ``metrics`` (system.Metrics) and ``classification_metrics`` (system.ClassificationMetrics)
    receive the metadata when the component declares them. ``roc_curve`` is a list of
    ``{"confidenceThreshold", "recall", "falsePositiveRate"}`` points, the ``confidenceMetrics`` that
    kfp's ``ClassificationMetrics.log_roc_curve`` writes; ``metadata`` maps an artifact's name to more of
    its metadata (e.g. a Dataset's row counts). Without an executor input (a standalone
    run) or an output file in it, None: nothing is written.
    """
    if not executor_input:
        return None
    try:
        spec = json.loads(executor_input)
        outputs = spec.get("outputs", {})
        output_file = outputs.get("outputFile")
        declared = {name: dict(entry["artifacts"][0]) for name, entry in (outputs.get("artifacts") or {}).items()}
        if output_file is not None and not isinstance(output_file, str):
            raise TypeError
    except (ValueError, TypeError, AttributeError, KeyError, IndexError):
        raise BadInputError("not a KFP executor input (outputs.outputFile, outputs.artifacts.<name>.artifacts[0])",
                            label="--executor-input") from None
    if not output_file:
        return None
    artifacts: dict[str, Any] = {}

    def artifact(name: str, metadata: dict[str, Any]) -> None:
        if name not in declared:
            return
        runtime = declared[name]
        runtime["metadata"] = {**(runtime.get("metadata") or {}), **metadata}
        artifacts[name] = {"artifacts": [runtime]}

    if metrics:
        artifact("metrics", {k: float(v) for k, v in metrics.items()})
    classification: dict[str, Any] = {}
    if confusion_matrix:
        labels, rows = confusion_matrix
        classification["confusionMatrix"] = {
            "annotationSpecs": [{"displayName": str(label)} for label in labels],
            "rows": [{"row": [int(v) for v in row]} for row in rows],
        }
    if roc_curve:
        classification["confidenceMetrics"] = [{key: float(point[key]) for key in (
            "confidenceThreshold", "recall", "falsePositiveRate")} for point in roc_curve]
    if classification:
        artifact("classification_metrics", classification)
    for name, values in (metadata or {}).items():
        artifact(name, values)
    for name, runtime in declared.items():  # the ones without metadata: kfp.local must still see them
        artifacts.setdefault(name, {"artifacts": [runtime]})
    document: dict[str, Any] = {"artifacts": artifacts}
    if parameters:
        document["parameterValues"] = parameters
    return output_file, json.dumps(document, default=_plain).encode()


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as plain JSON values."""
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
