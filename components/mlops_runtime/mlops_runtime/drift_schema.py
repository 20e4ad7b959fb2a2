"""Validation of a drift profile read back from storage: every field of the right type and consistent.

A profile is an input like any other: a tampered one (a feature's values emptied, more missing values
than rows, a string where a number belongs, no rows) must be refused with one line naming what is
wrong, never give a silent "no drift". :func:`check_profile` raises ``ValueError`` with that line;
:func:`mlops_runtime.drift.parse_profile` turns it into a bad-input error (exit 3).
"""
from __future__ import annotations

import math
from typing import Any

NUMERICAL, CATEGORICAL = "numerical", "categorical"


def _integer(value: Any, what: str, minimum: int = 0) -> int:
    if type(value) is not int or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, not {value!r:.40}")
    return value


def _number(value: Any, what: str, *, nullable: bool = False) -> float | None:
    if value is None and nullable:
        return None
    if type(value) not in (int, float) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, not {value!r:.40}")
    return float(value)


def _numbers(values: Any, what: str) -> list[float]:
    if not isinstance(values, list) or any(type(v) not in (int, float) or not math.isfinite(v) for v in values):
        raise ValueError(f"{what} must be a list of finite numbers")
    return values


def _integers(values: Any, what: str, minimum: int) -> list[int]:
    if not isinstance(values, list) or any(type(v) is not int or v < minimum for v in values):
        raise ValueError(f"{what} must be a list of integers >= {minimum}")
    return values


def _increasing(values: list[float], what: str) -> None:
    if any(b <= a for a, b in zip(values[:-1], values[1:], strict=True)):
        raise ValueError(f"{what} are not strictly increasing")


def check_numeric(entry: dict[str, Any], n_rows: int, where: str) -> None:
    n_missing = _integer(entry.get("n_missing"), f"{where}: n_missing")
    if n_missing > n_rows:
        raise ValueError(f"{where}: n_missing {n_missing} > n_rows {n_rows}")
    finite = n_rows - n_missing
    values = _numbers(entry.get("values"), f"{where}: values")
    _increasing(values, f"{where}: values")
    counts = entry.get("counts")
    if counts is not None and len(_integers(counts, f"{where}: counts", 1)) != len(values):
        raise ValueError(f"{where}: counts do not match its values")
    if type(entry.get("exact")) is not bool:
        raise ValueError(f"{where}: exact must be true or false")
    stored = len(values) if counts is None else sum(counts)
    if entry["exact"] and stored != finite:
        raise ValueError(f"{where}: its values count {stored} observations, n_rows - n_missing is {finite}")
    if not entry["exact"] and not 0 < stored <= finite:
        raise ValueError(f"{where}: a sketch of {stored} values for {finite} observations")
    has_values = finite > 0
    for name in ("mean", "std"):
        value = _number(entry.get(name), f"{where}: {name}", nullable=not has_values)
        if (value is None) == has_values:
            raise ValueError(f"{where}: {name} must be {'a number' if has_values else 'null'}")
    if has_values and entry["std"] < 0:
        raise ValueError(f"{where}: std is negative")
    edges = _numbers(entry.get("psi_edges"), f"{where}: psi_edges")
    _increasing(edges, f"{where}: psi_edges")
    maximum = _number(entry.get("psi_maximum"), f"{where}: psi_maximum", nullable=not has_values)
    if has_values and (not edges or maximum is None or maximum < edges[-1] or edges[0] > values[0]
                       or maximum < values[-1] or (entry["exact"] and (edges[0], maximum) != (values[0], values[-1]))):
        raise ValueError(f"{where}: PSI edges do not match its values")
    psi_counts = _integers(entry.get("psi_counts"), f"{where}: psi_counts", 0)
    if len(psi_counts) != len(edges) + 3 or sum(psi_counts) != n_rows or psi_counts[-1] != n_missing:
        raise ValueError(f"{where}: PSI counts do not match the PSI edges, n_rows and n_missing")
    for name in ("ks_error", "wasserstein_error"):
        if _number(entry.get(name), f"{where}: {name}") < 0:
            raise ValueError(f"{where}: {name} is negative")


def check_categorical(entry: dict[str, Any], n_rows: int, where: str) -> None:
    n_missing = _integer(entry.get("n_missing"), f"{where}: n_missing")
    if n_missing > n_rows:
        raise ValueError(f"{where}: n_missing {n_missing} > n_rows {n_rows}")
    counts = entry.get("counts")
    if not isinstance(counts, dict) or any(type(v) is not int or v < 1 for v in counts.values()):
        raise ValueError(f"{where}: counts must map categories to integers >= 1")
    other = _integer(entry.get("other"), f"{where}: other")
    if type(entry.get("truncated")) is not bool or (other > 0 and not entry["truncated"]):
        raise ValueError(f"{where}: truncated must be true or false (true when other > 0)")
    total = sum(counts.values()) + other + n_missing
    if total != n_rows:
        raise ValueError(f"{where}: counts, other and n_missing add up to {total}, not n_rows {n_rows}")


def check_profile(profile: dict[str, Any], *, nested: bool = False) -> None:
    """Raise ValueError (one line) unless ``profile`` is complete and consistent."""
    if "predictions" in profile:
        predictions = profile["predictions"]
        if nested or not isinstance(predictions, dict) or predictions.get("format") != profile.get("format"):
            raise ValueError("predictions must be a profile of the model's outputs")
        try:
            check_profile(predictions, nested=True)
        except ValueError as error:
            raise ValueError(f"predictions: {error}") from None
    n_rows = _integer(profile.get("n_rows"), "n_rows", 1)
    features = profile.get("features")
    if not isinstance(features, dict) or not features:
        raise ValueError("features must be a non-empty object")
    names = profile.get("feature_names", list(features))
    if not isinstance(names, list) or sorted(map(str, names)) != sorted(features) or len(set(names)) != len(names):
        raise ValueError("feature_names do not match the features")
    if profile.get("target_column") is not None and not isinstance(profile["target_column"], str):
        raise ValueError("target_column must be a string or null")
    for key in ("sketch_size", "max_categories"):
        if key in profile:
            _integer(profile[key], key, 1)
    skipped = profile.get("skipped_columns", {})
    if not isinstance(skipped, dict) or not all(isinstance(v, str) for v in skipped.values()):
        raise ValueError("skipped_columns must map column names to type names")
    for name, entry in features.items():
        where = f"feature {name!r:.60}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} is not an object")
        if _integer(entry.get("n_rows"), f"{where}: n_rows", 1) != n_rows:
            raise ValueError(f"{where}: n_rows {entry['n_rows']} differs from the profile's {n_rows}")
        if entry.get("kind") == NUMERICAL:
            check_numeric(entry, n_rows, where)
        elif entry.get("kind") == CATEGORICAL:
            check_categorical(entry, n_rows, where)
        else:
            raise ValueError(f"{where}: unknown kind {entry.get('kind')!r:.40}")
