"""split on the tables people have: mixed types and gaps, a real CSV, both tasks, a time-ordered split."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mixed_tables import mixed_table, penguins_csv
from step_checks import assert_refused, run_process

from mlops_runtime import storage, table_files, tables
from mlops_runtime.step_io import read_lineage


def put_table(uri: str, table: pd.DataFrame) -> str:
    storage.write_bytes(uri, table.to_csv(index=False).encode() if uri.endswith(".csv") else tables.table_bytes(table))
    return uri


def split(step, data_uri: str, out: str, *args: str) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    result = step("split", "--data-uri", data_uri, "--output-dir", out, *args)
    assert result.exit_code == 0, result.stderr
    train, test = tables.read_table(f"{out}/train.parquet"), tables.read_table(f"{out}/test.parquet")
    return train, test, read_lineage(storage.read_bytes(f"{out}/test.parquet"))


def test_every_column_type_survives_the_split_in_input_order(step, base, monkeypatch):
    # Small batches and row groups, so rows cross many batch boundaries on their way through.
    monkeypatch.setattr(table_files, "BATCH_ROWS", 7)
    monkeypatch.setattr(table_files, "ROW_GROUP_ROWS", 20)
    data = mixed_table(300)
    data_uri = put_table(f"{base}/in/data.parquet", data)
    train, test, lineage = split(step, data_uri, f"{base}/out", "--target-column", "label")

    assert (len(train), len(test)) == (240, 60)
    assert train.dtypes.to_dict() == test.dtypes.to_dict() == data.dtypes.to_dict()
    for part in (train, test):
        assert part["row_id"].is_monotonic_increasing  # each set keeps the table's row order
        pd.testing.assert_frame_equal(part, data.iloc[part["row_id"]].reset_index(drop=True))
    assert sorted([*train["row_id"], *test["row_id"]]) == list(range(300))
    expected_test = {label: math.ceil(n * 0.2) for label, n in data["label"].value_counts().items()}
    assert abs(sum(expected_test.values()) - 60) <= 2
    for label, n in test["label"].value_counts().items():
        assert abs(n - expected_test[label]) <= 1  # stratified
    assert lineage["summary"]["stratified"] and lineage["summary"]["task"] == "classification"


def test_a_mixed_csv_splits_into_what_pandas_reads(step, tmp_path):
    source = tmp_path / "data.csv"
    source.write_bytes(mixed_table(120).to_csv(index=False).encode())
    train, test, _ = split(step, str(source), str(tmp_path / "out"), "--target-column", "label")
    expected = pd.read_csv(source, low_memory=False)
    assert expected["maybe"].dtype == object and expected["colour"].isna().any()
    # true/false with gaps: pandas reads an object column holding NaN, Parquet gives it back holding None
    expected["maybe"] = expected["maybe"].where(expected["maybe"].notna(), None)
    together = pd.concat([train, test]).sort_values("row_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(together, expected)


def test_penguins_species_is_a_stratified_classification(step, base):
    data_uri = f"{base}/in/penguins.csv"
    storage.write_bytes(data_uri, penguins_csv().read_bytes())
    train, test, lineage = split(step, data_uri, f"{base}/out", "--target-column", "species")
    assert lineage["summary"] == {"task": "classification", "stratified": True, "n_rows": 344,
                                  "n_target_missing": 0, "n_train": 275, "n_test": 69}
    assert test["species"].value_counts().to_dict() == {"Adelie": 30, "Gentoo": 25, "Chinstrap": 14}
    assert train["island"].dtype == "str" and train["sex"].isna().any()


def test_penguins_body_mass_is_a_regression_without_the_rows_missing_it(step, tmp_path):
    train, test, lineage = split(step, str(penguins_csv()), str(tmp_path / "out"), "--target-column", "body_mass_g")
    assert lineage["summary"] == {"task": "regression", "stratified": False, "n_rows": 344,
                                  "n_target_missing": 2, "n_train": 273, "n_test": 69}
    assert not pd.concat([train, test])["body_mass_g"].isna().any()
    assert lineage["parameters"]["task"] == "auto"


def test_rows_without_a_target_are_left_out_and_logged(tmp_path):
    data = mixed_table(100)
    data.loc[[3, 50, 51], "label"] = None
    data_uri = put_table(str(tmp_path / "data.parquet"), data)
    done = run_process("split", "--data-uri", data_uri, "--target-column", "label", "--output-dir",
                       str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert "3 row(s) without a target left out" in done.stderr
    train = tables.read_table(str(tmp_path / "out" / "train.parquet"))
    test = tables.read_table(str(tmp_path / "out" / "test.parquet"))
    assert len(train) + len(test) == 97 and not {3, 50, 51} & {*train["row_id"], *test["row_id"]}
    assert read_lineage((tmp_path / "out" / "test.parquet").read_bytes())["summary"]["n_target_missing"] == 3


@pytest.mark.parametrize("column", ["when_utc", "day", "seconds"])
def test_a_time_column_puts_the_newest_rows_in_the_test_set(step, base, column):
    data = mixed_table(200).assign(seconds=lambda t: t["when_utc"].astype("int64") // 10**6)
    data.loc[data.index[-5:], column] = data[column].iloc[0]  # ties, decided by the row order
    data_uri = put_table(f"{base}/in/data.parquet", data)
    train, test, lineage = split(step, data_uri, f"{base}/out", "--target-column", "amount",
                                 "--time-column", column, "--test-size", "0.25")
    key = pd.to_datetime(data["day"]) if column == "day" else data[column]
    order = np.argsort(key.to_numpy(), kind="stable")
    assert sorted(test["row_id"]) == sorted(order[-50:]) and sorted(train["row_id"]) == sorted(order[:-50])
    assert test["row_id"].is_monotonic_increasing
    assert lineage["summary"]["task"] == "regression" and not lineage["summary"]["stratified"]
    assert lineage["parameters"]["time_column"] == column


def test_a_time_ordered_split_is_the_same_bytes_on_every_run(step, tmp_path):
    data_uri = put_table(str(tmp_path / "data.parquet"), mixed_table(150))
    for run in ("a", "b"):
        split(step, data_uri, str(tmp_path / run), "--target-column", "label", "--time-column", "when_utc")
    for name in ("train.parquet", "test.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_regression_is_not_stratified_and_is_seeded(step, tmp_path):
    data_uri = put_table(str(tmp_path / "data.parquet"), mixed_table(150))
    first, _, lineage = split(step, data_uri, str(tmp_path / "a"), "--target-column", "amount")
    again, _, _ = split(step, data_uri, str(tmp_path / "b"), "--target-column", "amount")
    other, _, _ = split(step, data_uri, str(tmp_path / "c"), "--target-column", "amount", "--random-state", "1")
    assert lineage["summary"]["task"] == "regression" and not lineage["summary"]["stratified"]
    assert first["row_id"].tolist() == again["row_id"].tolist() != other["row_id"].tolist()


def test_an_explicit_task_overrides_the_rule(step, tmp_path):
    data = mixed_table(120).assign(grade=lambda t: t["row_id"] % 30)  # 30 integer values: auto says regression
    data_uri = put_table(str(tmp_path / "data.parquet"), data)
    _, _, auto = split(step, data_uri, str(tmp_path / "a"), "--target-column", "grade")
    _, _, chosen = split(step, data_uri, str(tmp_path / "b"), "--target-column", "grade", "--task", "classification",
                         "--test-size", "0.5")
    assert auto["summary"]["task"] == "regression"
    assert chosen["summary"]["task"] == "classification" and chosen["summary"]["stratified"]


@pytest.mark.parametrize(("args", "option", "message"), [
    (["--time-column", "absent"], "--time-column", "column 'absent' not found"),
    (["--time-column", "colour"], "--time-column", "not an ISO 8601 date"),
    (["--time-column", "flag"], "--time-column", "holds bool values"),
    (["--time-column", "when"], "--time-column", "missing value(s)"),
    (["--task", "regression"], "--task", "regression needs a numeric target"),
])
def test_bad_time_columns_and_tasks_are_refused(step, base, args, option, message):
    data_uri = put_table(f"{base}/in/data.parquet", mixed_table(60).assign(colour=lambda t: t["colour"].fillna("grey")))
    result = step("split", "--data-uri", data_uri, "--target-column", "label", *args, "--output-dir", f"{base}/out")
    line = assert_refused(result, 3, option, f"{base}/out")
    assert message in line


def test_an_unknown_task_is_a_usage_error(step, tmp_path):
    data_uri = put_table(str(tmp_path / "data.parquet"), mixed_table(60))
    result = step("split", "--data-uri", data_uri, "--task", "ranking", "--output-dir", tmp_path / "out")
    assert_refused(result, 2, "--task", str(tmp_path / "out"))


def test_a_float_target_as_classification_is_one_line_in_a_process(tmp_path):
    data_uri = put_table(str(tmp_path / "data.csv"), mixed_table(60))
    refused = run_process("split", "--data-uri", data_uri, "--target-column", "amount", "--task", "classification",
                          "--output-dir", str(tmp_path / "out"))
    assert refused.returncode == 3 and refused.stdout == ""
    assert refused.stderr.splitlines() == [refused.stderr.strip()] and refused.stderr.startswith("error: --task: ")
    assert storage.list_uris(str(tmp_path / "out")) == []


def test_a_parquet_with_a_corrupt_column_chunk_is_bad_input(step, tmp_path):
    good = tables.table_bytes(mixed_table(50))
    chunk = pq.ParquetFile(pa.BufferReader(good)).metadata.row_group(0).column(1)  # column x, read in batches
    start = chunk.data_page_offset
    corrupt = good[:start] + b"\xff" * 64 + good[start + 64:]
    data_uri = str(tmp_path / "data.parquet")
    storage.write_bytes(data_uri, corrupt)
    result = step("split", "--data-uri", data_uri, "--target-column", "label", "--output-dir", tmp_path / "out")
    line = assert_refused(result, 3, "--data-uri", str(tmp_path / "out"))
    assert "not a readable Parquet table" in line
