"""The prediction log (bounded buffer, time partitions, outage counted) and the join_labels step."""
from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from mlops_runtime import prediction_log, storage, tables
from mlops_runtime.prediction_log import PredictionLog, read_prediction_logs
from tests.serving.serving_fixtures import customers, fit_pipeline

MODEL = "churn"
T0 = dt.datetime(2026, 12, 1, 10, 58, tzinfo=dt.UTC)


def inputs(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"age": np.arange(start, start + n, dtype=float), "plan": ["pro"] * n})


def log_requests(log: PredictionLog, count: int, *, rows: int = 2, at: dt.datetime = T0) -> list[str]:
    ids = []
    for index in range(count):
        request_id = f"req-{index}"
        frame = inputs(rows, index * rows)
        assert log.record(request_id, 3, frame, {"prediction": ["yes"] * rows},
                          timestamp=at + dt.timedelta(minutes=index))
        ids.append(request_id)
    return ids


@pytest.mark.parametrize("where", ["local", "s3"])
def test_records_land_in_hour_partitions_and_read_back_in_order(where, tmp_path, s3_prefix):
    root = str(tmp_path / "logs") if where == "local" else f"{s3_prefix}/logs"
    log = PredictionLog(root, MODEL, max_rows=1000, max_seconds=3600)
    ids = log_requests(log, 4)  # 10:58, 10:59, 11:00, 11:01
    stats = log.close()
    assert stats["logged_rows"] == 8 and stats["dropped_rows"] == 0 and stats["written_files"] == 2
    names = sorted(uri[len(root):] for uri in storage.list_uris(root))
    assert [name.rsplit("/", 1)[0] for name in names] == [f"/{MODEL}/date=2026-12-01/hour=10",
                                                          f"/{MODEL}/date=2026-12-01/hour=11"]
    table = read_prediction_logs(root, MODEL, start=T0, end=T0 + dt.timedelta(hours=1))
    assert table["request_id"].drop_duplicates().tolist() == ids
    assert table["age"].tolist() == list(map(float, range(8)))
    assert list(table.columns) == [*prediction_log.META_COLUMNS, "age", "plan", "prediction"]
    later = read_prediction_logs(root, MODEL, start=T0 + dt.timedelta(minutes=2), end=T0 + dt.timedelta(hours=1))
    assert later["request_id"].drop_duplicates().tolist() == ids[2:]


def test_a_full_batch_is_written_without_waiting(tmp_path):
    log = PredictionLog(str(tmp_path), MODEL, max_rows=4, max_seconds=3600)
    log_requests(log, 2)
    for _ in range(100):
        if log.stats()["logged_rows"] == 4:
            break
        import time

        time.sleep(0.05)
    assert log.stats()["logged_rows"] == 4
    log.close()


def test_a_full_buffer_drops_and_counts(tmp_path):
    one = prediction_log.approx_bytes(inputs(2), {"prediction": ["no", "no"]})
    log = PredictionLog(str(tmp_path), MODEL, max_rows=10**6, max_seconds=3600, max_buffered_bytes=one * 3)
    accepted = [log.record(f"r{i}", 1, inputs(2), {"prediction": ["no", "no"]}, timestamp=T0) for i in range(10)]
    assert 0 < sum(accepted) < 10
    stats = log.close()
    assert stats["dropped_rows"] == 2 * accepted.count(False)
    assert stats["logged_rows"] == 2 * sum(accepted)
    assert not log.record("late", 1, inputs(1), {"prediction": ["no"]})  # closed


def test_a_storage_outage_is_counted_not_raised():
    log = PredictionLog("s3://no-such-bucket-mlops-log/x", MODEL, max_rows=10, max_seconds=3600)
    log_requests(log, 3)
    stats = log.close()
    assert stats["dropped_rows"] == 6 and stats["logged_rows"] == 0 and stats["failed_writes"] == 2


