"""detect_drift with the production model: data quality against its signature, prediction drift against the
profile's predictions section, and the drift share weighted by the card's feature importances."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from mlops_runtime import drift, models, outputs, prediction_drift, signature, storage, tables
from mlops_runtime.errors import ExitCode

N = 3_000


def make_table(rng: np.random.Generator, n: int, *, shift: float = 0.0) -> pd.DataFrame:
    size = rng.normal(shift, 1, n)
    colour = rng.choice(["red", "green", "blue"], n)
    noise = rng.normal(0, 1, n)
    target = ((size + (colour == "red") + rng.normal(0, 0.5, n)) > 0.5).astype(int)
    return pd.DataFrame({"size": size, "colour": colour, "noise": noise, "target": target})


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(1)
    train = make_table(rng, N)
    features = train[["size", "colour", "noise"]]
    model = Pipeline([("prep", ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), ["colour"])],
                                                 remainder="passthrough")),
                      ("forest", RandomForestClassifier(n_estimators=30, min_samples_leaf=5, random_state=0))])
    model.fit(features, train["target"])
    reference_predictions = prediction_drift.out_of_fold_frame(model, features, train["target"])
    profile = drift.build_profile(train, target_column="target", predictions=reference_predictions)
    kinds = {"size": "numeric", "colour": "categorical", "noise": "numeric"}
    model_signature = signature.build_signature(features, train["target"], "classification", kinds=kinds, dropped=[])
    return model, profile, model_signature, rng


def write_model(model, model_signature, uri: str, importances: dict | None) -> str:
    payload = models.dumps(model)
    card = {"model_sha256": storage.sha256_hex(payload), "feature_names": ["size", "colour", "noise"],
            "classes": [0, 1], "target_column": "target", "task": "classification", "signature": model_signature}
    if importances is not None:
        card["feature_importance"] = importances
    storage.write_bytes(uri, payload)
    storage.write_bytes(models.card_uri_for(uri), outputs.json_bytes(card))
    return uri


def test_prediction_drift_and_data_quality(step, trained, s3_prefix, tmp_path):
    model, profile, model_signature, rng = trained
    profile_uri = f"{s3_prefix}/profile.json"
    storage.write_bytes(profile_uri, outputs.json_bytes(profile))
    model_uri = write_model(model, model_signature, f"{s3_prefix}/model/model.skops", None)
    assert {"predicted_class", "probability:0", "probability:1"} == set(profile["predictions"]["features"])

    verdicts = ("prediction_drift_detected", "data_quality_ok", "data_quality_failed")

    def detect(name: str, batch: pd.DataFrame, *extra: str) -> dict:
        uri = f"{s3_prefix}/{name}.parquet"
        storage.write_bytes(uri, tables.table_bytes(batch.drop(columns=["target"])))
        paths = [arg for verdict in verdicts for arg in (f"--{verdict.replace('_', '-')}-output-path",
                                                          str(tmp_path / name / verdict))]
        result = step("detect_drift", "--reference-profile-uri", profile_uri, "--current-uri", uri,
                      "--output-dir", f"{s3_prefix}/out/{name}", "--model-uri", model_uri, *paths, *extra)
        assert result.exit_code == 0, result.stderr
        report = json.loads(storage.read_bytes(f"{s3_prefix}/out/{name}/drift_report.json"))
        # the KFP outputs notify's --active takes: the report's verdicts, and data_quality_failed its negation
        ok = report["data_quality"]["ok"]
        assert {verdict: (tmp_path / name / verdict).read_text() for verdict in verdicts} == {
            "prediction_drift_detected": str(report["predictions"]["dataset"]["drift_detected"]).lower(),
            "data_quality_ok": str(ok).lower(), "data_quality_failed": str(not ok).lower()}
        return report

    stable = detect("stable", make_table(rng, 1000))
    assert stable["data_quality"]["ok"] and not stable["predictions"]["dataset"]["drift_detected"]
    # more positives predicted; a few values beyond the training range, which count at a 1 % quality threshold
    shifted = detect("shifted", make_table(rng, 1000, shift=1.5), "--quality-share-threshold", "0.01")
    assert shifted["predictions"]["dataset"]["drift_detected"]
    assert shifted["predictions"]["features"]["predicted_class"]["drift"]
    assert any("size" in issue and "outside the training range" in issue for issue in shifted["data_quality"]["issues"])
    broken = make_table(rng, 1000)
    broken.loc[:50, "colour"] = "purple"
    broken.loc[:100, "noise"] = np.nan
    bad = detect("bad", broken)
    quality = bad["data_quality"]
    assert not quality["ok"] and quality["features"]["colour"]["unseen_examples"] == ["purple"]
    assert quality["features"]["noise"]["unexpected_missing"]
    page = storage.read_bytes(f"{s3_prefix}/out/bad/drift_report.html").decode()
    assert "Data quality against the model signature" in page and "Prediction drift" in page
    # a column the model cannot take is refused before any statistic (exit 3, one line naming it)
    uri = f"{s3_prefix}/wrong_type.parquet"
    storage.write_bytes(uri, tables.table_bytes(make_table(rng, 300).assign(size="big")))
    result = step("detect_drift", "--reference-profile-uri", profile_uri, "--current-uri", uri,
                  "--output-dir", f"{s3_prefix}/out/wrong", "--model-uri", model_uri)
    assert result.exit_code == ExitCode.BAD_INPUT and "'size'" in result.stderr and len(result.stderr.splitlines()) == 1
    assert storage.list_uris(f"{s3_prefix}/out/wrong") == []


def test_drift_share_weighted_by_importance(step, trained, s3_prefix, tmp_path):
    model, profile, model_signature, rng = trained
    profile_uri = f"{s3_prefix}/profile.json"
    storage.write_bytes(profile_uri, outputs.json_bytes(profile))
    batch = make_table(rng, 1000).assign(noise=lambda t: t["noise"] + 2.0)  # only the useless feature drifts
    batch_uri = f"{s3_prefix}/batch.parquet"
    storage.write_bytes(batch_uri, tables.table_bytes(batch))
    importances = {"size": 0.30, "colour": 0.10, "noise": -0.002}
    model_uri = write_model(model, model_signature, f"{s3_prefix}/model/model.skops", importances)
    base = ["--reference-profile-uri", profile_uri, "--current-uri", batch_uri, "--drift-share-threshold", "0.3"]
    plain = step("detect_drift", *base, "--output-dir", f"{s3_prefix}/plain")
    weighted = step("detect_drift", *base, "--output-dir", f"{s3_prefix}/weighted", "--model-uri", model_uri,
                    "--weight-by-importance", "true")
    assert json.loads(plain.stdout)["drift_detected"] is True  # 1 of 3 >= 0.3
    outcome = json.loads(weighted.stdout)
    assert outcome["drift_detected"] is False and outcome["drift_share"] == 0.0  # noise weighs nothing
    report = json.loads(storage.read_bytes(f"{s3_prefix}/weighted/drift_report.json"))["dataset"]
    assert report["share_weighting"] == "feature_importance"
    assert report["unweighted_drift_share"] == pytest.approx(1 / 3)
    no_importance = write_model(model, model_signature, f"{s3_prefix}/bare/model.skops", None)
    refused = step("detect_drift", *base, "--output-dir", f"{s3_prefix}/bare-out", "--model-uri", no_importance,
                   "--weight-by-importance", "true")
    assert refused.exit_code == ExitCode.MODEL and refused.stderr.startswith("error: --model-uri: ")
    usage = step("detect_drift", *base, "--output-dir", f"{s3_prefix}/x", "--weight-by-importance", "true")
    assert usage.exit_code == ExitCode.USAGE


def test_out_of_fold_reference_outputs():
    rng = np.random.default_rng(9)
    train = make_table(rng, 400)
    features, target = train[["size", "colour", "noise"]], train["target"]
    model = Pipeline([("prep", ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), ["colour"])],
                                                 remainder="passthrough")),
                      ("forest", RandomForestClassifier(n_estimators=10, random_state=0))])
    frame = prediction_drift.out_of_fold_frame(model, features, target)
    assert list(frame.columns) == ["predicted_class", "probability:0", "probability:1"] and len(frame) == 400
    assert np.allclose(frame[["probability:0", "probability:1"]].sum(axis=1), 1.0)
    in_sample = prediction_drift.prediction_frame(model.fit(features, target), features)
    # out of fold, a forest is less sure of itself than on rows it has seen
    assert frame["probability:1"].sub(0.5).abs().mean() < in_sample["probability:1"].sub(0.5).abs().mean()
    tiny = train.head(12).assign(target=[0] * 11 + [1])  # one row of class 1: no two folds possible
    fallback = prediction_drift.out_of_fold_frame(model, tiny[["size", "colour", "noise"]], tiny["target"])
    assert len(fallback) == 12
    regression = prediction_drift.out_of_fold_frame(LinearRegression(), train[["size", "noise"]], train["size"] * 2)
    assert list(regression.columns) == ["prediction"] and np.allclose(regression["prediction"], train["size"] * 2)
