"""claim_batches and complete_batches: every batch checked once, in order, across retries, races and dead runs."""
from __future__ import annotations

import datetime as dt
import json
import threading

import pytest

from mlops_runtime import storage, watermark
from mlops_runtime.errors import ExitCode
from tests.components.step_checks import assert_refused


def add_batches(base: str, *days: str) -> list[str]:
    uris = [storage.join(base, "batches", day, "batch.parquet") for day in days]
    for uri in uris:
        storage.write_bytes(uri, b"PAR1 not read by these steps")
    storage.write_bytes(storage.join(base, "batches", days[0], "notes.txt"), b"ignored")
    return uris


def claim(step, base: str, run_id: str, tmp_path, *extra: str) -> dict:
    result = step("claim_batches", "--batches-uri", storage.join(base, "batches"), "--registry-uri",
                  storage.join(base, "registry"), "--run-id", run_id, "--batch-uris-output-path",
                  tmp_path / f"{run_id}-uris", *extra)
    assert result.exit_code == 0, result.stderr
    outputs = json.loads(result.stdout)
    assert json.loads((tmp_path / f"{run_id}-uris").read_text()) == outputs["batch_uris"]
    # No model is deployed in these tests: the production references are empty, the claim still works.
    assert {outputs.pop(name) for name in ("model_uri", "reference_profile_uri", "calibration_uri")} == {""}
    return outputs


def complete(step, base: str, run_id: str, uris: list[str]) -> int:
    result = step("complete_batches", "--registry-uri", storage.join(base, "registry"), "--run-id", run_id,
                  "--batch-uris", json.dumps(uris))
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["n_completed"]


def test_runs_take_every_batch_once_in_order_bounded_per_run(step, base, tmp_path):
    uris = add_batches(base, "2026-01-03", "2026-01-01", "2026-01-02")
    first = claim(step, base, "run-1", tmp_path, "--max-batches", "2")
    assert first == {"batch_uris": sorted(uris)[:2], "n_batches": 2, "n_pending": 1}
    assert claim(step, base, "run-1", tmp_path, "--max-batches", "2")["batch_uris"] == first["batch_uris"]  # retry
    assert complete(step, base, "run-1", first["batch_uris"]) == 2
    assert complete(step, base, "run-1", first["batch_uris"]) == 0  # repeating changes nothing
    second = claim(step, base, "run-2", tmp_path)
    assert second == {"batch_uris": sorted(uris)[2:], "n_batches": 1, "n_pending": 0}
    complete(step, base, "run-2", second["batch_uris"])
    assert claim(step, base, "run-3", tmp_path) == {"batch_uris": [], "n_batches": 0, "n_pending": 0}
    # a missed schedule: batches that arrive later are taken by the next run, none skipped
    late = add_batches(base, "2026-01-04", "2026-01-05")
    assert claim(step, base, "run-4", tmp_path)["batch_uris"] == late


def test_a_claimed_batch_waits_for_its_lease_then_is_taken_over(base):
    uris = add_batches(base, "d1", "d2")
    mark = watermark.Watermark(storage.join(base, "registry"), "classifier")
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    hour = dt.timedelta(hours=1)
    assert mark.claim(uris, run_id="dead", limit=1, lease=hour, now=start).batches == uris[:1]
    busy = mark.claim(uris, run_id="other", limit=5, lease=hour, now=start + hour / 2)
    assert (busy.batches, busy.pending) == (uris[1:], 1)
    # at +1h10 only the dead run's lease (until +1h) has expired, not the other's (until +1h30)
    assert mark.claim(uris, run_id="late", limit=5, lease=hour, now=start + hour * 7 / 6).batches == uris[:1]
    with pytest.raises(Exception, match="claimed by run late"):
        mark.complete(uris[:1], run_id="dead")


def test_concurrent_runs_never_share_a_batch(s3_prefix):
    uris = add_batches(s3_prefix, *[f"2026-02-{day:02d}" for day in range(1, 13)])
    registry = storage.join(s3_prefix, "registry")
    claimed: dict[str, list[str]] = {}

    def run(run_id: str) -> None:
        mark = watermark.Watermark(registry, "classifier")
        claimed[run_id] = mark.claim(uris, run_id=run_id, limit=3, lease=dt.timedelta(hours=1)).batches

    threads = [threading.Thread(target=run, args=(f"run-{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    taken = [uri for batches in claimed.values() for uri in batches]
    assert sorted(taken) == uris  # 4 runs x 3 = every batch, each exactly once


@pytest.mark.parametrize(("document", "problem"), [
    (b"{not json", "not valid JSON"),
    (b'{"format": "other"}', "not a watermark document"),
    (json.dumps({"format": watermark.FORMAT, "generation": "7", "batches": {}}).encode(), "generation malformed"),
    (json.dumps({"format": watermark.FORMAT, "generation": 2, "batches": {
        "s3://b/x": {"state": "lost", "run_id": "r", "at": "2026-01-01T00:00:00+00:00"}}}).encode(),
     "entry for s3://b/x malformed"),
])
def test_a_tampered_watermark_is_bad_input(step, base, tmp_path, document, problem):
    add_batches(base, "d1")
    storage.write_bytes(storage.join(base, "registry", "classifier", watermark.WATERMARK_FILE), document)
    result = step("claim_batches", "--batches-uri", storage.join(base, "batches"), "--registry-uri",
                  storage.join(base, "registry"), "--run-id", "r")
    line = assert_refused(result, ExitCode.BAD_INPUT, "--registry-uri", str(tmp_path / "nothing"))
    assert problem in line


@pytest.mark.parametrize(("args", "code", "option"), [
    (["--max-batches", "0"], ExitCode.USAGE, "--max-batches"),
    (["--max-batches", "101"], ExitCode.USAGE, "--max-batches"),
    (["--lease-minutes", "0"], ExitCode.USAGE, "--lease-minutes"),
    (["--run-id", " "], ExitCode.USAGE, "--run-id"),
])
def test_claim_options_are_bounded(step, tmp_path, args, code, option):
    result = step("claim_batches", "--batches-uri", tmp_path / "b", "--registry-uri", tmp_path / "r",
                  "--run-id", "r", *args)
    assert_refused(result, code, option, str(tmp_path / "r"))


@pytest.mark.parametrize("value", ["not json", '{"a": 1}', '["ok", 3]', json.dumps(["x"] * 1001)])
def test_complete_refuses_what_is_not_a_batch_list(step, tmp_path, value):
    result = step("complete_batches", "--registry-uri", tmp_path / "r", "--run-id", "r", "--batch-uris", value)
    assert_refused(result, ExitCode.BAD_INPUT, "--batch-uris", str(tmp_path / "r"))


def test_completing_a_batch_never_claimed_is_refused(step, tmp_path):
    result = step("complete_batches", "--registry-uri", tmp_path / "r", "--run-id", "r",
                  "--batch-uris", json.dumps([str(tmp_path / "b" / "batch.parquet")]))
    assert_refused(result, ExitCode.BAD_INPUT, "--batch-uris", str(tmp_path / "r"))