def test_an_empty_range_is_bad_input(tmp_path):
    from mlops_runtime.errors import BadInputError

    with pytest.raises(BadInputError, match="no logged predictions"):
        read_prediction_logs(str(tmp_path), MODEL, start=T0, end=T0 + dt.timedelta(hours=1))


@pytest.fixture
def served_log(tmp_path):
    """A prediction log written as serve writes it: the model's checked inputs and its outputs."""
    table = customers()
    model = fit_pipeline(table)
    log = PredictionLog(str(tmp_path / "logs"), MODEL, max_rows=10**6, max_seconds=3600)
    features = table.drop(columns=["churned"])
    for start in range(0, 100, 4):
        rows = features.iloc[start:start + 4]
        proba = model.predict_proba(rows)
        log.record(f"r{start}", 1, rows, {"prediction": model.predict(rows), "proba_no": proba[:, 0],
                                         "proba_yes": proba[:, 1]}, timestamp=T0 + dt.timedelta(seconds=start))
    log.close()
    labels = pd.DataFrame({"request_id": [f"r{i - i % 4}" for i in range(100)], "row": [i % 4 for i in range(100)],
                           "churned": table["churned"].iloc[:100].to_numpy()})
    return tmp_path, table, model, labels.iloc[:-10]  # the last ten labels have not arrived


def test_join_labels_makes_a_batch_check_performance_reads(step, served_log):
    root, table, model, labels = served_log
    tables_dir = root / "in"
    tables_dir.mkdir()
    labels.to_csv(tables_dir / "labels.csv", index=False)
    result = step("join_labels", "--log-uri", root / "logs", "--model-name", MODEL, "--start", "2026-12-01T10:00:00Z",
                  "--end", "2026-12-01T12:00:00Z", "--labels-uri", tables_dir / "labels.csv",
                  "--target-column", "churned", "--output-dir", root / "joined", "--with-predictions")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["n_rows"] == 90 and summary["n_unlabeled_predictions"] == 10 and summary["n_unmatched_labels"] == 0
    batch = tables.read_table(summary["batch_uri"])
    assert batch["churned"].tolist() == table["churned"].iloc[:90].tolist()
    assert batch["prediction"].tolist() == model.predict(table.drop(columns=["churned"]).iloc[:90]).tolist()

    plain = step("join_labels", "--log-uri", root / "logs", "--model-name", MODEL, "--start", "2026-12-01T10:00Z",
                 "--end", "2026-12-01T12:00Z", "--labels-uri", tables_dir / "labels.csv",
                 "--target-column", "churned", "--output-dir", root / "plain")
    plain_uri = json.loads(plain.stdout.splitlines()[-1])["batch_uri"]
    assert list(tables.read_table(plain_uri).columns) == ["age", "balance", "plan", "churned"]


def test_a_joined_batch_feeds_check_performance(step, tmp_path):
    """Numeric columns only: check_performance on main does not take text features yet."""
    table = customers().drop(columns=["plan"]).dropna().rename(columns={"churned": "target"})
    numeric = table.drop(columns=["target"])
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(numeric, table["target"])
    log = PredictionLog(str(tmp_path / "logs"), MODEL, max_rows=10**6, max_seconds=3600)
    for index in range(60):
        rows = numeric.iloc[[index]]
        log.record(f"r{index}", 1, rows, {"prediction": model.predict(rows)}, timestamp=T0)
    log.close()
    pd.DataFrame({"request_id": [f"r{i}" for i in range(60)], "target": table["target"].iloc[:60]}).to_csv(
        tmp_path / "labels.csv", index=False)
    joined = step("join_labels", "--log-uri", tmp_path / "logs", "--model-name", MODEL, "--start", "2026-12-01T10:00Z",
                  "--end", "2026-12-01T11:00Z", "--labels-uri", tmp_path / "labels.csv",
                  "--output-dir", tmp_path / "joined")
    assert joined.exit_code == 0, joined.stderr
    from tests.components.gate_fixtures import write_model

    model_uri = str(tmp_path / "model" / "model.skops")
    write_model(model, model_uri, train_uri=str(tmp_path / "train.parquet"), train=table)
    table.to_csv(tmp_path / "test.csv", index=False)
    evaluated = step("evaluate", "--model-uri", model_uri, "--test-uri", tmp_path / "test.csv",
                     "--output-dir", tmp_path / "eval")
    assert evaluated.exit_code == 0, evaluated.stderr
    checked = step("check_performance", "--batch-uri", json.loads(joined.stdout.splitlines()[-1])["batch_uri"],
                   "--model-uri", model_uri, "--baseline-metrics-uri", tmp_path / "eval" / "metrics.json",
                   "--n-bootstrap", "200", "--output-dir", tmp_path / "perf")
    assert checked.exit_code == 0, checked.stderr


