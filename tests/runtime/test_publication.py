"""outputs.publication: objects, then the manifest, then the KFP files; a failure anywhere leaves none of them."""
import json
import os
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from mlops_runtime import outputs, storage
from mlops_runtime.cli import executor_input_option, output_path_option, step
from mlops_runtime.errors import ExitCode


@step("publish_demo")
@click.option("--output-dir", required=True)
@executor_input_option()
@output_path_option("first_uri", "URI of first.txt.")
@output_path_option("count", "How many.")
def publish_demo(output_dir, executor_input, first_uri_output_path, count_output_path):
    with outputs.publication(output_dir, lineage={"component": "demo"},
                             parameters={"first_uri": (first_uri_output_path, storage.join(output_dir, "first.txt"))}
                             ) as out:
        out.put(storage.join(output_dir, "first.txt"), b"1")
        out.put(storage.join(output_dir, "second.txt"), b"2")
        out.parameters({"count": (count_output_path, 2)})
        out.executor_output(executor_input, metrics={"count": 2.0}, parameters={"count": 2})


def run(*args):
    return CliRunner().invoke(publish_demo, [str(a) for a in args])


def executor_input(path: Path) -> str:
    return json.dumps({"outputs": {"outputFile": str(path), "artifacts": {
        "metrics": {"artifacts": [{"name": "metrics", "uri": "s3://x/metrics", "metadata": {}}]}}}})


def test_everything_is_written_and_the_kfp_files_after_the_manifest(tmp_path):
    out, kfp = tmp_path / "out", tmp_path / "kfp"
    result = run("--output-dir", out, "--first-uri-output-path", kfp / "first_uri", "--count-output-path",
                 kfp / "count", "--executor-input", executor_input(kfp / "executor_output.json"))
    assert result.exit_code == 0, result.stderr
    assert (kfp / "first_uri").read_text() == str(out / "first.txt")
    assert (kfp / "count").read_text() == "2"
    document = json.loads((kfp / "executor_output.json").read_text())
    assert document["artifacts"]["metrics"]["artifacts"][0]["metadata"] == {"count": 2.0}
    manifest = outputs.verify_published(str(out))
    assert [item["name"] for item in manifest["objects"]] == ["first.txt", "second.txt"]
    assert (out / outputs.MANIFEST_FILE).stat().st_mtime_ns <= (kfp / "first_uri").stat().st_mtime_ns


def test_a_kfp_file_that_cannot_be_written_at_commit_removes_everything(tmp_path):
    """The folder is fine when the step starts and gone when it publishes: the manifest is written, then
    the second KFP file fails -- the objects, the manifest and the first KFP file are all removed."""
    out, kfp = tmp_path / "out", tmp_path / "kfp"
    kfp.mkdir()
    late = kfp / "late"

    @step("late_demo")
    @click.option("--output-dir", required=True)
    @output_path_option("a", "first")
    @output_path_option("b", "second")
    def late_demo(output_dir, a_output_path, b_output_path):
        with outputs.publication(output_dir) as published:
            published.put(storage.join(output_dir, "x.txt"), b"x")
            published.parameters({"a": (a_output_path, 1), "b": (b_output_path, 2)})
            late.mkdir()
            os.chmod(late, 0o500)
            (late / "b").mkdir(mode=0o500)  # a directory where the file should go: unwritable, even to root

    try:
        result = CliRunner().invoke(late_demo, ["--output-dir", str(out), "--a-output-path", str(kfp / "a"),
                                                "--b-output-path", str(late / "b" / "..")])
    finally:
        os.chmod(late, 0o700) if late.exists() else None
    assert result.exit_code in (ExitCode.BAD_INPUT, ExitCode.STORAGE), result.stderr
    assert result.stderr.startswith("error: --b-output-path: ") and result.stderr.count("\n") == 1
    assert not (kfp / "a").exists()
    assert storage.list_uris(str(out)) == []


@pytest.mark.parametrize(("make", "code"), [("parent_is_a_file", ExitCode.BAD_INPUT), ("is_a_dir", ExitCode.USAGE),
                                            ("under_proc", ExitCode.STORAGE)])
def test_an_unwritable_kfp_path_is_refused_before_any_work(tmp_path, make, code):
    out = tmp_path / "out"
    if make == "parent_is_a_file":
        (tmp_path / "file").write_text("")
        path = tmp_path / "file" / "count"
    elif make == "is_a_dir":
        path = tmp_path
    else:
        path = Path("/proc/mlops-none/count")
    result = run("--output-dir", out, "--count-output-path", path)
    assert result.exit_code == code, result.stderr
    assert "--count-output-path" in result.stderr and result.stderr.count("\n") == 1
    assert storage.list_uris(str(out)) == []  # /proc passes the up-front check (root): refused at commit


def test_an_unwritable_executor_output_file_is_refused_before_any_work(tmp_path):
    (tmp_path / "file").write_text("")
    result = run("--output-dir", tmp_path / "out", "--executor-input", executor_input(tmp_path / "file" / "o.json"))
    assert result.exit_code == ExitCode.BAD_INPUT, result.stderr
    assert result.stderr.startswith("error: --executor-input: ") and result.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("document", [{"outputs": []}, {"outputs": {"outputFile": 3}},
                                      {"outputs": {"outputFile": "/tmp/x/o.json", "artifacts": {"metrics": {}}}}])
def test_an_executor_input_of_the_wrong_shape_is_refused(tmp_path, document):
    result = run("--output-dir", tmp_path / "out", "--executor-input", json.dumps(document))
    assert result.exit_code == ExitCode.BAD_INPUT, result.stderr
    assert result.stderr.startswith("error: --executor-input: ") and result.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_failure_inside_leaves_no_kfp_file(tmp_path):
    kfp = tmp_path / "kfp"

    @step("fail_demo")
    @output_path_option("a", "first")
    def fail_demo(a_output_path):
        with outputs.publication(str(tmp_path / "out")) as published:
            published.parameters({"a": (a_output_path, 1)})
            published.put(str(tmp_path / "out" / "x"), b"x")
            raise click.UsageError("late failure")

    result = CliRunner().invoke(fail_demo, ["--a-output-path", str(kfp / "a")])
    assert result.exit_code == ExitCode.USAGE
    assert not kfp.exists() or list(kfp.iterdir()) == []
    assert storage.list_uris(str(tmp_path / "out")) == []
