"""Monitoring on served traffic, end to end: the serve image (docker run) logs real v2 requests to S3, SIGTERM
flushes the log, claim_batches claims the new log partition and detect_drift judges it.

Two serving sessions against the same registry and log: in-distribution traffic first (no drift), then a
drifted feed (older customers with larger balances). Each session's partition is claimed once, by its own
monitoring run, and holds exactly the rows that were answered.
"""
from __future__ import annotations

import datetime as dt
import json
import time

import pytest

from mlops_runtime import drift, prediction_drift, tables
from tests.serving.serving_fixtures import TARGET, customers, fit_pipeline, register, request_body
from tests.serving.test_serve_image import MODEL, client, serve  # noqa: F401 (fixtures)

ROWS_PER_REQUEST = 8
REQUESTS = 40


@pytest.fixture
def monitored(s3_prefix, tmp_path):
    train = customers(rows=800, seed=11)
    model = fit_pipeline(train)
    registry = f"{s3_prefix}/registry"
    register(registry, MODEL, model, train)
    profile = tmp_path / "profile.json"
    features = train.drop(columns=[TARGET])
    drift.write_profile(train, str(profile), target_column=TARGET,
                        predictions=prediction_drift.prediction_frame(model, features))
    return registry, f"{s3_prefix}/predictions", profile


def _clear_of_an_hour_boundary(margin_s: float = 90) -> None:
    """Log files are per hour: a session that straddles one would leave two partitions."""
    now = dt.datetime.now(dt.UTC)
    left = 3600 - (now.minute * 60 + now.second)
    if left < margin_s:
        time.sleep(left + 1)


def _serve_and_stop(serve, registry: str, log_uri: str, traffic) -> set[str]:  # noqa: F811
    _clear_of_an_hour_boundary()
    server = serve("--registry-uri", registry, "--model-name", MODEL, "--log-uri", log_uri,
                   "--log-max-seconds", "3600", "--log-max-rows", "1000000")
    answered = set()
    for start in range(0, len(traffic), ROWS_PER_REQUEST):
        answer = server.infer(request_body(traffic.iloc[start:start + ROWS_PER_REQUEST]))
        assert answer.status_code == 200, answer.text
        answered.add(answer.json()["id"])
    assert server.stop() == 0, server.logs()  # SIGTERM: the buffered log is written before the exit
    return answered


def _claim(step, log_uri: str, registry: str, run_id: str) -> list[str]:
    result = step("claim_batches", "--batches-uri", log_uri, "--file-name", "prediction-log",
                  "--registry-uri", registry, "--model-name", MODEL, "--run-id", run_id)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])["batch_uris"]


def _drift_report(step, profile, partition: str, output_dir) -> dict:
    result = step("detect_drift", "--reference-profile-uri", profile, "--current-uri", partition,
                  "--target-column", TARGET, "--output-dir", output_dir)
    assert result.exit_code == 0, result.stderr
    return json.loads((output_dir / "drift_report.json").read_text())


def test_served_traffic_is_claimed_and_checked_for_drift(serve, step, monitored, tmp_path):  # noqa: F811
    registry, log_uri, profile = monitored
    clean = customers(rows=REQUESTS * ROWS_PER_REQUEST, seed=12).drop(columns=[TARGET])
    drifted = customers(rows=REQUESTS * ROWS_PER_REQUEST, seed=13).drop(columns=[TARGET])
    drifted["age"] = drifted["age"] + 25
    drifted["balance"] = drifted["balance"] * 2.5

    clean_ids = _serve_and_stop(serve, registry, log_uri, clean)
    [clean_partition] = _claim(step, log_uri, registry, "run-clean")
    clean_report = _drift_report(step, profile, clean_partition, tmp_path / "clean")

    drifted_ids = _serve_and_stop(serve, registry, log_uri, drifted)
    [drifted_partition] = _claim(step, log_uri, registry, "run-drifted")  # the clean one is claimed already
    drifted_report = _drift_report(step, profile, drifted_partition, tmp_path / "drifted")

    assert clean_report["current"]["n_rows"] == drifted_report["current"]["n_rows"] == len(clean)
    assert clean_report["dataset"]["drift_detected"] is False, clean_report["dataset"]
    assert drifted_report["dataset"]["drift_detected"] is True, drifted_report["dataset"]
    assert clean_report["dataset"]["drifted_features"] == []
    assert sorted(drifted_report["dataset"]["drifted_features"]) == ["age", "balance"]
    assert drifted_report["predictions"]["source"] == "prediction_log"
    for partition, answered in ((clean_partition, clean_ids), (drifted_partition, drifted_ids)):
        logged = tables.read_table(partition, label="partition")
        assert set(logged["request_id"]) == answered and len(answered) == REQUESTS
