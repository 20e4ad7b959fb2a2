"""An input option fed a KFP artifact: a folder a step published stands for the file the option expects."""
import pytest

from mlops_runtime import outputs, step_io, storage
from mlops_runtime.errors import BadInputError


def publish(folder: str) -> None:
    with outputs.publication(folder) as out:
        out.put(storage.join(folder, "train.parquet"), b"train")
        out.put(storage.join(folder, "test.parquet"), b"test")


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_published_folder_resolves_to_the_file_and_a_file_stays_itself(where, tmp_path, s3_prefix):
    folder = str(tmp_path / "splits") if where == "local" else f"{s3_prefix}/splits"
    publish(folder)
    assert step_io.resolve_in_folder(folder, "train.parquet", label="--train-uri") == f"{folder}/train.parquet"
    assert step_io.resolve_in_folder(folder + "/", "test.parquet", label="--test-uri") == f"{folder}/test.parquet"
    file_uri = f"{folder}/test.parquet"
    assert step_io.resolve_in_folder(file_uri, "train.parquet", label="--train-uri") == file_uri


def test_a_local_folder_without_a_manifest_is_an_incomplete_output(tmp_path):
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "train.parquet").write_bytes(b"partial")
    with pytest.raises(BadInputError, match="without _manifest.json") as raised:
        step_io.resolve_in_folder(str(tmp_path / "splits"), "train.parquet", label="--train-uri")
    assert raised.value.one_line().startswith("--train-uri: ")


def test_the_option_resolves_before_the_step_runs(tmp_path):
    from tests.support import load_step

    folder = str(tmp_path / "data")
    load = load_step("load_data").cli.main(["--dataset", "iris", "--output-dir", folder], standalone_mode=False)
    assert load == 0
    split = load_step("split").cli.main(["--data-uri", folder, "--output-dir", str(tmp_path / "splits")],
                                        standalone_mode=False)
    assert split == 0 and outputs.is_complete(str(tmp_path / "splits"))
    lineage = step_io.read_lineage(storage.read_bytes(str(tmp_path / "splits" / "train.parquet")))
    assert lineage["parameters"]["data_uri"] == f"{folder}/data.parquet"
