"""The retraining data policy across cycles: deploy snapshots the training data into the registry version,
build_training_set reads its history from there, and every row (the champion's train and test rows, each
new batch) is in the next training table or its holdout, once."""
from __future__ import annotations

import json

import pandas as pd
import task_fixtures
from step_checks import assert_refused

from mlops_runtime import storage, tables
from mlops_runtime.errors import ExitCode

OLD = (3.0, -2.0, 0.5)
NEW = (-3.0, -2.0, 0.5)  # the concept shift: x1 now pulls the other way
ROW_ID = "row_id"


def rows(n: int, first_id: int, *, seed: int, coefficients) -> pd.DataFrame:
    table = task_fixtures.table("classification", n, seed=seed, coefficients=coefficients)
    return table.assign(**{ROW_ID: range(first_id, first_id + n)})


def ok(result) -> dict:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def model_on(step, base: str, name: str, data: pd.DataFrame) -> tuple[str, str]:
    """Fit on the first 80 % of ``data`` and evaluate on the rest (as the training pipeline's split does)."""
    cut = int(0.8 * len(data))
    train, test = data.iloc[:cut], data.iloc[cut:]
    model_uri = f"{base}/{name}/model/model.skops"
    task_fixtures.write(task_fixtures.fit(train, "classification"), model_uri, train, "classification")
    test_uri = task_fixtures.put(f"{base}/{name}/test.parquet", test)
    ok(step("evaluate", "--model-uri", model_uri, "--test-uri", test_uri, "--output-dir", f"{base}/{name}/eval"))
    return model_uri, f"{base}/{name}/eval/metrics.json"


def deploy(step, model: tuple[str, str], registry: str, *extra: str) -> dict:
    return ok(step("deploy", "--model-uri", model[0], "--metrics-uri", model[1], "--registry-uri", registry,
                   "--threshold", "0.5", *extra))


def build(step, base: str, registry: str, batch: str, name: str) -> dict:
    return ok(step("build_training_set", "--registry-uri", registry, "--batch-uri", batch, "--target-column", "y",
                   "--holdout-fraction", "0.2", "--output-dir", f"{base}/{name}"))


def ids(uri: str) -> list[int]:
    return tables.read_table(uri)[ROW_ID].tolist()


def test_two_retraining_cycles_lose_and_duplicate_no_row(step, base):
    registry = f"{base}/registry"
    history = rows(300, 0, seed=1, coefficients=OLD)
    history_uri = task_fixtures.put(f"{base}/history.parquet", history)
    champion = deploy(step, model_on(step, base, "champion", history), registry, "--training-data-uri", history_uri)
    entry = json.loads(storage.read_bytes(f"{registry}/classifier/1/entry.json"))
    snapshot = f"{registry}/classifier/1/training_data.parquet"
    assert champion["promoted"] is True and entry["training_data"]["uri"] == snapshot
    assert entry["training_data"]["rows"] == 300 and sorted(ids(snapshot)) == list(range(300))

    # Cycle 1: the concept shifted; history (train + test of the champion) plus the batch, newest batch rows out.
    batch1 = task_fixtures.put(f"{base}/b1.parquet", rows(1000, 1000, seed=2, coefficients=NEW))
    first = build(step, base, registry, batch1, "cycle1")
    assert (len(ids(first["data_uri"])), len(ids(first["holdout_uri"]))) == (300 + 800, 200)
    assert ids(first["holdout_uri"]) == list(range(1800, 2000))  # the newest rows of the batch
    assert sorted(ids(first["data_uri"]) + ids(first["holdout_uri"])) == list(range(300)) + list(range(1000, 2000))
    challenger = model_on(step, base, "challenger1", tables.read_table(first["data_uri"]))
    promoted = deploy(step, challenger, registry, "--compare-to-production", "--comparison-data-uri",
                      first["holdout_uri"], "--training-data-uri", first["data_uri"])
    assert promoted["promoted"] is True, promoted["reason"]
    entry = json.loads(storage.read_bytes(f"{registry}/classifier/2/entry.json"))
    assert entry["comparison"]["n_rows"] == 200 and entry["comparison"]["data"]["uri"] == first["holdout_uri"]
    assert [source["rows"] for source in entry["training_data"]["sources"]] == [1100, 200]

    # Cycle 2 reads its history from version 2's snapshot (never from the run's objects): every row so far.
    batch2 = task_fixtures.put(f"{base}/b2.parquet", rows(500, 3000, seed=3, coefficients=NEW))
    second = build(step, base, registry, batch2, "cycle2")
    accounting = json.loads(storage.read_bytes(f"{base}/cycle2/accounting.json"))
    assert accounting["sources"][0]["uri"] == f"{registry}/classifier/2/training_data.parquet"
    assert [(s["rows"], s["training"], s["holdout"]) for s in accounting["sources"]] == [(1300, 1300, 0),
                                                                                         (500, 400, 100)]
    everything = ids(second["data_uri"]) + ids(second["holdout_uri"])
    assert len(everything) == len(set(everything)) == 300 + 1000 + 500
    assert set(everything) == set(range(300)) | set(range(1000, 2000)) | set(range(3000, 3500))


