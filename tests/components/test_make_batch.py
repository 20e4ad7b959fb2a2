"""make_batch: rows drawn from the source, each kind of shift exactly, label noise, reproducibility, refusals."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from gate_fixtures import TARGET, iris, put_table
from step_checks import assert_refused, assert_succeeded

from mlops_runtime import outputs, step_io, storage, tables
from mlops_runtime.errors import ExitCode

PETAL = "petal length (cm)"
SEPAL = "sepal width (cm)"


def make(step, out: str, *args: str):
    return step("make_batch", "--output-dir", out, *args)


def read(uri: str) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(storage.read_bytes(uri))).to_pandas()


def with_colour(table: pd.DataFrame) -> pd.DataFrame:
    """iris plus a categorical column derived from the label, so swaps have categories to exchange."""
    return table.assign(colour=table[TARGET].map({0: "red", 1: "green", 2: "blue"}))


def test_bundled_dataset_batch_with_lineage(step, base, tmp_path):
    out = f"{base}/batch"
    parameter = tmp_path / "kfp" / "batch_uri"
    result = make(step, out, "--dataset", "iris", "--n-rows", "40", "--random-state", "3",
                  "--batch-uri-output-path", parameter)
    assert_succeeded(result, {"batch_uri": f"{out}/batch.parquet"}, {"batch_uri": parameter})
    assert storage.list_uris(out) == [f"{out}/_manifest.json", f"{out}/batch.parquet"]
    manifest = outputs.verify_published(out)
    assert [o["name"] for o in manifest["objects"]] == ["batch.parquet"]
    assert manifest["lineage"]["component"] == "make_batch"
    batch = read(f"{out}/batch.parquet")
    assert list(batch.columns) == list(iris().columns) and len(batch) == 40
    assert set(map(tuple, batch.to_numpy())) <= set(map(tuple, iris().to_numpy()))
    record = step_io.read_lineage(storage.read_bytes(f"{out}/batch.parquet"))
    assert record["component"] == "make_batch"
    assert record["parameters"] == {"source_uri": None, "dataset": "iris", "target_column": TARGET, "n_rows": 40,
                                    "random_state": 3, "shifts": [], "label_noise": 0.0, "with_labels": True}
    assert record["inputs"][0]["uri"] == "sklearn.datasets.load_iris"


def test_same_seed_same_bytes_other_seed_other_rows(step, base):
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        assert make(step, f"{base}/{name}", "--dataset", "wine", "--n-rows", "30", "--random-state", seed,
                    "--shift", "alcohol:mean=+1;magnesium:nan=0.2").exit_code == 0
    batches = {name: storage.read_bytes(f"{base}/{name}/batch.parquet") for name in "abc"}
    assert batches["a"] == batches["b"]
    assert not read(f"{base}/a/batch.parquet").equals(read(f"{base}/c/batch.parquet"))


def test_source_table_drawn_with_replacement_only_when_too_small(step, base):
    source = put_table(f"{base}/source.csv", iris().assign(row=range(150)))
    assert make(step, f"{base}/all", "--source-uri", source, "--n-rows", "150").exit_code == 0
    assert sorted(read(f"{base}/all/batch.parquet")["row"]) == list(range(150))
    assert make(step, f"{base}/big", "--source-uri", source, "--n-rows", "400").exit_code == 0
    big = read(f"{base}/big/batch.parquet")
    assert len(big) == 400 and big["row"].duplicated().any() and set(big["row"]) <= set(range(150))
    assert big.drop_duplicates("row").set_index("row").sort_index().equals(
        iris().assign(row=range(150)).set_index("row").loc[sorted(set(big["row"]))])


def test_mean_and_scale_shifts_are_exact_in_reference_units(step, base):
    source = iris()
    common = ("--dataset", "iris", "--n-rows", "60", "--random-state", "11")
    assert make(step, f"{base}/plain", *common).exit_code == 0
    assert make(step, f"{base}/shifted", *common, "--shift", f"{PETAL}:mean=-0.5; {SEPAL}:scale=2").exit_code == 0
    plain, shifted = read(f"{base}/plain/batch.parquet"), read(f"{base}/shifted/batch.parquet")
    np.testing.assert_allclose(shifted[PETAL], plain[PETAL] - 0.5 * source[PETAL].std())
    centre = source[SEPAL].mean()
    np.testing.assert_allclose(shifted[SEPAL], centre + 2 * (plain[SEPAL] - centre))
    untouched = [c for c in source.columns if c not in (PETAL, SEPAL)]
    pd.testing.assert_frame_equal(shifted[untouched], plain[untouched])


def test_shifts_apply_in_order(step, base):
    source = iris()
    common = ("--dataset", "iris", "--n-rows", "25", "--random-state", "2")
    assert make(step, f"{base}/plain", *common).exit_code == 0
    assert make(step, f"{base}/both", *common, "--shift", f"{PETAL}:mean=+1;{PETAL}:scale=3").exit_code == 0
    plain, both = read(f"{base}/plain/batch.parquet")[PETAL], read(f"{base}/both/batch.parquet")[PETAL]
    mean, std = source[PETAL].mean(), source[PETAL].std()
    np.testing.assert_allclose(both, mean + 3 * (plain + std - mean))


def test_swap_exchanges_two_categories(step, base):
    source = put_table(f"{base}/source.parquet", with_colour(iris()))
    common = ("--source-uri", source, "--n-rows", "90", "--random-state", "4")
    assert make(step, f"{base}/plain", *common).exit_code == 0
    assert make(step, f"{base}/swapped", *common, "--shift", "colour:swap=red/blue").exit_code == 0
    plain, swapped = read(f"{base}/plain/batch.parquet"), read(f"{base}/swapped/batch.parquet")
    expected = plain["colour"].map({"red": "blue", "blue": "red", "green": "green"})
    assert swapped["colour"].tolist() == expected.tolist()
    assert (plain["colour"] == "red").any() and (plain["colour"] == "blue").any()


def test_swap_of_integer_categories_keeps_the_type(step, base):
    source = put_table(f"{base}/source.parquet", iris().assign(code=iris()[TARGET] + 10))
    common = ("--source-uri", source, "--n-rows", "30", "--random-state", "1")
    assert make(step, f"{base}/plain", *common).exit_code == 0
    assert make(step, f"{base}/swapped", *common, "--shift", "code:swap=10/12").exit_code == 0
    plain, swapped = read(f"{base}/plain/batch.parquet"), read(f"{base}/swapped/batch.parquet")
    assert pd.api.types.is_integer_dtype(swapped["code"])
    assert swapped["code"].tolist() == plain["code"].map({10: 12, 12: 10, 11: 11}).tolist()


def test_nan_injection_makes_the_exact_fraction_missing(step, base):
    assert make(step, f"{base}/b", "--dataset", "iris", "--n-rows", "80", "--shift", f"{SEPAL}:nan=0.25").exit_code == 0
    batch = read(f"{base}/b/batch.parquet")
    assert batch[SEPAL].isna().sum() == 20
    assert batch.drop(columns=[SEPAL]).notna().all().all()


def test_label_noise_changes_the_exact_fraction_of_labels(step, base):
    common = ("--dataset", "iris", "--n-rows", "100", "--random-state", "5")
    assert make(step, f"{base}/plain", *common).exit_code == 0
    assert make(step, f"{base}/noisy", *common, "--label-noise", "0.3").exit_code == 0
    plain, noisy = read(f"{base}/plain/batch.parquet"), read(f"{base}/noisy/batch.parquet")
    assert (plain[TARGET] != noisy[TARGET]).sum() == 30
    assert set(noisy[TARGET]) <= {0, 1, 2}
    pd.testing.assert_frame_equal(plain.drop(columns=[TARGET]), noisy.drop(columns=[TARGET]))


@pytest.mark.parametrize("flag", [("--without-labels",), ("--with-labels", "false")])
def test_without_labels_drops_the_label_column(step, base, flag):
    assert make(step, f"{base}/b", "--dataset", "iris", "--n-rows", "10", *flag).exit_code == 0
    assert list(read(f"{base}/b/batch.parquet").columns) == list(iris().columns[:-1])


def test_empty_dataset_and_shift_mean_none(step, base):
    """KFP passes unset optional inputs as empty strings."""
    source = put_table(f"{base}/source.parquet", iris())
    result = make(step, f"{base}/b", "--source-uri", source, "--dataset", "", "--shift", "", "--n-rows", "5")
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize(("args", "code", "option"), [
    (("--dataset", "iris", "--shift", "petal:mean"), ExitCode.USAGE, "--shift"),
    (("--dataset", "iris", "--shift", f"{PETAL}:tilt=2"), ExitCode.USAGE, "--shift"),
    (("--dataset", "iris", "--shift", f"{PETAL}:mean=abc"), ExitCode.USAGE, "--shift"),
    (("--dataset", "iris", "--shift", f"{PETAL}:mean=inf"), ExitCode.USAGE, "--shift"),
    (("--dataset", "iris", "--shift", f"{PETAL}:scale=0"), ExitCode.USAGE, "--shift"),
    (("--dataset", "iris", "--shift", f"{PETAL}:nan=1.5"), ExitCode.USAGE, "--shift"),
    (("--dataset", "iris", "--shift", f"{PETAL}:swap=1"), ExitCode.USAGE, "--shift"),
    (("--dataset", "iris", "--shift", "no such feature:mean=+1"), ExitCode.BAD_INPUT, "--shift"),
    (("--dataset", "iris", "--shift", f"{TARGET}:mean=+1"), ExitCode.BAD_INPUT, "--shift"),
    (("--dataset", "iris", "--shift", f"{PETAL}:swap=1.0/99"), ExitCode.BAD_INPUT, "--shift"),
    (("--dataset", "iris", "--shift", f"{PETAL}:swap=a/b"), ExitCode.BAD_INPUT, "--shift"),
    (("--dataset", "iris", "--label-noise", "0.2", "--without-labels"), ExitCode.USAGE, "--label-noise"),
    (("--dataset", "iris", "--label-noise", "2"), ExitCode.USAGE, "--label-noise"),
    (("--dataset", "iris", "--n-rows", "0"), ExitCode.USAGE, "--n-rows"),
    (("--dataset", "no_such_dataset"), ExitCode.USAGE, "--dataset"),
    (("--dataset", "iris", "--target-column", "petal width (cm)"), ExitCode.BAD_INPUT, "--target-column"),
    ((), ExitCode.USAGE, "--source-uri"),
])
def test_refusals(step, base, args, code, option):
    out = f"{base}/out"
    assert_refused(make(step, out, *args), code, option, out)


def test_refusals_about_the_source(step, base):
    out = f"{base}/out"
    source = put_table(f"{base}/source.parquet", with_colour(iris()))
    assert_refused(make(step, out, "--source-uri", source, "--dataset", "iris"), ExitCode.USAGE, "--source-uri", out)
    assert_refused(make(step, out, "--source-uri", f"{base}/missing.parquet"), ExitCode.BAD_INPUT, "--source-uri", out)
    assert_refused(make(step, out, "--source-uri", source, "--target-column", "label"), ExitCode.BAD_INPUT,
                   "--target-column", out)
    assert_refused(make(step, out, "--source-uri", source, "--shift", "colour:mean=+1"), ExitCode.BAD_INPUT,
                   "--shift", out)
    constant = put_table(f"{base}/constant.parquet", iris().assign(flat=1.0))
    assert_refused(make(step, out, "--source-uri", constant, "--shift", "flat:mean=+1"), ExitCode.BAD_INPUT,
                   "--shift", out)
    single = put_table(f"{base}/single.parquet", iris().head(10))
    assert_refused(make(step, out, "--source-uri", single, "--label-noise", "0.5"), ExitCode.BAD_INPUT,
                   "--label-noise", out)
    storage.write_bytes(f"{base}/broken.parquet", b"PAR1 not really")
    assert_refused(make(step, out, "--source-uri", f"{base}/broken.parquet"), ExitCode.BAD_INPUT, "--source-uri", out)


def test_unwritable_output_dir_is_refused_before_any_work(step, tmp_path):
    result = make(step, "ftp://nowhere/out", "--dataset", "iris")
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.stderr.startswith("error: --output-dir: ")


def test_written_batch_reads_back_as_a_table(step, base):
    """The batch is an ordinary table for every other step (tables.read_table)."""
    assert make(step, f"{base}/b", "--dataset", "breast_cancer", "--n-rows", "12").exit_code == 0
    table = tables.read_table(f"{base}/b/batch.parquet")
    assert table.shape == (12, 31)
