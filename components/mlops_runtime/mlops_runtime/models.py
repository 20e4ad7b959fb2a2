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

from . import documents, storage
from .errors import BadInputError, ModelError

MODEL_FILE = "model.skops"
CARD_FILE = "model_card.json"
PROFILE_FILE = "reference_profile.json"  # the training data's drift profile (mlops_runtime.drift)

# Types skops does not trust by default, per estimator family (mlops_runtime.estimators); nothing else is
# ever loaded. Every model's preprocessing (mlops_runtime.preprocessing) needs PREPROCESSING_TYPES:
# SimpleImputer records its fitted dtype as a numpy.dtype.
PREPROCESSING_TYPES = ["mlops_runtime.preprocessing.CalendarFeatures", "mlops_runtime.preprocessing.CategoryText",
                       "mlops_runtime.preprocessing.NumericValues", "numpy.dtype"]
TRUSTED_TYPES_BY_ESTIMATOR = {
    "random_forest": ["sklearn.tree._tree.Tree"],
    # the fitted trees, and the check_array partial of its internal categorical preprocessor
    "hist_gradient_boosting": ["functools.partial", "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
                               "sklearn.utils.validation.check_array"],
    "linear": [],
}
TRUSTED_TYPES = sorted({*PREPROCESSING_TYPES, *(t for types in TRUSTED_TYPES_BY_ESTIMATOR.values() for t in types)})

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
            for key, value in sorted(node.items()):  # in output order: numbering independent of attribute order
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
            add(new, _zero_padding(source.read(old)))
    return sink.getvalue()


def _zero_padding(payload: bytes) -> bytes:
    """A .npy member whose structured dtype has padding (a tree's nodes), rewritten with zero padding bytes.

    The padding is uninitialised memory, so without this the same fitted trees could give different bytes.
    """
    import numpy as np

    try:
        array = np.load(io.BytesIO(payload), allow_pickle=False)
    except ValueError:
        return payload
    names = array.dtype.names
    if names is None or array.dtype.itemsize == sum(array.dtype.fields[name][0].itemsize for name in names):
        return payload
    clean = np.zeros(array.shape, dtype=array.dtype)
    for name in names:
        clean[name] = array[name]
    sink = io.BytesIO()
    np.save(sink, clean, allow_pickle=False)
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
    return documents.model_card(raw, card_uri, label=label), raw


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


ONNX_FILE = "model.onnx"
ONNX_REPORT_FILE = "onnx_report.json"


def onnx_files(onnx_dir: str, model_sha256: str, *, label: str | None,
               invalid: type[BadInputError] | type[ModelError] = BadInputError) -> dict[str, bytes]:
    """export_onnx's output for the model with ``model_sha256``: its report, plus ``model.onnx`` when it passed
    the parity check; refused when the report is of another model or the file is not the one it describes.

    ``invalid``: the error for a report that is not one of this model's (ModelError where it was registered)."""
    report_uri = storage.join(onnx_dir, ONNX_REPORT_FILE)
    report_bytes = storage.read_bytes(report_uri, label=label)
    try:
        report = json.loads(report_bytes)
        if not isinstance(report, dict) or not isinstance(report.get("exported"), bool):
            raise ValueError
    except ValueError:
        raise invalid(f"{report_uri}: not an export_onnx report", label=label) from None
    if report.get("model_sha256") != model_sha256:
        raise invalid(f"{report_uri}: the report is of model sha256 {str(report.get('model_sha256'))[:12]}…, "
                            f"not of this model ({model_sha256[:12]}…)", label=label)
    files = {ONNX_REPORT_FILE: report_bytes}
    if report["exported"]:
        onnx_uri = storage.join(onnx_dir, ONNX_FILE)
        data = storage.read_bytes(onnx_uri, label=label)
        if storage.sha256_hex(data) != report.get("onnx_sha256"):
            raise ModelError(f"{onnx_uri}: sha256 differs from its parity report: the file was changed", label=label)
        files[ONNX_FILE] = data
    return files
