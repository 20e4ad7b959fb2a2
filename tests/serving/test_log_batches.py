"""Prediction-log partitions as monitoring batches: claim_batches lists them in time order, detect_drift and
estimate_performance take one as --current-uri (metadata and predictions are not features)."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from mlops_runtime import drift, prediction_drift, prediction_log
from mlops_runtime.prediction_log import PredictionLog
from mlops_runtime.registry import ModelRegistry
from tests.serving.serving_fixtures import TARGET, customers, fit_pipeline, register

MODEL = "churn"
T0 = dt.datetime(2026, 12, 1, 9, 50, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A registered model, its reference profile with predictions, and a log of served traffic over two hours."""
    root = tmp_path_factory.mktemp("log-batches")
    train = customers(rows=600, seed=1)
    model = fit_pipeline(train)
    registry = str(root / "registry")
    register(registry, MODEL, model, train)
    features = train.drop(columns=[TARGET])
    drift.write_profile(train, str(root / "profile.json"), target_column=TARGET,
                        predictions=prediction_drift.prediction_frame(model, features))
    customers(rows=300, seed=2).to_csv(root / "reference.csv", index=False)
    log = PredictionLog(str(root / "logs"), MODEL, max_rows=10**6, max_seconds=3600)
    traffic = customers(rows=400, seed=5).drop(columns=[TARGET])
    for index, start in enumerate(range(0, 400, 5)):
        rows = traffic.iloc[start:start + 5]
        proba = model.predict_proba(rows)
        log.record(f"r{index}", 1, rows, {"prediction": model.predict(rows), "proba_no": proba[:, 0],
                                         "proba_yes": proba[:, 1]}, timestamp=T0 + dt.timedelta(minutes=index // 4))
    assert log.close()["logged_rows"] == 400
    return root, registry


def test_claim_batches_takes_log_partitions_in_time_order(step, served):
    root, registry = served
    result = step("claim_batches", "--batches-uri", root / "logs", "--file-name", "prediction-log",
                  "--registry-uri", registry, "--model-name", MODEL, "--run-id", "run-1")
    assert result.exit_code == 0, result.stderr
    claimed = json.loads(result.stdout.splitlines()[-1])["batch_uris"]
    assert claimed == prediction_log.list_partitions(str(root / "logs"), MODEL)
    assert [uri.split("/hour=")[1][:2] for uri in claimed] == ["09", "10"]  # one file per hour, oldest first


def test_detect_drift_reads_a_partition_with_its_logged_predictions(step, served):
    root, _ = served
    partition = prediction_log.list_partitions(str(root / "logs"), MODEL)[-1]
    result = step("detect_drift", "--reference-profile-uri", root / "profile.json", "--current-uri", partition,
                  "--target-column", TARGET, "--output-dir", root / "drift")
    assert result.exit_code == 0, result.stderr
    report = json.loads((root / "drift" / "drift_report.json").read_text())
    assert sorted(report["features"]) == ["age", "balance", "plan"]
    assert report["predictions"]["source"] == "prediction_log"
    assert sorted(report["predictions"]["features"]) == ["predicted_class", "probability:no", "probability:yes"]


def test_estimate_performance_reads_a_partition(step, served):
    root, registry = served
    partition = prediction_log.list_partitions(str(root / "logs"), MODEL)[0]
    model_uri = ModelRegistry(registry, MODEL).resolve_model_uri("production")
    result = step("estimate_performance", "--model-uri", model_uri, "--reference-uri", root / "reference.csv",
                  "--current-uri", partition, "--output-dir", root / "estimate", "--model-name", MODEL)
    assert result.exit_code == 0, result.stderr
    estimate = json.loads((root / "estimate" / "performance_estimate.json").read_text())
    assert estimate["n_rows"] == 200  # 09:50-09:59: 40 requests of 5 rows
