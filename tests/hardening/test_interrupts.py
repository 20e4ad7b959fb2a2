"""Steps stopped in the middle of publishing their outputs, run as real processes.

A proxy in front of S3 holds one PUT so the stop lands at a known point: SIGTERM while an object is
stored but its answer has not arrived (the step must remove it and everything before it), SIGKILL
while the manifest is on its way (nothing can clean up: the folder must simply not count as complete).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from dataclasses import dataclass
from urllib.parse import urlparse

import pytest
from hardening_support import (
    HoldingProxy,
    run_in_process,
    run_step_process,
    step_command,
    step_env,
    the_error_line,
)

from mlops_runtime import outputs, storage
from mlops_runtime.errors import BadInputError

S3_PORT = urlparse(os.environ.get("MLOPS_TEST_S3_ENDPOINT", "http://127.0.0.1:8333")).port
BUCKET = os.environ.get("MLOPS_TEST_BUCKET", "mlops-test")
HOLD_TIMEOUT = 120  # seconds for a step process to reach the held PUT (imports, fitting)


@dataclass(frozen=True)
class Case:
    step: str
    args: tuple[str, ...]  # "{inputs}" is replaced by the module's input folder
    objects: tuple[str, ...]  # what the step publishes, in order
    sigterm_at: str = ""  # the object whose PUT answer SIGTERM overtakes [default: the last one]


CASES = [
    Case("load_data", ("--dataset", "wine"), ("data.parquet",)),
    Case("split", ("--data-uri", "{inputs}/data/data.parquet", "--random-state", "7"),
         ("train.parquet", "test.parquet")),
    Case("train", ("--train-uri", "{inputs}/split/train.parquet", "--n-estimators", "25"),
         ("model.skops", "reference_profile.json", "model_card.json")),
    Case("make_batch", ("--dataset", "wine", "--n-rows", "60", "--shift", "alcohol:mean=+0.5"), ("batch.parquet",),
         sigterm_at=outputs.MANIFEST_FILE),  # the manifest itself is stored when the signal lands
]


@pytest.fixture(scope="module")
def inputs() -> str:
    """A folder on the shared S3 server with real upstream outputs: wine data and its split."""
    root = f"s3://{BUCKET}/hardening-interrupts-{uuid.uuid4().hex[:8]}/inputs"
    assert run_in_process("load_data", "--dataset", "wine", "--output-dir", f"{root}/data").exit_code == 0
    assert run_in_process("split", "--data-uri", f"{root}/data/data.parquet", "--output-dir",
                          f"{root}/split").exit_code == 0
    return root


def arguments(case: Case, inputs: str, output_dir: str) -> list[str]:
    return [arg.replace("{inputs}", inputs) for arg in case.args] + ["--output-dir", output_dir]


def key_of(uri: str) -> str:
    return urlparse(uri).path.lstrip("/")


def contents(output_dir: str) -> dict[str, bytes]:
    return {uri: storage.read_bytes(uri) for uri in storage.list_uris(output_dir)}


def stop_at_held_put(case: Case, args: list[str], held_uri: str, hold: str, sig: int) -> tuple[int, str]:
    """Start the step through a proxy holding the PUT of ``held_uri``, send ``sig`` once it is held."""
    with HoldingProxy(S3_PORT, BUCKET, key_of(held_uri), hold=hold) as proxy:
        process = subprocess.Popen(step_command(case.step, *args), env=step_env(AWS_ENDPOINT_URL=proxy.endpoint),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            held = proxy.held.wait(HOLD_TIMEOUT)
            if held:
                process.send_signal(sig)
            _, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
    assert held, f"{case.step} never sent the PUT of {held_uri} (exit {process.returncode}):\n{stderr}"
    return process.returncode, stderr


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.step)
def test_sigterm_mid_publication_removes_everything_and_a_rerun_is_idempotent(case, inputs):
    output_dir = f"{inputs.rsplit('/', 1)[0]}/{case.step}-sigterm"
    args = arguments(case, inputs, output_dir)
    held = storage.join(output_dir, case.sigterm_at or case.objects[-1])
    # the object is stored on the server, the step still waits for the answer: then SIGTERM
    code, stderr = stop_at_held_put(case, args, held, hold="response", sig=signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, stderr
    assert the_error_line(stderr) == "error: stopped by SIGTERM; published outputs were removed"
    assert storage.list_uris(output_dir) == []

    rerun = run_step_process(case.step, *args)
    assert rerun.returncode == 0, rerun.stderr
    published = contents(output_dir)
    assert {uri.rsplit("/", 1)[1] for uri in published} >= set(case.objects)
    again = run_in_process(case.step, *args)  # and once more: the same bytes, whichever way it runs
    assert again.exit_code == 0, again.stderr
    assert contents(output_dir) == published
    assert json.loads(again.stdout.splitlines()[-1]) == json.loads(rerun.stdout.splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.step)
def test_sigkill_mid_run_leaves_no_manifest(case, inputs):
    output_dir = f"{inputs.rsplit('/', 1)[0]}/{case.step}-sigkill"
    args = arguments(case, inputs, output_dir)
    complete = run_in_process(case.step, *args)
    assert complete.exit_code == 0, complete.stderr
    assert outputs.is_complete(output_dir), (
        f"{case.step} does not write {outputs.MANIFEST_FILE}: use outputs.publication(output_dir, lineage=...)")
    published = contents(output_dir)

    # a rerun over the complete folder, killed when only its manifest is missing
    code, stderr = stop_at_held_put(case, args, outputs.manifest_uri(output_dir), hold="request", sig=signal.SIGKILL)
    assert code == -signal.SIGKILL, stderr
    assert not outputs.is_complete(output_dir), "the old manifest survived a rerun that never finished"
    with pytest.raises(BadInputError, match="incomplete output"):
        outputs.verify_published(output_dir)
    assert sorted(uri.rsplit("/", 1)[1] for uri in storage.list_uris(output_dir)) == sorted(case.objects)

    rerun = run_in_process(case.step, *args)
    assert rerun.exit_code == 0, rerun.stderr
    manifest = outputs.verify_published(output_dir)
    assert [item["name"] for item in manifest["objects"]] == list(case.objects)
    assert contents(output_dir) == published


# The runtime's side of the rule, independent of any step.

def test_manifest_is_written_last_and_lists_every_object(tmp_path):
    output_dir = str(tmp_path / "out")
    record = {"component": "demo", "parameters": {"seed": 1}}
    with outputs.publication(output_dir, lineage=record) as out:
        out.put(storage.join(output_dir, "a.bin"), b"alpha")
        assert not outputs.is_complete(output_dir)
        out.put_json(storage.join(output_dir, "b.json"), {"x": 1})
    manifest = outputs.verify_published(output_dir)
    assert [(o["name"], o["bytes"]) for o in manifest["objects"]] == [("a.bin", 5), ("b.json", 13)]
    assert manifest["objects"][0]["sha256"] == storage.sha256_hex(b"alpha")
    assert manifest["lineage"] == record and manifest["output_dir"] == output_dir
    first = (tmp_path / "out" / outputs.MANIFEST_FILE).read_bytes()
    with outputs.publication(output_dir, lineage=record) as out:
        out.put(storage.join(output_dir, "a.bin"), b"alpha")
        out.put_json(storage.join(output_dir, "b.json"), {"x": 1})
    assert (tmp_path / "out" / outputs.MANIFEST_FILE).read_bytes() == first  # no timestamps: reruns are identical


def test_a_failed_rerun_leaves_neither_objects_nor_the_old_manifest(s3_prefix):
    output_dir = f"{s3_prefix}/out"
    with outputs.publication(output_dir) as out:
        out.put(storage.join(output_dir, "a.bin"), b"old")
    assert outputs.is_complete(output_dir)
    with pytest.raises(RuntimeError), outputs.publication(output_dir) as out:
        out.put(storage.join(output_dir, "a.bin"), b"new")
        raise RuntimeError("fails after the first object")
    assert storage.list_uris(output_dir) == []


def test_verify_published_refuses_an_object_changed_after_publication(tmp_path):
    output_dir = str(tmp_path)
    with outputs.publication(output_dir) as out:
        out.put(storage.join(output_dir, "model.skops"), b"original")
    storage.write_bytes(storage.join(output_dir, "model.skops"), b"tampered")
    with pytest.raises(BadInputError, match="differs from the manifest"):
        outputs.verify_published(output_dir, label="--model-dir")


def test_publication_without_output_dir_keeps_no_manifest(tmp_path):
    with outputs.publication() as out:
        out.put(str(tmp_path / "a.bin"), b"a")
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_sigkill_after_the_objects_but_before_the_manifest(tmp_path):
    """What no handler can intercept: the objects stay, the folder does not count as complete."""
    output_dir = str(tmp_path / "out")
    script = textwrap.dedent(f"""
        import os, signal
        from mlops_runtime import outputs, storage
        with outputs.publication({output_dir!r}) as out:
            out.put(storage.join({output_dir!r}, "a.bin"), b"a")
            out.put(storage.join({output_dir!r}, "b.bin"), b"b")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    result = subprocess.run([sys.executable, "-c", script], env=step_env(), capture_output=True, timeout=60)
    assert result.returncode == -signal.SIGKILL
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.bin", "b.bin"]
    assert not outputs.is_complete(output_dir)
