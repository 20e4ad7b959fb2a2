"""Small scikit-learn Pipelines of either task with a v2 model card (task + signature), built here so the
evaluate, deploy and check_performance tests do not depend on train's options.

The card is written as train writes it: canonical skops bytes, the signature from
``mlops_runtime.signature.build_signature`` over the training table.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mlops_runtime import lineage, models, outputs, signature, storage, tables

TARGET = "y"
FEATURES = ["x1", "x2", "x3"]


def table(task: str, n: int, *, seed: int = 0, shift: float = 0.0, n_classes: int = 2,
          coefficients: tuple[float, float, float] = (3.0, -2.0, 0.5)) -> pd.DataFrame:
    """``n`` rows of three float features; the target depends on them through ``coefficients`` (plus noise).

    ``shift`` moves x1 (covariate drift); regression targets stay away from 0 so MAPE is defined.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    x[:, 0] += shift
    signal = x @ np.asarray(coefficients)
    data = pd.DataFrame(x, columns=FEATURES)
    if task == "regression":
        data[TARGET] = 50.0 + 4.0 * signal + rng.normal(scale=2.0, size=n)
    else:
        noisy = signal + rng.normal(scale=1.5, size=n)
        cuts = np.quantile(noisy, np.linspace(0, 1, n_classes + 1)[1:-1])
        data[TARGET] = np.searchsorted(cuts, noisy)
    return data


def fit(train: pd.DataFrame, task: str, *, estimator: str = "linear", seed: int = 0) -> Pipeline:
    final = {("classification", "linear"): LogisticRegression(max_iter=500),
             ("regression", "linear"): Ridge(alpha=1.0),
             ("classification", "forest"): RandomForestClassifier(n_estimators=20, random_state=seed, n_jobs=1),
             ("regression", "forest"): RandomForestRegressor(n_estimators=20, random_state=seed, n_jobs=1)}
    model = Pipeline([("scale", StandardScaler()), ("model", final[task, estimator])])
    return model.fit(train[FEATURES], train[TARGET])


def write(model: Pipeline, model_uri: str, train: pd.DataFrame, task: str, *, train_uri: str = "train.parquet") -> dict:
    """``model.skops`` and a v2 ``model_card.json`` beside it; returns the card."""
    payload = models.dumps(model)
    record = lineage.input_record("--train-uri", train_uri, tables.table_bytes(train))
    model_signature = signature.build_signature(train[FEATURES], train[TARGET], task,
                                                kinds=dict.fromkeys(FEATURES, "numeric"))
    card = {
        "model_sha256": storage.sha256_hex(payload), "task": task, "signature": model_signature,
        "feature_names": FEATURES, "target_column": TARGET, "n_target_missing": 0,
        "classes": model.classes_.tolist() if task == "classification" else None,
        "library_versions": models.library_versions(),
        "training_data": {"uri": train_uri, "sha256": record["sha256"]},
        "lineage": lineage.lineage("train", {"train_uri": train_uri, "target_column": TARGET}, [record]),
    }
    storage.write_bytes(model_uri, payload)
    storage.write_bytes(models.card_uri_for(model_uri), outputs.json_bytes(card))
    return card


def put(uri: str, data: pd.DataFrame) -> str:
    storage.write_bytes(uri, data.to_csv(index=False).encode() if uri.endswith(".csv") else tables.table_bytes(data))
    return uri
