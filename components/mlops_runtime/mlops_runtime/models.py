"""Model files that load without unpickling: skops with an allowlist, verified against their card.

A model is stored as ``model.skops`` with ``model_card.json`` beside it. The card records the model's
sha256; :func:`load_model` checks it before reading the file, and skops refuses any type outside
:data:`TRUSTED_TYPES`. Saved files are canonical (stable member names and timestamps), so the same
fitted model always gives the same bytes.
"""
from __future__ import annotations

import io
import json
import platform
import re
import zipfile
from dataclasses import dataclass
from typing import Any

from . import storage
from .errors import BadInputError, ModelError

MODEL_FILE = "model.skops"
CARD_FILE = "model_card.json"
PROFILE_FILE = "reference_profile.json"  # the training data's drift profile (mlops_runtime.drift)

# Types skops does not trust by default but a tree ensemble needs; nothing else is ever loaded.
TRUSTED_TYPES = ["numpy.dtype", "sklearn.tree._tree.Tree"]  # numpy.dtype: OneHotEncoder(dtype=...) in Pipelines

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_FILE_NAME = re.compile(r"^\d+\.npy$")


def card_uri_for(model_uri: str) -> str:
    return _beside(model_uri, CARD_FILE)


def profile_uri_for(model_uri: str) -> str:
    return _beside(model_uri, PROFILE_FILE)


def _beside(model_uri: str, name: str) -> str:
    return f"{model_uri.rsplit('/', 1)[0]}/{name}" if "/" in model_uri else name


def dumps(model: Any) -> bytes:
    """Serialise a fitted estimator with skops, canonically."""
    import skops.io as sio

    return _canonical(sio.dumps(model))


def _canonical(data: bytes) -> bytes:
    # skops names array members and memo ids after id(); renumber both in order of appearance.
    source = zipfile.ZipFile(io.BytesIO(data))
    schema = json.loads(source.read("schema.json"))
    ids: dict[int, int] = {}
    files: dict[str, str] = {}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key == "__id__" and isinstance(value, int):
                    out[key] = ids.setdefault(value, len(ids) + 1)
                elif isinstance(value, str) and _FILE_NAME.match(value) and value in source.namelist():
                    out[key] = files.setdefault(value, f"{len(files) + 1:06d}.npy")
                else:
                    out[key] = walk(value)
            return out
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    canonical_schema = walk(schema)
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as target:
        def add(name: str, payload: bytes) -> None:
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            target.writestr(info, payload)

        add("schema.json", json.dumps(canonical_schema, indent=2, sort_keys=True).encode())
        for old, new in sorted(files.items(), key=lambda item: item[1]):
            add(new, source.read(old))
    return sink.getvalue()


def loads(data: bytes, *, label: str | None = None) -> Any:
    """Load skops bytes, trusting only :data:`TRUSTED_TYPES` beyond skops' own safe defaults."""
    import skops.io as sio

    try:
        untrusted = sorted(set(sio.get_untrusted_types(data=data)) - set(TRUSTED_TYPES))
    except Exception as error:
        raise ModelError(f"not a readable skops model file ({type(error).__name__})", label=label) from None
    if untrusted:
        raise ModelError(f"the model file contains untrusted types: {', '.join(untrusted[:5])}", label=label)
    try:
        return sio.loads(data, trusted=TRUSTED_TYPES)
    except Exception as error:
        raise ModelError(f"cannot load the model file ({type(error).__name__}: {error})", label=label) from None


def library_versions() -> dict[str, str]:
    import numpy
    import pandas
    import sklearn
    import skops

    return {"python": platform.python_version(), "scikit-learn": sklearn.__version__,
            "numpy": numpy.__version__, "pandas": pandas.__version__, "skops": skops.__version__}


@dataclass(frozen=True)
class StoredModel:
    """A model loaded from storage with the exact bytes of its file and card, as verified."""

    model: Any
    card: dict[str, Any]
    model_bytes: bytes
    card_bytes: bytes


def _read_card(model_uri: str, *, label: str | None) -> tuple[dict[str, Any], bytes]:
    card_uri = card_uri_for(model_uri)
    try:
        raw = storage.read_bytes(card_uri, label=label)
    except BadInputError as error:
        raise ModelError(f"{card_uri}: model card not found beside the model", label=label) from error
    try:
        card = json.loads(raw)
        card["model_sha256"]
    except (ValueError, KeyError, TypeError):
        raise ModelError(f"{card_uri}: not a valid model card", label=label) from None
    return card, raw


def read_card(model_uri: str, *, label: str | None = None) -> dict[str, Any]:
    return _read_card(model_uri, label=label)[0]


def load_stored_model(model_uri: str, *, label: str | None = None) -> StoredModel:
    """Load a model and its card, refusing a file whose sha256 differs from the card's."""
    card, card_bytes = _read_card(model_uri, label=label)
    try:
        data = storage.read_bytes(model_uri, label=label)
    except BadInputError as error:
        raise ModelError(f"{model_uri}: model file not found", label=label) from error
    digest = storage.sha256_hex(data)
    if digest != card["model_sha256"]:
        raise ModelError(f"{model_uri}: sha256 {digest[:12]}… does not match its model card "
                         f"({str(card['model_sha256'])[:12]}…): the file was changed", label=label)
    model = loads(data, label=label)
    features = card.get("feature_names")
    if features is not None and list(getattr(model, "feature_names_in_", features)) != list(features):
        raise ModelError(f"{model_uri}: the model's features do not match its card", label=label)
    return StoredModel(model, card, data, card_bytes)


def load_model(model_uri: str, *, label: str | None = None) -> tuple[Any, dict[str, Any]]:
    """Load a model and its card, refusing a file whose sha256 differs from the card's."""
    stored = load_stored_model(model_uri, label=label)
    return stored.model, stored.card
