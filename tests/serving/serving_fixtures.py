"""A small mixed-type model for the serving tests, fitted and registered here (independent of train).

The model is a scikit-learn Pipeline on raw DataFrame columns (OneHotEncoder for a text column,
SimpleImputer for numbers with gaps, a RandomForest), registered with a card v2 signature as train writes it.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from mlops_runtime import models, outputs, signature, storage
from mlops_runtime.registry import ModelRegistry

TARGET = "churned"
NUMERIC = ["age", "balance"]
CATEGORICAL = ["plan"]
PLANS = ["basic", "plus", "pro"]


def customers(rows: int = 400, seed: int = 3) -> pd.DataFrame:
    """Mixed columns with gaps: ``age`` and ``balance`` floats (some NaN), ``plan`` text, target 'yes'/'no'."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, rows).astype(float)
    balance = rng.normal(1000, 400, rows)
    plan = rng.choice(PLANS, rows)
    churned = np.where((age < 35) ^ (plan == "pro"), "yes", "no")
    balance[rng.random(rows) < 0.1] = np.nan
    return pd.DataFrame({"age": age, "balance": balance, "plan": plan, TARGET: churned})


def fit_pipeline(table: pd.DataFrame, *, n_estimators: int = 20, random_state: int = 0) -> Pipeline:
    prepare = ColumnTransformer([
        ("numbers", SimpleImputer(strategy="median"), NUMERIC),
        ("plans", OneHotEncoder(handle_unknown="ignore", sparse_output=False), CATEGORICAL),
    ])
    forest = RandomForestClassifier(n_estimators=n_estimators, random_state=random_state, n_jobs=1)
    return Pipeline([("prepare", prepare), ("model", forest)]).fit(table[NUMERIC + CATEGORICAL], table[TARGET])


def card_for(model: Pipeline, table: pd.DataFrame, payload: bytes) -> dict:
    features = table[NUMERIC + CATEGORICAL]
    kinds = {name: signature.column_kind(features[name]) for name in features.columns}
    sig = signature.build_signature(features, table[TARGET], "classification", kinds=kinds, dropped=[])
    return {"model_sha256": storage.sha256_hex(payload), "feature_names": list(features.columns),
            "classes": model.classes_.tolist(), "target_column": TARGET, "task": "classification",
            "signature": sig, "library_versions": models.library_versions()}


def register(registry_uri: str, name: str, model: Pipeline, table: pd.DataFrame, *, promote: bool = True,
             onnx_dir: str | None = None) -> int:
    """Register ``model`` (and point production at it when ``promote``); returns its version."""
    payload = models.dumps(model)
    card = card_for(model, table, payload)
    registry = ModelRegistry(registry_uri, name)
    extra = models.onnx_files(onnx_dir, card["model_sha256"], label="--onnx-dir") if onnx_dir else None
    version, _ = registry.register(model=payload, card=outputs.json_bytes(card),
                                   metrics=json.dumps({"accuracy": 1.0}).encode(), entry={"metrics": {}},
                                   extra_files=extra)
    if promote:
        assert registry.promote(version, reason="test", expected=registry.production())
    return version


def request_body(table: pd.DataFrame, **extra) -> dict:
    """An Open Inference Protocol v2 request with one named input per column (``content_type: pd``)."""
    inputs = []
    for name in table.columns:
        column = table[name]
        if pd.api.types.is_numeric_dtype(column):
            data = [None if pd.isna(v) else float(v) for v in column]
            inputs.append({"name": name, "shape": [len(column)], "datatype": "FP64", "data": data})
        else:
            inputs.append({"name": name, "shape": [len(column)], "datatype": "BYTES",
                           "data": [None if pd.isna(v) else str(v) for v in column]})
    return {"parameters": {"content_type": "pd"}, "inputs": inputs, **extra}
