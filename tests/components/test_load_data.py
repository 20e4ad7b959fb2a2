"""load_data: bundled datasets and CSV/Parquet sources on s3:// and local paths, lineage, and every refusal."""
from __future__ import annotations

import io
import json
import warnings

import pandas as pd
import pyarrow.parquet as pq
import pytest
from mixed_tables import mixed_table, penguins_csv
from sklearn import datasets
from step_checks import assert_refused, assert_succeeded, run_process

from mlops_runtime import outputs, storage, table_files, tables
from mlops_runtime.step_io import read_lineage

SHAPES = {"iris": (150, 5), "wine": (178, 14), "breast_cancer": (569, 31), "digits": (1797, 65)}


def read_output(uri: str) -> tuple[pd.DataFrame, dict]:
    data = storage.read_bytes(uri)
    return tables.parse_table(data, uri), read_lineage(data)


def put(uri: str, data: bytes) -> str:
    storage.write_bytes(uri, data)
    return uri


def test_bundled_dataset_renames_the_label_and_records_lineage(step, base, tmp_path):
    out = f"{base}/out"
    parameter = tmp_path / "kfp" / "data_uri"
    result = step("load_data", "--dataset", "wine", "--target-column", "cultivar", "--output-dir", out,
                  "--data-uri-output-path", parameter)
    data_uri = f"{out}/data.parquet"
    assert_succeeded(result, {"data_uri": data_uri}, {"data_uri": parameter})
    assert storage.list_uris(out) == [f"{out}/_manifest.json", data_uri]
    assert [o["uri"] for o in outputs.verify_published(out)["objects"]] == [data_uri]

    table, lineage = read_output(data_uri)
    assert list(tables.table_metadata(storage.read_bytes(data_uri))) == ["mlops.lineage"]
    wine = datasets.load_wine(as_frame=True).frame
    expected = wine.drop(columns=["target"]).assign(cultivar=wine["target"])
    pd.testing.assert_frame_equal(table, expected)
    assert lineage["component"] == "load_data"
    assert lineage["parameters"] == {"dataset": "wine", "source_uri": None, "target_column": "cultivar"}
    [source] = lineage["inputs"]
    assert source["name"] == "--dataset" and source["uri"] == "sklearn.datasets.load_wine"
    assert source["sha256"] == storage.sha256_hex(tables.table_bytes(expected))


@pytest.mark.parametrize("dataset", sorted(SHAPES))
def test_every_bundled_dataset_loads(step, tmp_path, dataset):
    result = step("load_data", "--dataset", dataset, "--output-dir", tmp_path)
    assert result.exit_code == 0, result.stderr
    table, _ = read_output(str(tmp_path / "data.parquet"))
    assert table.shape == SHAPES[dataset]
    assert table.columns[-1] == "target" and table["target"].dtype == "int64"


def test_iris_is_the_default_and_reruns_give_identical_bytes(step, tmp_path):
    for run in ("first", "second"):
        assert step("load_data", "--output-dir", tmp_path / run).exit_code == 0
    first = (tmp_path / "first" / "data.parquet").read_bytes()
    assert first == (tmp_path / "second" / "data.parquet").read_bytes()
    assert tables.parse_table(first, "data.parquet").shape == SHAPES["iris"]


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_source_table_replaces_the_dataset(step, base, tmp_path, file_format):
    source = pd.DataFrame({"x1": [0.5, 1.5, 2.5, 3.5], "x2": [1, 2, 3, 4], "species": ["a", "b", "a", "b"]})
    data = source.to_csv(index=False).encode() if file_format == "csv" else tables.table_bytes(source)
    source_uri = put(f"{base}/in/source.{file_format}", data)
    out = f"{base}/out"
    parameter = tmp_path / "data_uri"
    result = step("load_data", "--dataset", "digits", "--source-uri", source_uri, "--target-column", "species",
                  "--output-dir", out, "--data-uri-output-path", parameter)
    assert_succeeded(result, {"data_uri": f"{out}/data.parquet"}, {"data_uri": parameter})

    table, lineage = read_output(f"{out}/data.parquet")
    pd.testing.assert_frame_equal(table, source)
    assert lineage["parameters"] == {"dataset": None, "source_uri": source_uri, "target_column": "species"}
    assert lineage["inputs"] == [{"name": "--source-uri", "uri": source_uri, "sha256": storage.sha256_hex(data),
                                  "bytes": len(data)}]


