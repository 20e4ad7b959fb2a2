"""split: stratified, seeded train/test split on s3:// and local paths, lineage, and every refusal."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import datasets
from step_checks import assert_refused, assert_succeeded, run_process

from mlops_runtime import outputs, storage, tables
from mlops_runtime.step_io import read_lineage


def put_table(uri: str, table: pd.DataFrame) -> str:
    storage.write_bytes(uri, table.to_csv(index=False).encode() if uri.endswith(".csv") else tables.table_bytes(table))
    return uri


def read(uri: str) -> pd.DataFrame:
    return tables.read_table(uri)


def iris() -> pd.DataFrame:
    return datasets.load_iris(as_frame=True).frame


def labelled(counts: dict[str, int], seed: int = 0) -> pd.DataFrame:
    """A table with two numeric features and ``counts[label]`` rows of each label."""
    labels = [label for label, n in counts.items() for _ in range(n)]
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"f1": rng.normal(size=len(labels)), "f2": rng.integers(0, 10, len(labels)), "label": labels})


def sort_rows(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values(list(table.columns)).reset_index(drop=True)


def test_split_is_stratified_and_complete(step, base, tmp_path):
    data = iris()
    data_uri = put_table(f"{base}/in/data.parquet", data)
    out = f"{base}/out"
    parameters = {"train_uri": tmp_path / "kfp" / "train_uri", "test_uri": tmp_path / "kfp" / "test_uri"}
    result = step("split", "--data-uri", data_uri, "--output-dir", out,
                  "--train-uri-output-path", parameters["train_uri"], "--test-uri-output-path", parameters["test_uri"])
    expected = {"train_uri": f"{out}/train.parquet", "test_uri": f"{out}/test.parquet"}
    assert_succeeded(result, expected, parameters)
    assert storage.list_uris(out) == sorted([*expected.values(), f"{out}/_manifest.json"])
    assert sorted(o["uri"] for o in outputs.verify_published(out)["objects"]) == sorted(expected.values())

    train, test = read(expected["train_uri"]), read(expected["test_uri"])
    assert (len(train), len(test)) == (120, 30)
    assert train["target"].value_counts().to_dict() == {0: 40, 1: 40, 2: 40}
    assert test["target"].value_counts().to_dict() == {0: 10, 1: 10, 2: 10}
    pd.testing.assert_frame_equal(sort_rows(pd.concat([train, test])), sort_rows(data))

    lineage = read_lineage(storage.read_bytes(expected["test_uri"]))
    assert lineage == read_lineage(storage.read_bytes(expected["train_uri"]))
    assert lineage["component"] == "split"
    assert lineage["parameters"] == {"data_uri": data_uri, "target_column": "target", "task": "auto",
                                     "time_column": None, "test_size": 0.2, "random_state": 42}
    assert lineage["summary"] == {"task": "classification", "stratified": True, "n_rows": 150,
                                  "n_target_missing": 0, "n_train": 120, "n_test": 30}
    [source] = lineage["inputs"]
    assert source["sha256"] == storage.sha256_hex(storage.read_bytes(data_uri)) and source["name"] == "--data-uri"


def test_imbalanced_classes_keep_their_proportions(step, tmp_path):
    data_uri = put_table(str(tmp_path / "data.csv"), labelled({"common": 60, "middle": 30, "rare": 10}))
    result = step("split", "--data-uri", data_uri, "--target-column", "label", "--test-size", "0.3",
                  "--output-dir", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    test = read(str(tmp_path / "out" / "test.parquet"))
    train = read(str(tmp_path / "out" / "train.parquet"))
    assert test["label"].value_counts().to_dict() == {"common": 18, "middle": 9, "rare": 3}
    assert train["label"].value_counts().to_dict() == {"common": 42, "middle": 21, "rare": 7}


def test_the_test_set_is_rounded_up_to_whole_rows(step, tmp_path):
    data_uri = put_table(str(tmp_path / "data.parquet"), iris())
    assert step("split", "--data-uri", data_uri, "--test-size", "0.25", "--output-dir", tmp_path / "out").exit_code == 0
    assert len(read(str(tmp_path / "out" / "test.parquet"))) == 38  # ceil(0.25 * 150)


def test_the_seed_decides_the_split_bytes(step, tmp_path):
    data_uri = put_table(str(tmp_path / "data.parquet"), iris())
    for run, seed in [("a", "7"), ("b", "7"), ("c", "8")]:
        result = step("split", "--data-uri", data_uri, "--random-state", seed, "--output-dir", tmp_path / run)
        assert result.exit_code == 0, result.stderr
    test_bytes = {run: (tmp_path / run / "test.parquet").read_bytes() for run in "abc"}
    assert test_bytes["a"] == test_bytes["b"]
    assert not read(str(tmp_path / "a" / "test.parquet")).equals(read(str(tmp_path / "c" / "test.parquet")))


def test_a_missing_object_is_refused(step, base):
    result = step("split", "--data-uri", f"{base}/in/absent.parquet", "--output-dir", f"{base}/out")
    assert_refused(result, 3, "--data-uri", f"{base}/out")


def test_a_missing_target_column_is_refused(step, base):
    data_uri = put_table(f"{base}/in/data.parquet", iris())
    result = step("split", "--data-uri", data_uri, "--target-column", "species", "--output-dir", f"{base}/out")
    line = assert_refused(result, 3, "--target-column", f"{base}/out")
    assert "'species' not found" in line


@pytest.mark.parametrize(("counts", "message"), [
    ({"a": 20, "b": 20, "c": 1}, "class(es) 'c' of 'label' have a single row"),
    ({"a": 40}, "has a single class ('a')"),
])
def test_classes_that_cannot_be_stratified_are_refused(step, tmp_path, counts, message):
    data_uri = put_table(str(tmp_path / "data.csv"), labelled(counts))
    result = step("split", "--data-uri", data_uri, "--target-column", "label", "--output-dir", tmp_path / "out")
    line = assert_refused(result, 3, "--data-uri", str(tmp_path / "out"))
    assert message in line


@pytest.mark.parametrize(("test_size", "message"), [
    ("0.1", "the test set would have 2 of 12 rows, fewer than the 3 classes"),
    ("0.9", "the train set would have 1 of 12 rows, fewer than the 3 classes"),
])
def test_a_test_size_that_leaves_a_class_out_is_refused(step, tmp_path, test_size, message):
    data_uri = put_table(str(tmp_path / "data.csv"), labelled({"a": 4, "b": 4, "c": 4}))
    result = step("split", "--data-uri", data_uri, "--target-column", "label", "--test-size", test_size,
                  "--output-dir", tmp_path / "out")
    line = assert_refused(result, 3, "--test-size", str(tmp_path / "out"))
    assert message in line


@pytest.mark.parametrize(("option", "value"), [
    ("--test-size", "0"), ("--test-size", "1"), ("--test-size", "1.5"), ("--test-size", "a fifth"),
    ("--random-state", "-1"),
])
def test_out_of_range_options_are_usage_errors(step, tmp_path, option, value):
    data_uri = put_table(str(tmp_path / "data.parquet"), iris())
    result = step("split", "--data-uri", data_uri, option, value, "--output-dir", tmp_path / "out")
    assert_refused(result, 2, option, str(tmp_path / "out"))


@pytest.mark.parametrize(("table", "option", "message"), [
    (lambda t: t.assign(label=None), "--target-column", "target column 'label' has no values (all 20 rows"),
    (lambda t: t.assign(label=["a"] * 19 + [None]), "--data-uri", "has a single class ('a')"),
    (lambda t: t.assign(label=t.f1), "--task", "target 'label' has non-integer values"),
    (lambda t: t.assign(label=t.f2 + np.where(t.index == 4, np.inf, 0.5)), "--data-uri", "infinite values"),
], ids=["target-all-missing", "one-class", "float-target-as-classification", "infinite-target"])
def test_bad_targets_are_refused(step, base, table, option, message):
    data_uri = put_table(f"{base}/in/data.csv", table(labelled({"a": 10, "b": 10})))
    result = step("split", "--data-uri", data_uri, "--target-column", "label", "--task", "classification",
                  "--output-dir", f"{base}/out")
    line = assert_refused(result, 3, option, f"{base}/out")
    assert message in line


def test_an_unknown_output_scheme_is_refused(step, tmp_path):
    data_uri = put_table(str(tmp_path / "in" / "data.parquet"), iris())
    result = step("split", "--data-uri", data_uri, "--output-dir", "ftp://host/out")
    assert_refused(result, 3, "--output-dir", str(tmp_path / "out"))
    assert storage.list_uris(str(tmp_path)) == [data_uri]


def test_the_process_prints_exactly_one_error_line(tmp_path):
    data_uri = put_table(str(tmp_path / "data.csv"), labelled({"a": 4, "b": 4, "c": 4}))
    refused = run_process("split", "--data-uri", data_uri, "--target-column", "label", "--test-size", "0.1",
                          "--output-dir", str(tmp_path / "out"))
    assert refused.returncode == 3 and refused.stdout == ""
    assert len(refused.stderr.splitlines()) == 1 and refused.stderr.startswith("error: --test-size: ")
    assert storage.list_uris(str(tmp_path / "out")) == []
