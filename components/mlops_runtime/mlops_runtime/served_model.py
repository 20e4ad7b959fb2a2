"""Which model a server answers with: a registry version, the production pointer (followed), or a URI.

Loading is the steps' safe path (skops with the allowlist, sha256 checked against the card); predictions
take a DataFrame of raw columns checked against the card's signature.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.pipeline import Pipeline

from mlops_runtime import models, signature, storage
from mlops_runtime.errors import BadInputError, ComponentError, ModelError
from mlops_runtime.registry import ENTRY_FILE, ModelRegistry


@dataclass(frozen=True)
class ServedModel:
    """One loaded model version; ``version`` is the registry version number as text, or ``sha256-<12 hex>``."""

    version: str
    model_uri: str
    model: Any
    signature: dict[str, Any]
    classes: list[Any] | None
    sha256: str

    def predict(self, table: pd.DataFrame, *, label: str = "request") -> tuple[pd.DataFrame, dict[str, Any]]:
        """The checked input columns and the outputs: ``predict`` and, for classifiers, ``predict_proba``.

        A Pipeline's transformers run once for both outputs (``Pipeline.predict`` and ``predict_proba`` would
        each run them); a forest's labels are its ``classes_`` at the probabilities' argmax, which is how
        ``ForestClassifier.predict`` computes them, so its trees run once too.
        """
        features, _ = signature.check_table(table, self.signature, uri="", label=label)
        wants_proba = self.classes is not None and hasattr(self.model, "predict_proba")
        transformed, final = features, self.model
        if isinstance(self.model, Pipeline) and self.model.steps[-1][1] not in (None, "passthrough"):
            final = self.model[-1]
            if len(self.model) > 1:  # the sub-Pipeline skips "passthrough" steps, as Pipeline.predict does
                transformed = self.model[:-1].transform(features)
        if not wants_proba:
            return features, {"predict": np.asarray(final.predict(transformed))}
        proba = np.asarray(final.predict_proba(transformed), dtype="float64")
        if _labels_are_proba_argmax(final) and proba.ndim == 2:
            labels = final.classes_.take(np.argmax(proba, axis=1), axis=0)
        else:
            labels = final.predict(transformed)
        return features, {"predict": np.asarray(labels), "predict_proba": proba}


def _labels_are_proba_argmax(estimator: Any) -> bool:
    """Whether ``estimator.predict`` is exactly ``classes_.take(argmax(predict_proba))`` (sklearn's forests;
    a subclass with its own ``predict`` is not assumed to be)."""
    forest_predicts = (RandomForestClassifier.predict, ExtraTreesClassifier.predict)
    return type(estimator).predict in forest_predicts and getattr(estimator, "n_outputs_", None) == 1


def _version_of(model_uri: str, sha256: str) -> str:
    """The registry version beside the model (its entry.json), else a name made from the sha256."""
    entry_uri = f"{model_uri.rsplit('/', 1)[0]}/{ENTRY_FILE}" if "/" in model_uri else ENTRY_FILE
    try:
        if storage.exists(entry_uri):
            entry = json.loads(storage.read_bytes(entry_uri))
            if entry.get("model_sha256") == sha256:
                return str(int(entry["version"]))
    except (ValueError, KeyError, TypeError):
        pass
    return f"sha256-{sha256[:12]}"


def load_served(model_uri: str, *, label: str) -> ServedModel:
    stored = models.load_stored_model(model_uri, label=label)
    sig = signature.from_card(stored.card, label=label)
    sha = stored.card["model_sha256"]
    classes = None
    if sig.get("task", "classification") == "classification" and hasattr(stored.model, "classes_"):
        classes = [c.item() if hasattr(c, "item") else c for c in stored.model.classes_]
    return ServedModel(_version_of(model_uri, sha), model_uri, stored.model, sig, classes, sha)


class ModelSource:
    """Resolves the model to serve; ``follows_production`` when it is the registry's production pointer."""

    def __init__(self, *, registry_uri: str | None, model_name: str, model_ref: str = "production",
                 model_uri: str | None = None) -> None:
        if model_uri is None and registry_uri is None:
            raise BadInputError("give --registry-uri (with --model-name) or --model-uri", label="--registry-uri")
        if model_ref != "production" and not model_ref.isdigit():
            raise BadInputError(f"'{model_ref}' is neither 'production' nor a version number", label="--model-ref")
        self.model_name = model_name
        self.model_uri = model_uri
        self.model_ref = model_ref
        self.registry = ModelRegistry(registry_uri, model_name) if registry_uri and not model_uri else None
        self.follows_production = self.registry is not None and model_ref == "production"

    def production_version(self) -> str | None:
        """The version the production pointer names now (None when there is none)."""
        assert self.registry is not None
        pointer = self.registry.production().pointer
        return None if pointer is None else str(int(pointer["version"]))

    def load(self) -> ServedModel:
        if self.model_uri is not None:
            return load_served(self.model_uri, label="--model-uri")
        assert self.registry is not None
        label = "--model-ref" if self.model_ref != "production" else "--registry-uri"
        try:
            uri = self.registry.resolve_model_uri(self.model_ref)
        except ComponentError as error:
            raise error.about(label) from None
        served = load_served(uri, label=label)
        if self.follows_production:
            pointer = self.registry.production().pointer or {}
            if pointer.get("model_sha256") not in (None, served.sha256):
                raise ModelError(f"{uri}: the model differs from the production pointer's sha256", label=label)
        return served
