"""Label-free performance estimation: the CBPE estimate against the realised metric on generated data with
covariate shift, and the estimate_performance step on the real S3 server."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

from mlops_runtime import estimation, storage
from mlops_runtime.errors import ExitCode
from tests.components.gate_fixtures import put_table, write_model

FEATURES = [f"x{i}" for i in range(6)]


@pytest.fixture(scope="module")
def data():
    features, target = make_classification(12_000, n_features=6, n_informative=4, n_redundant=0, n_classes=3,
                                           n_clusters_per_class=1, class_sep=1.0, random_state=3)
    table = pd.DataFrame(features, columns=FEATURES).assign(target=target)
    train, test, pool = table.iloc[:4000], table.iloc[4000:6000], table.iloc[6000:].reset_index(drop=True)
    model = RandomForestClassifier(n_estimators=50, min_samples_leaf=3, random_state=0, n_jobs=1)
    model.fit(train[FEATURES], train["target"])
    confidence = model.predict_proba(pool[FEATURES]).max(axis=1)
    rng = np.random.default_rng(4)
    # covariate shift: a batch drawn towards rows the model is unsure about (P(y | x) unchanged)
    weights = np.exp(-6 * confidence)
    shifted = pool.iloc[rng.choice(len(pool), 2000, replace=False, p=weights / weights.sum())]
    unshifted = pool.iloc[rng.choice(len(pool), 2000, replace=False)]
    return model, train, test, unshifted.reset_index(drop=True), shifted.reset_index(drop=True)


def realised_accuracy(model, table) -> float:
    return float((model.predict(table[FEATURES]) == table["target"]).mean())


def test_the_estimate_tracks_the_realised_metric(data):
    model, _train, test, unshifted, shifted = data
    calibration = estimation.fit_calibration(model.predict_proba(test[FEATURES]), test["target"].to_numpy(),
                                             list(model.classes_))
    for batch in (unshifted, shifted):
        result = estimation.estimate(model.predict_proba(batch[FEATURES]), calibration)
        realised = estimation.realised_metrics(model.predict(batch[FEATURES]), batch["target"].to_numpy(), 3)
        for name in estimation.METRICS:
            m = result["metrics"][name]
            assert m["lower"] <= m["estimate"] <= m["upper"] and m["upper"] - m["lower"] < 0.1
            assert abs(m["estimate"] - realised[name]) < 0.03, (name, m, realised[name])
    assert realised_accuracy(model, shifted) < realised_accuracy(model, unshifted) - 0.05  # the shift matters


def test_the_step_flags_estimated_degradation(step, data, s3_prefix, tmp_path):
    model, train, test, unshifted, shifted = data
    model_uri = f"{s3_prefix}/model/model.skops"
    write_model(model, model_uri, train_uri=f"{s3_prefix}/train.parquet", train=train)
    test_uri = put_table(f"{s3_prefix}/test.parquet", test)
    verdicts = {}
    for name, batch in (("unshifted", unshifted), ("shifted", shifted)):
        batch_uri = put_table(f"{s3_prefix}/{name}.parquet", batch.drop(columns=["target"]))  # unlabeled
        result = step("estimate_performance", "--model-uri", model_uri, "--reference-uri", test_uri,
                      "--current-uri", batch_uri, "--output-dir", f"{s3_prefix}/out/{name}",
                      "--registry-uri", f"{s3_prefix}/registry", "--model-name", "m",
                      "--estimated-degraded-output-path", str(tmp_path / name))
        assert result.exit_code == 0, result.stderr
        verdicts[name] = (tmp_path / name).read_text()
        document = json.loads(storage.read_bytes(f"{s3_prefix}/out/{name}/performance_estimate.json"))
        assert abs(document["metrics"]["accuracy"]["estimate"] - realised_accuracy(model, batch)) < 0.03
    assert verdicts == {"unshifted": "false", "shifted": "true"}
    assert len(storage.list_uris(f"{s3_prefix}/registry/m/estimates")) == 2


def test_the_step_refuses_an_unlabeled_reference(step, data, s3_prefix):
    model, train, test, unshifted, _ = data
    model_uri = f"{s3_prefix}/model/model.skops"
    write_model(model, model_uri, train_uri=f"{s3_prefix}/train.parquet", train=train)
    unlabeled = put_table(f"{s3_prefix}/test.parquet", test.drop(columns=["target"]))
    result = step("estimate_performance", "--model-uri", model_uri, "--reference-uri", unlabeled,
                  "--current-uri", unlabeled, "--output-dir", f"{s3_prefix}/out")
    assert result.exit_code == ExitCode.BAD_INPUT and result.stderr.startswith("error: --reference-uri: ")
    assert storage.list_uris(f"{s3_prefix}/out") == []
