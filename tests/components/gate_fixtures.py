"""Models and test tables for the evaluate and deploy tests, built here so they do not depend on train.

The model and its card are written as train writes them (canonical skops bytes, the card's fields);
``relabelled`` makes a test table on which a model scores exactly ``(n - errors) / n``.
"""
from __future__ import annotations

import pandas as pd
from sklearn import datasets
from sklearn.ensemble import RandomForestClassifier

from mlops_runtime import lineage, models, outputs, storage, tables

TARGET = "target"


def iris() -> pd.DataFrame:
    """150 rows: four float features ('sepal length (cm)'...) and an integer 'target' (0, 1, 2)."""
    return datasets.load_iris(as_frame=True).frame


def fit_forest(train: pd.DataFrame, *, random_state: int = 0, n_estimators: int = 10,
               max_depth: int | None = None) -> RandomForestClassifier:
    model = RandomForestClassifier(n_estimators=n_estimators, max_depth=max_depth, random_state=random_state, n_jobs=1)
    return model.fit(train.drop(columns=[TARGET]), train[TARGET])


def put_table(uri: str, table: pd.DataFrame) -> str:
    storage.write_bytes(uri, table.to_csv(index=False).encode() if uri.endswith(".csv") else tables.table_bytes(table))
    return uri


def write_model(model: RandomForestClassifier, model_uri: str, *, train_uri: str, train: pd.DataFrame,
                classes: list | None = None) -> dict:
    """Write ``model.skops`` and ``model_card.json`` beside it; returns the card."""
    payload = models.dumps(model)
    train_bytes = tables.table_bytes(train)
    record = lineage.input_record("--train-uri", train_uri, train_bytes)
    parameters = {"train_uri": train_uri, "target_column": TARGET}
    card = {
        "model_sha256": storage.sha256_hex(payload),
        "feature_names": [str(name) for name in model.feature_names_in_],
        "classes": classes if classes is not None else model.classes_.tolist(),
        "target_column": TARGET,
        "parameters": model.get_params(deep=False),
        "library_versions": models.library_versions(),
        "training_data": {"uri": train_uri, "sha256": record["sha256"]},
        "lineage": lineage.lineage("train", parameters, [record]),
    }
    storage.write_bytes(model_uri, payload)
    storage.write_bytes(models.card_uri_for(model_uri), outputs.json_bytes(card))
    return card


def relabelled(model: RandomForestClassifier, table: pd.DataFrame, errors: int) -> pd.DataFrame:
    """``table`` labelled with the model's own predictions, then ``errors`` rows given another class."""
    out = table.copy()
    predicted = model.predict(out.drop(columns=[TARGET]))
    classes = list(model.classes_)
    wrong = [classes[(classes.index(p) + 1) % len(classes)] for p in predicted[:errors]]
    out[TARGET] = list(wrong) + list(predicted[errors:])
    return out


def listing(prefix: str) -> dict[str, bytes]:
    """Every object under ``prefix`` by its relative name, with its bytes."""
    return {uri[len(prefix) + 1:]: storage.read_bytes(uri) for uri in storage.list_uris(prefix)}
