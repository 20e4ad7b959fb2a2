"""The object store failing under a running step: a private SeaweedFS is crashed and restarted.

Retries are mlops_runtime.storage's: each S3 call retries transient faults (refused or reset connections,
timeouts, 5xx) with full-jitter backoff capped at 2 s until ``MLOPS_S3_RETRY_SECONDS`` (default 30 s) have
passed since its first attempt; botocore itself makes one attempt per call. A step therefore rides out a
10 s outage (proved below against a SeaweedFS that is down for 10 s and then needs its restart time), and
with S3 down throughout fails with exit 4 after at most the window plus one attempt's timeouts.
"""
from __future__ import annotations

import io
import signal
import threading
import time

import pandas as pd
import pytest
from hardening_support import run_in_process, the_error_line

from mlops_runtime import outputs, storage, tables
from mlops_runtime.errors import ExitCode

pytestmark = pytest.mark.slow

SHORT_WINDOW = 2.0  # seconds: the window of the tests where S3 stays down
OUTAGE_SECONDS = 10.0
ATTEMPT_SLACK = 5.0  # seconds beyond the window for the last backoff, process overhead and a loaded 2-core machine


@pytest.fixture(scope="module")
def iris_csv() -> bytes:
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    sink = io.BytesIO()
    frame.to_csv(sink, index=False)
    return sink.getvalue()


class Sends:
    """Every HTTP attempt the runtime's S3 client makes (botocore's before-send event), with its time."""

    def __init__(self, client) -> None:
        self.client = client
        self.events: list[tuple[str, float]] = []
        client.meta.events.register("before-send.s3", self._record)

    def _record(self, event_name: str, **_kwargs) -> None:
        self.events.append((event_name.rsplit(".", 1)[-1], time.monotonic()))

    def after(self, moment: float) -> list[tuple[str, float]]:
        return [(op, at) for op, at in self.events if at >= moment]

    def close(self) -> None:
        self.client.meta.events.unregister("before-send.s3", self._record)


def crash_after(client, operation: str, action) -> list[float]:
    """Run ``action`` (in the step's thread) right after the first successful ``operation``; return its time."""
    fired: list[float] = []

    def handler(http_response, **_kwargs) -> None:
        if not fired and 200 <= http_response.status_code < 300:
            fired.append(time.monotonic())
            action()

    client.meta.events.register(f"after-call.s3.{operation}", handler)
    return fired


def test_the_runtime_retries_itself_for_a_window_not_botocore(private_s3, use_s3):
    use_s3(private_s3)
    assert storage.s3_client().meta.config.retries == {"total_max_attempts": 1, "mode": "standard"}
    assert storage.retry_seconds() == storage.DEFAULT_RETRY_SECONDS == 30
    assert storage.DEFAULT_RETRY_SECONDS >= 2 * OUTAGE_SECONDS  # the outage plus SeaweedFS's 3-9 s restart


def test_a_10_second_outage_is_ridden_out_with_the_default_window(private_s3, use_s3, iris_csv):
    private_s3.ensure_running()
    use_s3(private_s3)  # the default window
    source, output_dir = private_s3.uri("outage/in.csv"), private_s3.uri("outage/out")
    storage.write_bytes(source, iris_csv)
    client = storage.s3_client()
    sends = Sends(client)
    restarting: list[float] = []
    back: list[float] = []

    def outage() -> None:
        time.sleep(OUTAGE_SECONDS)
        restarting.append(time.monotonic())
        private_s3.start()
        back.append(time.monotonic())

    restart = threading.Thread(target=outage)

    def crash() -> None:
        private_s3.stop(signal.SIGKILL)
        restart.start()

    crashed = crash_after(client, "GetObject", crash)
    try:
        result = run_in_process("load_data", "--source-uri", source, "--output-dir", output_dir)
    finally:
        restart.join(120)
        sends.close()
    assert crashed and back, "the fault was never injected"
    assert back[0] - crashed[0] >= OUTAGE_SECONDS
    assert result.exit_code == 0, result.stderr
    first_op, _ = sends.after(crashed[0])[0]
    attempts = [at for op, at in sends.after(crashed[0]) if op == first_op]
    # SeaweedFS may answer before start() has seen it ready, so the success lies after the restart began,
    # not necessarily after start() returned.
    assert attempts[-1] >= restarting[0], "the step did not wait for S3 to come back"
    assert len(attempts) > 3
    written = tables.parse_table(storage.read_bytes(storage.join(output_dir, "data.parquet")), "data.parquet")
    pd.testing.assert_frame_equal(written, pd.read_csv(io.BytesIO(iris_csv)), check_dtype=False)
    assert outputs.verify_published(output_dir)["objects"]


