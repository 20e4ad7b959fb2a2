"""Models and test tables for the evaluate and deploy tests, built here so they do not depend on train, and
the deploy tests' candidates and registry checks.

The model and its card are written as train writes them (canonical skops bytes, the card's fields);
``relabelled`` makes a test table on which a model scores exactly ``(n - errors) / n``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
from sklearn import datasets
from sklearn.ensemble import RandomForestClassifier

from mlops_runtime import lineage, models, outputs, storage, tables
from mlops_runtime.registry import ModelRegistry

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


# ------------------------------------------------------------------------------ deploy

APPROVED = "Model approved for production"
REJECTED = "Model needs improvement"
N_ROWS = 150  # iris: a candidate with k errors scores exactly (150 - k) / 150


@dataclass
class Candidate:
    model_uri: str
    metrics_uri: str
    accuracy: float
    sha256: str


def make_candidate(step, base: str, name: str, *, errors: int, random_state: int = 0,
                   profile: bytes | None = None) -> Candidate:
    """A model, and its metrics from evaluate on a table where it errs ``errors`` times (the ``candidate``
    fixture of conftest.py, bound to a test's step runner and storage)."""
    data = iris()
    model = fit_forest(data, random_state=random_state)
    model_uri = f"{base}/{name}/model/model.skops"
    card = write_model(model, model_uri, train_uri=f"{base}/train.parquet", train=data)
    if profile is not None:
        storage.write_bytes(f"{base}/{name}/model/reference_profile.json", profile)
    test_uri = put_table(f"{base}/{name}/test.parquet", relabelled(model, data, errors))
    result = step("evaluate", "--model-uri", model_uri, "--test-uri", test_uri,
                  "--output-dir", f"{base}/{name}/eval")
    assert result.exit_code == 0, result.stderr
    metrics_uri = f"{base}/{name}/eval/metrics.json"
    accuracy = json.loads(storage.read_bytes(metrics_uri))["accuracy"]
    assert accuracy == (N_ROWS - errors) / N_ROWS
    return Candidate(model_uri, metrics_uri, accuracy, card["model_sha256"])


def deploy(step, who: Candidate, registry: str, *extra: str):
    return step("deploy", "--model-uri", who.model_uri, "--metrics-uri", who.metrics_uri, "--registry-uri", registry,
                *extra)


def outcome(result) -> dict:
    assert result.exit_code == 0, result.stderr
    [line] = result.stdout.splitlines()
    return json.loads(line)


def registry_files(registry: str) -> dict[str, bytes]:
    """The registry's objects; the local lock file of conditional replacements is an implementation detail."""
    return {name: data for name, data in listing(registry).items() if not name.endswith(".production.json.lock")}


def pointer(registry: str, model: str = "classifier") -> dict:
    return json.loads(storage.read_bytes(f"{registry}/{model}/production.json"))


def assert_complete(registry: str, model: str = "classifier") -> list[int]:
    """Every version in the registry is whole and consistent with its entry and the sha256 index."""
    store = ModelRegistry(registry, model)
    versions = store.versions()
    for version in versions:
        entry = store.entry(version)
        folder = store.version_uri(version)
        model_bytes = storage.read_bytes(f"{folder}/model.skops")
        assert entry["version"] == version and entry["model_uri"] == f"{folder}/model.skops"
        assert storage.sha256_hex(model_bytes) == entry["model_sha256"]
        assert json.loads(storage.read_bytes(f"{folder}/model_card.json"))["model_sha256"] == entry["model_sha256"]
        assert json.loads(storage.read_bytes(f"{folder}/metrics.json"))["model_sha256"] == entry["model_sha256"]
        assert store.find_by_sha(entry["model_sha256"]) == version
    return versions