def test_history_from_a_registry_without_a_usable_snapshot_is_refused(step, tmp_path):
    base = str(tmp_path)
    registry = f"{base}/registry"
    history = rows(200, 0, seed=1, coefficients=OLD)
    batch = task_fixtures.put(f"{base}/b.parquet", rows(100, 1000, seed=2, coefficients=OLD))
    arguments = ("--registry-uri", registry, "--batch-uri", batch, "--target-column", "y",
                 "--output-dir", f"{base}/out")
    assert "no production model yet" in assert_refused(step("build_training_set", *arguments), ExitCode.BAD_INPUT,
                                                       "--registry-uri", f"{base}/out")
    deploy(step, model_on(step, base, "bare", history), registry)  # registered without --training-data-uri
    assert "no training-data snapshot" in assert_refused(step("build_training_set", *arguments),
                                                         ExitCode.BAD_INPUT, "--registry-uri", f"{base}/out")

    history_uri = task_fixtures.put(f"{base}/history.parquet", history)
    deploy(step, model_on(step, base, "snapshotted", history.iloc[::-1]), registry, "--training-data-uri", history_uri)
    assert ok(step("build_training_set", *arguments))["n_rows"] == 200 + 80
    for uri in storage.list_uris(f"{base}/out"):
        storage.delete(uri)
    snapshot = f"{registry}/classifier/2/training_data.parquet"
    storage.write_bytes(snapshot, tables.table_bytes(history.iloc[:150]))  # rows removed behind the registry's back
    assert "tampered" in assert_refused(step("build_training_set", *arguments), ExitCode.BAD_INPUT,
                                        "--registry-uri", f"{base}/out")
    usage = step("build_training_set", "--history-uri", history_uri, *arguments)
    assert_refused(usage, ExitCode.USAGE, "--history-uri", f"{base}/out")


def test_a_snapshot_whose_holdout_does_not_fit_is_refused(step, tmp_path):
    base = str(tmp_path)
    registry = f"{base}/registry"
    history = rows(200, 0, seed=1, coefficients=OLD)
    history_uri = task_fixtures.put(f"{base}/history.parquet", history)
    deploy(step, model_on(step, base, "champion", history), registry, "--training-data-uri", history_uri)
    odd = task_fixtures.put(f"{base}/odd.parquet", history.drop(columns=ROW_ID).iloc[:50])
    challenger = model_on(step, base, "challenger", rows(300, 500, seed=4, coefficients=OLD))
    before = storage.list_uris(registry)
    result = step("deploy", "--model-uri", challenger[0], "--metrics-uri", challenger[1], "--registry-uri", registry,
                  "--threshold", "0.5", "--compare-to-production", "--comparison-data-uri", odd,
                  "--training-data-uri", history_uri)
    assert "columns differ" in assert_refused(result, ExitCode.BAD_INPUT, "--comparison-data-uri", f"{base}/none")
    assert storage.list_uris(registry) == before
