"""Schemas of the JSON documents steps read back: every one is checked when read, so a tampered or
inconsistent document is refused with one line naming the field (bad input, exit 3; a registry or
model document: exit 5) instead of a crash or a verdict computed from nonsense.

A schema maps each field to a check; ``required`` fields must be present. Extra fields are allowed
(documents gain fields over time). NaN and infinities are never numbers here: Python's ``json``
accepts them, JSON does not.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable
from typing import Any

from .errors import BadInputError, ComponentError, ModelError

Check = Callable[[Any], str | None]  # None when the value is valid, else what is wrong

SHA256 = re.compile(r"^[0-9a-f]{64}$")
TASKS = ("classification", "regression")
MAX_CLASSES = 100_000


class Invalid(ValueError):
    """A document that does not follow its schema: ``path`` is the field, the message what is wrong."""

    def __init__(self, path: str, problem: str) -> None:
        self.path, self.problem = path, problem
        super().__init__(f"{path}: {problem}" if path else problem)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def number(low: float = -math.inf, high: float = math.inf, *, nullable: bool = False) -> Check:
    def check(value: Any) -> str | None:
        if value is None and nullable:
            return None
        if not _is_number(value):
            return f"expected a finite number, got {_shown(value)}"
        if not low <= value <= high:
            return f"{value!r} is outside [{low:g}, {high:g}]"
        return None
    return check


def integer(low: int = 0, high: int | None = None, *, nullable: bool = False) -> Check:
    def check(value: Any) -> str | None:
        if value is None and nullable:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            return f"expected an integer, got {_shown(value)}"
        if value < low or (high is not None and value > high):
            return f"{value} is outside [{low}, {high if high is not None else '∞'}]"
        return None
    return check


def text(*, nullable: bool = False, empty: bool = False, choices: tuple[str, ...] | None = None,
         pattern: re.Pattern[str] | None = None) -> Check:
    def check(value: Any) -> str | None:
        if value is None and nullable:
            return None
        if not isinstance(value, str) or (not value and not empty):
            return f"expected {'a' if empty else 'a non-empty'} string, got {_shown(value)}"
        if choices is not None and value not in choices:
            return f"'{value}' is not one of {', '.join(choices)}"
        if pattern is not None and not pattern.match(value):
            return f"{_shown(value)} is not of the form {pattern.pattern}"
        return None
    return check


def timestamp(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"expected an ISO 8601 time, got {_shown(value)}"
    try:
        dt.datetime.fromisoformat(value)
    except ValueError:
        return f"{_shown(value)} is not an ISO 8601 time"
    return None


def array(item: Check | None = None, *, nullable: bool = False, max_items: int = MAX_CLASSES) -> Check:
    def check(value: Any) -> str | None:
        if value is None and nullable:
            return None
        if not isinstance(value, list):
            return f"expected a list, got {_shown(value)}"
        if len(value) > max_items:
            return f"{len(value)} items, more than {max_items}"
        for index, element in enumerate(value if item else ()):
            problem = item(element)
            if problem:
                return f"item {index}: {problem}"
        return None
    return check


def obj(fields: dict[str, Check], *, required: tuple[str, ...] = (), nullable: bool = False) -> Check:
    def check(value: Any) -> str | None:
        if value is None and nullable:
            return None
        try:
            validate(value, fields, required=required)
        except Invalid as error:
            return str(error)
        return None
    return check


def validate(document: Any, fields: dict[str, Check], *, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """``document`` when it is an object whose fields pass their checks; :class:`Invalid` otherwise."""
    if not isinstance(document, dict):
        raise Invalid("", f"expected a JSON object, got {_shown(document)}")
    for name in required:
        if name not in document:
            raise Invalid(name, "missing")
    for name, check in fields.items():
        if name in document:
            problem = check(document[name])
            if problem:
                raise Invalid(name, problem)
    return document


def _shown(value: Any) -> str:
    shown = json.dumps(value, default=str, allow_nan=True) if not isinstance(value, str) else repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def parse_json(data: bytes) -> Any:
    """JSON text to a document; NaN, Infinity and duplicate keys (which JSON does not define) are refused."""
    def no_constant(name: str) -> Any:
        raise Invalid("", f"{name} is not a JSON value")

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        duplicated = sorted({key for key in keys if keys.count(key) > 1})
        if duplicated:
            raise Invalid(duplicated[0], "appears twice")
        return dict(pairs)

    try:
        return json.loads(data, parse_constant=no_constant, object_pairs_hook=unique)
    except (ValueError, RecursionError) as error:
        if isinstance(error, Invalid):
            raise
        raise Invalid("", "not valid JSON") from None


# ------------------------------------------------------------------------------------------ schemas

PROBABILITY = number(0, 1, nullable=True)
NON_NEGATIVE = number(0, nullable=True)
METRIC_FIELDS: dict[str, Check] = {
    "accuracy": PROBABILITY, "precision_macro": PROBABILITY, "recall_macro": PROBABILITY, "f1_macro": PROBABILITY,
    "roc_auc": PROBABILITY, "pr_auc": PROBABILITY, "brier": number(0, 2, nullable=True), "log_loss": NON_NEGATIVE,
    "rmse": NON_NEGATIVE, "mae": NON_NEGATIVE, "mape": NON_NEGATIVE, "r2": number(high=1, nullable=True),
    "n_samples": integer(1),
}


def _confusion_matrix(value: Any) -> str | None:
    problem = obj({"labels": array(), "matrix": array(array(integer(0)))}, required=("labels", "matrix"))(value)
    if problem:
        return problem
    size = len(value["labels"])
    if len(value["matrix"]) != size or any(len(row) != size for row in value["matrix"]):
        return f"matrix: expected {size} rows of {size} counts (one per label)"
    return None


METRICS_SCHEMA: dict[str, Check] = {
    **METRIC_FIELDS, "task": text(choices=TASKS), "model_sha256": text(pattern=SHA256, nullable=True),
    "target_column": text(), "model_uri": text(), "confusion_matrix": _confusion_matrix,
    "test_data": obj({"uri": text(), "sha256": text(pattern=SHA256)}, nullable=True),
}
POINTER_SCHEMA: dict[str, Check] = {
    "model": text(), "version": integer(1), "version_uri": text(), "model_uri": text(),
    "model_sha256": text(pattern=SHA256), "metrics": obj(METRIC_FIELDS), "previous_version": integer(1, nullable=True),
    "generation": integer(1), "reason": text(empty=True), "promoted_at": timestamp,
}
ENTRY_SCHEMA: dict[str, Check] = {
    "model": text(), "version": integer(1), "model_uri": text(), "model_sha256": text(pattern=SHA256),
    "metrics": obj(METRIC_FIELDS), "files": array(text()), "threshold": number(nullable=True),
    "registered_at": timestamp,
    "training_data": obj({"uri": text(), "sha256": text(pattern=SHA256), "rows": integer(0)},
                         required=("uri", "sha256", "rows"), nullable=True),
}
_FEATURE = obj({"name": text(), "kind": text(choices=("numeric", "categorical", "datetime"))}, required=("name",))
CARD_SCHEMA: dict[str, Check] = {
    "model_sha256": text(pattern=SHA256), "feature_names": array(text()), "target_column": text(),
    "classes": array(nullable=True), "task": text(choices=TASKS), "n_features": integer(1),
    "signature": obj({"features": array(_FEATURE), "target": obj({"name": text()}, required=("name",))},
                     required=("features",)),
    "training_data": obj({"uri": text(nullable=True)}, nullable=True),
}
PERFORMANCE_RECORD_SCHEMA: dict[str, Check] = {
    "checked_at": timestamp, "metric": text(), "value": number(), "baseline": number(),
    "tolerance": number(0), "ci": obj({"lower": number(), "upper": number()}, required=("lower", "upper")),
    "degraded": lambda v: None if isinstance(v, bool) else f"expected true or false, got {_shown(v)}",
    "model_version": integer(1, nullable=True),
}


# ------------------------------------------------------------------------------------------ readers

def _read(data: bytes, uri: str, fields: dict[str, Check], required: tuple[str, ...], *, what: str,
          error: type[ComponentError], label: str | None) -> dict[str, Any]:
    try:
        return validate(parse_json(data), fields, required=required)
    except Invalid as invalid:
        detail = f" ({invalid})" if str(invalid) != "not valid JSON" or error is BadInputError else ""
        raise error(f"{uri}: {what}{detail}", label=label) from None


def metrics(data: bytes, uri: str, *, label: str, require: tuple[str, ...] = ()) -> dict[str, Any]:
    """evaluate's metrics.json; ``require``: metrics that must be present as numbers (not null)."""
    document = _read(data, uri, METRICS_SCHEMA, require, what="not a valid metrics document",
                     error=BadInputError, label=label)
    for name in require:
        if not _is_number(document[name]):
            raise BadInputError(f"{uri}: not a valid metrics document ({name}: expected a finite number, "
                                f"got {_shown(document[name])})", label=label)
    return document


def production_pointer(data: bytes, uri: str) -> dict[str, Any]:
    return _read(data, uri, POINTER_SCHEMA, ("version", "model_uri", "model_sha256"),
                 what="corrupted production pointer", error=ModelError, label=None)


def registry_entry(data: bytes, uri: str) -> dict[str, Any]:
    return _read(data, uri, ENTRY_SCHEMA, ("version", "model_uri", "model_sha256"), what="corrupted registry entry",
                 error=ModelError, label=None)


def model_card(data: bytes, uri: str, *, label: str | None) -> dict[str, Any]:
    return _read(data, uri, CARD_SCHEMA, ("model_sha256",), what="not a valid model card", error=ModelError,
                 label=label)


def performance_record(data: bytes, uri: str, *, label: str | None) -> dict[str, Any]:
    """One record of a model's performance history (check_performance's result)."""
    return _read(data, uri, PERFORMANCE_RECORD_SCHEMA, tuple(PERFORMANCE_RECORD_SCHEMA),
                 what="not a valid performance history record", error=BadInputError, label=label)