def test_s3_back_after_the_retry_window_fails_cleanly_and_writes_nothing(private_s3, use_s3, iris_csv):
    private_s3.ensure_running()
    use_s3(private_s3, retry_seconds=SHORT_WINDOW)
    source, output_dir = private_s3.uri("after/in.csv"), private_s3.uri("after/out")
    storage.write_bytes(source, iris_csv)
    client = storage.s3_client()
    sends = Sends(client)
    crashed = crash_after(client, "GetObject", lambda: private_s3.stop(signal.SIGKILL))
    try:
        result = run_in_process("load_data", "--source-uri", source, "--output-dir", output_dir)
    finally:
        sends.close()
    assert crashed, "the fault was never injected"

    assert result.exit_code == ExitCode.STORAGE, result.stderr
    line = the_error_line(result.stderr)
    assert result.stderr.count("\n") == 1, result.stderr  # exactly one line, no warnings before it
    assert line.startswith(f"error: --output-dir: {output_dir}/")
    assert f"storage unreachable for {SHORT_WINDOW:.0f}." in line
    first_op, _ = sends.after(crashed[0])[0]
    attempts = [at for op, at in sends.after(crashed[0]) if op == first_op]
    assert len(attempts) > 1
    assert SHORT_WINDOW <= attempts[-1] - attempts[0] + storage.BACKOFF_CAP_SECONDS
    assert attempts[-1] - attempts[0] <= SHORT_WINDOW + ATTEMPT_SLACK

    private_s3.start()  # back only now, well after the window closed
    assert storage.list_uris(output_dir) == []
    assert storage.read_bytes(source) == iris_csv


def test_s3_lost_between_two_objects_leaves_no_manifest(private_s3, use_s3, iris_csv):
    """The first object is stored, then S3 dies: the rollback cannot reach S3 to remove it, so the
    folder keeps an orphan -- and no manifest, which is what tells readers it is incomplete. The error
    line says so; it is the only stderr line."""
    private_s3.ensure_running()
    use_s3(private_s3, retry_seconds=SHORT_WINDOW)
    source = private_s3.uri("between/in.csv")
    complete_dir, output_dir = private_s3.uri("between/complete"), private_s3.uri("between/out")
    storage.write_bytes(source, iris_csv)
    healthy = run_in_process("split", "--data-uri", source, "--output-dir", complete_dir)
    assert healthy.exit_code == 0, healthy.stderr
    assert outputs.is_complete(complete_dir), "split does not write its manifest: pass output_dir to publication()"

    crashed = crash_after(storage.s3_client(), "PutObject", lambda: private_s3.stop(signal.SIGKILL))
    began = time.monotonic()
    result = run_in_process("split", "--data-uri", source, "--output-dir", output_dir)
    elapsed = time.monotonic() - began
    assert crashed, "the fault was never injected"
    assert result.exit_code == ExitCode.STORAGE, result.stderr
    line = the_error_line(result.stderr)
    assert result.stderr.count("\n") == 1, result.stderr
    assert line.startswith(f"error: --output-dir: {output_dir}/")
    assert "1 partial output(s) could not be removed" in line and "no manifest was written" in line
    # the rollback does not wait a second full window for a store that just proved unreachable
    assert elapsed < SHORT_WINDOW + outputs.ROLLBACK_RETRY_SECONDS + 2 * ATTEMPT_SLACK

    private_s3.start()
    assert not outputs.is_complete(output_dir)
    assert storage.list_uris(output_dir) == [storage.join(output_dir, "train.parquet")]
    rerun = run_in_process("split", "--data-uri", source, "--output-dir", output_dir)  # what a KFP retry does
    assert rerun.exit_code == 0, rerun.stderr
    assert outputs.verify_published(output_dir)["objects"]


@pytest.mark.parametrize(("where", "window"), [("input", None), ("output", SHORT_WINDOW)])
def test_s3_down_throughout_fails_with_exit_4_in_bounded_time(private_s3, use_s3, iris_csv, tmp_path, where,
                                                             window):
    if private_s3.running():
        private_s3.stop(signal.SIGTERM)  # a graceful stop: SeaweedFS takes ~15 s to drain its filer
    use_s3(private_s3, retry_seconds=window)
    bound = storage.retry_seconds()
    if where == "input":
        source, label = private_s3.uri("down/in.csv"), "--source-uri"
    else:
        (tmp_path / "in.csv").write_bytes(iris_csv)
        source, label = str(tmp_path / "in.csv"), "--output-dir"
    output_dir = private_s3.uri("down/out")
    began = time.monotonic()
    result = run_in_process("load_data", "--source-uri", source, "--output-dir", output_dir)
    elapsed = time.monotonic() - began
    assert result.exit_code == ExitCode.STORAGE, result.stderr
    line = the_error_line(result.stderr)
    assert result.stderr.count("\n") == 1, result.stderr
    assert line.startswith(f"error: {label}: s3://{private_s3.bucket}/down/")
    assert f"storage unreachable for {bound:.0f}." in line
    assert bound <= elapsed < bound + ATTEMPT_SLACK