def test_a_large_csv_column_mixing_numbers_and_text_is_read_as_text(step, tmp_path):
    # Beyond pandas' chunk size a chunked read would give a mixed int/str column Parquet cannot store.
    source_uri = put(str(tmp_path / "mixed.csv"), ("code,target\n" + "1,0\n" * 300_000 + "x1,1\n").encode())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = step("load_data", "--source-uri", source_uri, "--output-dir", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    assert [str(w.message) for w in caught] == []
    table, _ = read_output(str(tmp_path / "out" / "data.parquet"))
    assert len(table) == 300_001 and table["code"].map(type).eq(str).all()


def test_an_empty_source_uri_means_none(step, tmp_path):
    result = step("load_data", "--source-uri", "", "--output-dir", tmp_path)
    assert result.exit_code == 0, result.stderr
    _, lineage = read_output(str(tmp_path / "data.parquet"))
    assert lineage["parameters"]["dataset"] == "iris"


def test_a_missing_object_is_refused(step, base):
    result = step("load_data", "--source-uri", f"{base}/in/absent.csv", "--output-dir", f"{base}/out")
    line = assert_refused(result, 3, "--source-uri", f"{base}/out")
    assert "absent.csv" in line


def test_an_unknown_dataset_is_a_usage_error(step, tmp_path):
    result = step("load_data", "--dataset", "mnist", "--output-dir", tmp_path / "out")
    line = assert_refused(result, 2, "--dataset", str(tmp_path / "out"))
    assert "mnist" in line


def test_a_source_without_the_target_column_is_refused(step, base):
    source_uri = put(f"{base}/in/t.csv", b"a,b\n1,2\n3,4\n")
    result = step("load_data", "--source-uri", source_uri, "--output-dir", f"{base}/out")
    line = assert_refused(result, 3, "--target-column", f"{base}/out")
    assert "'target' not found" in line and "columns: a, b" in line


def test_a_target_column_that_names_a_feature_is_refused(step, tmp_path):
    result = step("load_data", "--target-column", "petal width (cm)", "--output-dir", tmp_path / "out")
    assert_refused(result, 3, "--target-column", str(tmp_path / "out"))


@pytest.mark.parametrize("content", [b"", b"a,target\n"], ids=["zero-bytes", "header-only"])
def test_an_empty_table_is_refused(step, tmp_path, content):
    source_uri = put(str(tmp_path / "empty.csv"), content)
    result = step("load_data", "--source-uri", source_uri, "--output-dir", tmp_path / "out")
    assert_refused(result, 3, "--source-uri", str(tmp_path / "out"))


@pytest.mark.parametrize(("name", "content", "kind"), [
    ("ragged.csv", b"a,target\n1,2\n3,4,5,6\n", "CSV"),
    ("broken.parquet", b"PAR1 this is not a parquet file PAR1", "Parquet"),
])
def test_an_unreadable_table_is_refused(step, base, name, content, kind):
    source_uri = put(f"{base}/in/{name}", content)
    result = step("load_data", "--source-uri", source_uri, "--output-dir", f"{base}/out")
    line = assert_refused(result, 3, "--source-uri", f"{base}/out")
    assert f"not a readable {kind} table" in line


def test_an_unknown_source_scheme_is_refused(step, tmp_path):
    result = step("load_data", "--source-uri", "gs://bucket/table.csv", "--output-dir", tmp_path / "out")
    line = assert_refused(result, 3, "--source-uri", str(tmp_path / "out"))
    assert "unsupported URI scheme 'gs'" in line


def test_an_unknown_output_scheme_is_refused_before_any_work(step, tmp_path):
    parameter = tmp_path / "data_uri"
    result = step("load_data", "--output-dir", "gs://bucket/out", "--data-uri-output-path", parameter)
    assert_refused(result, 3, "--output-dir", str(tmp_path))
    assert not parameter.exists()


def test_the_process_prints_one_error_line_and_one_json_line(s3_prefix, tmp_path):
    # A real process on S3: boto3's own INFO records must not reach stderr beside the error line.
    refused = run_process("load_data", "--source-uri", f"{s3_prefix}/absent.csv", "--output-dir", f"{s3_prefix}/out")
    assert refused.returncode == 3 and refused.stdout == ""
    assert refused.stderr.splitlines() == [f"error: --source-uri: {s3_prefix}/absent.csv: no such object"]
    assert storage.list_uris(s3_prefix) == []

    done = run_process("load_data", "--output-dir", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == [{"data_uri": f"{tmp_path}/out/data.parquet"}]
    assert pd.read_parquet(io.BytesIO((tmp_path / "out" / "data.parquet").read_bytes())).shape == SHAPES["iris"]


def test_every_column_type_of_a_parquet_source_survives(step, base, monkeypatch):
    # Small batches and row groups, so the copy crosses many batch boundaries.
    monkeypatch.setattr(table_files, "BATCH_ROWS", 7)
    monkeypatch.setattr(table_files, "ROW_GROUP_ROWS", 20)
    source = mixed_table(200)
    data = tables.table_bytes(source)
    source_uri = put(f"{base}/in/mixed.parquet", data)
    result = step("load_data", "--source-uri", source_uri, "--target-column", "label", "--output-dir", f"{base}/out")
    assert result.exit_code == 0, result.stderr
    written = storage.read_bytes(f"{base}/out/data.parquet")
    pd.testing.assert_frame_equal(tables.parse_table(written, "data.parquet"), source)
    assert pq.read_schema(io.BytesIO(written)).remove_metadata() == pq.read_schema(io.BytesIO(data)).remove_metadata()
    assert read_lineage(written)["inputs"][0]["sha256"] == storage.sha256_hex(data)


def test_a_mixed_csv_is_stored_as_pandas_reads_it(step, tmp_path):
    source = tmp_path / "mixed.csv"
    source.write_bytes(mixed_table(150).to_csv(index=False).encode())
    result = step("load_data", "--source-uri", source, "--target-column", "label", "--output-dir", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    table, _ = read_output(str(tmp_path / "out" / "data.parquet"))
    expected = pd.read_csv(source, low_memory=False)
    # strings with gaps, NaNs, booleans, ISO dates (text) and 64-bit integers come back as read
    assert expected["colour"].isna().any() and expected["x"].isna().any() and expected["flag"].dtype == bool
    assert expected["big"].dtype == "int64" and expected["day"].dtype == "str"
    # true/false with gaps: pandas reads an object column holding NaN, Parquet gives it back holding None
    expected["maybe"] = expected["maybe"].where(expected["maybe"].notna(), None)
    pd.testing.assert_frame_equal(table, expected)


def test_the_penguins_csv_loads_with_its_text_and_gaps(step, base):
    source_uri = put(f"{base}/in/penguins.csv", penguins_csv().read_bytes())
    result = step("load_data", "--source-uri", source_uri, "--target-column", "species", "--output-dir", f"{base}/out")
    assert result.exit_code == 0, result.stderr
    table, lineage = read_output(f"{base}/out/data.parquet")
    assert table.shape == (344, 8) and table["sex"].isna().sum() == 11 and table["body_mass_g"].isna().sum() == 2
    assert table["island"].dtype == "str" and table["year"].dtype == "int64"
    assert lineage["inputs"][0]["sha256"] == storage.sha256_hex(penguins_csv().read_bytes())


@pytest.mark.parametrize("value", ["1" + "0" * 30, "-" + "9" * 25])
def test_an_integer_beyond_64_bits_is_refused(step, base, value):
    source_uri = put(f"{base}/in/huge.csv", f"a,b,target\n1,{value},0\n2,3,1\n".encode())
    result = step("load_data", "--source-uri", source_uri, "--output-dir", f"{base}/out")
    line = assert_refused(result, 3, "--source-uri", f"{base}/out")
    assert "column 'b' holds an integer beyond the 64-bit range" in line


def test_the_largest_64_bit_integers_and_a_float_1e30_are_kept(step, tmp_path):
    source_uri = put(str(tmp_path / "edge.csv"), b"u,i,f,target\n18446744073709551615,-9223372036854775808,1e30,0\n"
                                                 b"0,9223372036854775807,2.5,1\n")
    assert step("load_data", "--source-uri", source_uri, "--output-dir", tmp_path / "out").exit_code == 0
    table, _ = read_output(str(tmp_path / "out" / "data.parquet"))
    assert table["u"].tolist() == [2**64 - 1, 0] and table["u"].dtype == "uint64"
    assert table["i"].tolist() == [-2**63, 2**63 - 1] and table["f"].tolist() == [1e30, 2.5]


def test_a_parquet_source_is_streamed_byte_identically_on_reruns(step, s3_prefix):
    source_uri = put(f"{s3_prefix}/in/mixed.parquet", tables.table_bytes(mixed_table(100)))
    for run in ("a", "b"):
        result = step("load_data", "--source-uri", source_uri, "--target-column", "label", "--output-dir",
                      f"{s3_prefix}/{run}")
        assert result.exit_code == 0, result.stderr
    assert storage.read_bytes(f"{s3_prefix}/a/data.parquet") == storage.read_bytes(f"{s3_prefix}/b/data.parquet")
    manifest = outputs.verify_published(f"{s3_prefix}/a")
    assert [o["name"] for o in manifest["objects"]] == ["data.parquet"]
