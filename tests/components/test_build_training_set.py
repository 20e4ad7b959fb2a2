"""build_training_set: windows, a holdout of the newest batch rows only, and every row accounted for."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlops_runtime import storage, tables
from mlops_runtime.errors import ExitCode
from tests.components.step_checks import assert_refused


def table(n: int, start: str, *, seed: int, missing_target: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x": rng.normal(size=n), "colour": rng.choice(["red", "blue"], size=n),
                          "day": pd.date_range(start, periods=n, freq="h").strftime("%Y-%m-%dT%H:%M"),
                          "target": rng.integers(0, 2, size=n).astype(float)})
    frame.loc[frame.index[:missing_target], "target"] = np.nan
    return frame


def put(uri: str, frame: pd.DataFrame) -> str:
    storage.write_bytes(uri, tables.table_bytes(frame))
    return uri


def build(step, base: str, *args: str):
    return step("build_training_set", "--output-dir", storage.join(base, "out"), *args)


def sources(base: str) -> tuple[str, list[str]]:
    history = put(storage.join(base, "history.parquet"), table(100, "2026-01-01", seed=1))
    batches = [put(storage.join(base, f"b{i}.parquet"), table(50, f"2026-02-0{i + 1}", seed=10 + i,
                                                              missing_target=3 * i)) for i in range(3)]
    return history, batches


def test_every_row_is_accounted_for_and_the_holdout_is_the_newest_batch_rows(step, base):
    history, batches = sources(base)
    result = build(step, base, "--history-uri", history, "--batch-uris", json.dumps(batches),
                   "--time-column", "day", "--holdout-fraction", "0.2")
    assert result.exit_code == 0, result.stderr
    outputs = json.loads(result.stdout)
    accounting = json.loads(storage.read_bytes(storage.join(base, "out", "accounting.json")))
    for source in accounting["sources"]:
        assert source["rows"] == source["training"] + source["holdout"] + source["outside_window"] + \
            source["target_missing"]
    assert [s["rows"] for s in accounting["sources"]] == [100, 50, 50, 50]
    assert [s["target_missing"] for s in accounting["sources"]] == [0, 0, 3, 6]
    train, holdout = tables.read_table(outputs["data_uri"]), tables.read_table(outputs["holdout_uri"])
    labeled_batch_rows = 150 - 9
    assert len(holdout) == int(0.2 * labeled_batch_rows) and len(train) == 100 + labeled_batch_rows - len(holdout)
    assert accounting["sources"][0]["holdout"] == 0  # the champion trained on the history: never held out
    assert holdout["day"].min() >= train["day"].max()  # the newest rows: neither model trained on them
    assert outputs["n_rows"] == len(train) and list(train.columns) == ["x", "colour", "day", "target"]


@pytest.mark.parametrize(("window", "training_sources"), [("batches:2", [0, 0, 47, 44]), ("rows:60", None),
                                                          ("days:1", None)])
def test_windows_keep_the_newest_rows(step, base, window, training_sources):
    history, batches = sources(base)
    result = build(step, base, "--history-uri", history, "--batch-uris", json.dumps(batches), "--time-column",
                   "day", "--window", window, "--holdout-fraction", "0")
    assert result.exit_code == 0, result.stderr
    accounting = json.loads(storage.read_bytes(storage.join(base, "out", "accounting.json")))
    kept = [s["training"] for s in accounting["sources"]]
    if training_sources:
        assert kept == training_sources
    elif window == "rows:60":
        assert sum(kept) == 60 and kept[:2] == [0, 0]
    else:  # the last day before the newest row (2026-02-05T01:00, the last hourly row of the third batch)
        days = pd.to_datetime(tables.read_table(json.loads(result.stdout)["data_uri"])["day"])
        assert days.max() == pd.Timestamp("2026-02-05T01:00") and days.min() == pd.Timestamp("2026-02-04T01:00")
        assert sum(kept) == len(days) and kept[:2] == [0, 0]
    assert json.loads(result.stdout)["holdout_uri"] == ""


def test_labels_of_another_type_than_the_history_are_bad_input(step, base):
    history, _ = sources(base)
    odd = table(20, "2026-03-01", seed=5).assign(target="yes")
    batch = put(storage.join(base, "odd.parquet"), odd)
    result = build(step, base, "--history-uri", history, "--batch-uris", json.dumps([batch]))
    line = assert_refused(result, ExitCode.BAD_INPUT, "--batch-uris", storage.join(base, "out"))
    assert "column 'target' holds 'yes'" in line


def test_batches_with_extra_columns_are_conformed_and_missing_columns_refused(step, base):
    history, _ = sources(base)
    logged = put(storage.join(base, "logged.parquet"), table(20, "2026-03-01", seed=6).assign(prediction=1))
    assert build(step, base, "--history-uri", history, "--batch-uris", json.dumps([logged])).exit_code == 0
    short = put(storage.join(base, "short.parquet"), table(20, "2026-03-01", seed=7).drop(columns="colour"))
    result = step("build_training_set", "--output-dir", storage.join(base, "out2"), "--history-uri", history,
                  "--batch-uris", json.dumps([short]))
    assert "missing column(s) of the history: colour" in assert_refused(result, ExitCode.BAD_INPUT, "--batch-uris",
                                                                        storage.join(base, "out2"))


@pytest.mark.parametrize(("args", "code", "option"), [
    (["--window", "weeks:2"], ExitCode.USAGE, "--window"),
    (["--window", "rows:0"], ExitCode.USAGE, "--window"),
    (["--window", "days:3"], ExitCode.USAGE, "--window"),  # no --time-column
    (["--holdout-fraction", "0.6"], ExitCode.USAGE, "--holdout-fraction"),
    (["--batch-uris", "{}"], ExitCode.BAD_INPUT, "--batch-uris"),
    ([], ExitCode.BAD_INPUT, "--batch-uris"),
])
def test_bad_options(step, tmp_path, args, code, option):
    assert_refused(step("build_training_set", "--output-dir", tmp_path / "out", *args), code, option,
                   str(tmp_path / "out"))