def test_join_labels_without_labels_is_the_unlabeled_batch(step, served_log):
    root, *_ = served_log
    result = step("join_labels", "--log-uri", root / "logs", "--model-name", MODEL, "--start", "2026-12-01T10:00:00",
                  "--end", "2026-12-01T11:00:00", "--output-dir", root / "batch")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["n_rows"] == 100


@pytest.mark.parametrize("change, option", [
    (lambda labels: labels.drop(columns=["request_id"]), "--labels-uri"),
    (lambda labels: pd.concat([labels, labels.head(1)]), "--labels-uri"),
    (lambda labels: labels.assign(churned=None), "--labels-uri"),
    (lambda labels: labels.assign(request_id="unknown"), "--labels-uri"),
    (lambda labels: labels.drop(columns=["churned"]), "--target-column"),
])
def test_join_labels_refuses_bad_labels(step, served_log, change, option):
    root, _, _, labels = served_log
    change(labels).to_csv(root / "labels.csv", index=False)
    result = step("join_labels", "--log-uri", root / "logs", "--model-name", MODEL, "--start", "2026-12-01T10:00Z",
                  "--end", "2026-12-01T11:00Z", "--labels-uri", root / "labels.csv", "--target-column", "churned",
                  "--output-dir", root / "out")
    assert result.exit_code == 3 and result.stderr.startswith(f"error: {option}: "), result.stderr
    assert not (root / "out").exists()


@pytest.mark.parametrize("start, end, option", [("yesterday", "2026-12-01T11:00Z", "--start"),
                                                 ("2026-12-01T11:00Z", "2026-12-01T10:00Z", "--end"),
                                                 ("2026-01-01T00:00Z", "2026-12-01T10:00Z", "--end")])
def test_join_labels_refuses_bad_ranges(step, served_log, start, end, option):
    root, *_ = served_log
    result = step("join_labels", "--log-uri", root / "logs", "--model-name", MODEL, "--start", start, "--end", end,
                  "--output-dir", root / "out")
    assert result.exit_code == 3 and result.stderr.startswith(f"error: {option}: "), result.stderr


def test_logged_probabilities_are_named_as_the_reference_profile_names_them():
    from sklearn.linear_model import LogisticRegression

    from mlops_runtime import prediction_drift

    features = pd.DataFrame({"x": np.arange(30, dtype=float)})
    model = LogisticRegression().fit(features, np.repeat([0.0, 1.0, 2.0], 10))  # whole-number float classes
    expected = prediction_drift.prediction_frame(model, features)
    proba = model.predict_proba(features)
    log = pd.DataFrame({prediction_log.PREDICTION_COLUMN: model.predict(features),
                        **{prediction_log.probability_column(c): proba[:, i] for i, c in enumerate(model.classes_)}})
    served = prediction_log.logged_predictions(log)
    assert list(served.columns) == list(expected.columns) == [
        "predicted_class", "probability:0", "probability:1", "probability:2"]
    pd.testing.assert_frame_equal(served, expected)
