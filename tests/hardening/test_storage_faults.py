"""The object store failing under a running step: a private SeaweedFS is crashed and restarted.

Retries come only from botocore's standard mode as mlops_runtime.storage configures it
(``MLOPS_S3_MAX_ATTEMPTS`` total attempts). For refused connections each retry sleeps
``random() * min(0.05 s * 2**i, 20 s)``, so the window is random below :func:`max_retry_window`:
0.75 s at the default 5 attempts, 85.55 s at 13 attempts, where P(window < 10 s) is about 2e-4
(Monte Carlo, 400k draws) against a measured SeaweedFS restart of 3.3-9 s.
"""
from __future__ import annotations

import io
import signal
import threading
import time

import pandas as pd
import pytest
from hardening_support import max_retry_window, run_in_process, the_error_line

from mlops_runtime import outputs, storage, tables
from mlops_runtime.errors import ExitCode

pytestmark = pytest.mark.slow

DEFAULT_ATTEMPTS = 5  # mlops_runtime.storage.DEFAULT_MAX_ATTEMPTS
LONG_ATTEMPTS = 13
ATTEMPT_SLACK = 5.0  # seconds beyond the backoff for attempts, process overhead and a loaded 2-core machine


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


def test_runtime_client_retries_in_botocores_standard_mode(private_s3, use_s3):
    use_s3(private_s3, attempts=LONG_ATTEMPTS)
    assert storage.s3_client().meta.config.retries == {"total_max_attempts": LONG_ATTEMPTS, "mode": "standard"}
    assert max_retry_window(DEFAULT_ATTEMPTS) == pytest.approx(0.75)
    assert max_retry_window(LONG_ATTEMPTS) == pytest.approx(85.55)


def test_s3_back_within_the_retry_window_the_step_succeeds(private_s3, use_s3, iris_csv):
    private_s3.ensure_running()
    use_s3(private_s3, attempts=LONG_ATTEMPTS)
    source, output_dir = private_s3.uri("within/in.csv"), private_s3.uri("within/out")
    storage.write_bytes(source, iris_csv)
    client = storage.s3_client()
    sends = Sends(client)
    restart = threading.Thread(target=private_s3.start)

    def crash_and_restart() -> None:
        private_s3.stop(signal.SIGKILL)
        restart.start()

    crashed = crash_after(client, "GetObject", crash_and_restart)
    try:
        result = run_in_process("load_data", "--source-uri", source, "--output-dir", output_dir)
    finally:
        restart.join(90)
        sends.close()
    assert crashed, "the fault was never injected"
    assert result.exit_code == 0, result.stderr
    first_op, _ = sends.after(crashed[0])[0]
    attempts = [at for op, at in sends.after(crashed[0]) if op == first_op]
    assert len(attempts) > 1, "S3 was back before the step's next call: the outage was not exercised"
    assert attempts[-1] - attempts[0] <= max_retry_window(LONG_ATTEMPTS) + ATTEMPT_SLACK
    written = tables.parse_table(storage.read_bytes(storage.join(output_dir, "data.parquet")), "data.parquet")
    pd.testing.assert_frame_equal(written, pd.read_csv(io.BytesIO(iris_csv)), check_dtype=False)


def test_s3_back_after_the_retry_window_fails_cleanly_and_writes_nothing(private_s3, use_s3, iris_csv):
    private_s3.ensure_running()
    use_s3(private_s3, attempts=DEFAULT_ATTEMPTS)
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
    failed_at = time.monotonic()
    assert result.exit_code == ExitCode.STORAGE, result.stderr
    line = the_error_line(result.stderr)
    assert line.startswith(f"error: --output-dir: {output_dir}/")
    assert f"unreachable after {DEFAULT_ATTEMPTS} attempts" in line
    # botocore made exactly the configured attempts of the first call after the crash, then gave up
    first_op, _ = sends.after(crashed[0])[0]
    attempts = [at for op, at in sends.after(crashed[0]) if op == first_op]
    assert len(attempts) == DEFAULT_ATTEMPTS
    assert attempts[-1] - attempts[0] <= max_retry_window(DEFAULT_ATTEMPTS) + ATTEMPT_SLACK

    private_s3.start()  # back only now, well after the window closed
    assert time.monotonic() - failed_at > max_retry_window(DEFAULT_ATTEMPTS)
    assert storage.list_uris(output_dir) == []
    assert storage.read_bytes(source) == iris_csv


def test_s3_lost_between_two_objects_leaves_no_manifest(private_s3, use_s3, iris_csv):
    """The first object is stored, then S3 dies: the rollback cannot reach S3 to remove it, so the
    folder keeps an orphan -- and no manifest, which is what tells readers it is incomplete."""
    private_s3.ensure_running()
    use_s3(private_s3, attempts=DEFAULT_ATTEMPTS)
    source = private_s3.uri("between/in.csv")
    complete_dir, output_dir = private_s3.uri("between/complete"), private_s3.uri("between/out")
    storage.write_bytes(source, iris_csv)
    healthy = run_in_process("split", "--data-uri", source, "--output-dir", complete_dir)
    assert healthy.exit_code == 0, healthy.stderr
    assert outputs.is_complete(complete_dir), "split does not write its manifest: pass output_dir to publication()"

    crashed = crash_after(storage.s3_client(), "PutObject", lambda: private_s3.stop(signal.SIGKILL))
    result = run_in_process("split", "--data-uri", source, "--output-dir", output_dir)
    assert crashed, "the fault was never injected"
    assert result.exit_code == ExitCode.STORAGE, result.stderr
    assert the_error_line(result.stderr).startswith(f"error: --output-dir: {output_dir}/")

    private_s3.start()
    assert not outputs.is_complete(output_dir)
    assert storage.list_uris(output_dir) == [storage.join(output_dir, "train.parquet")]
    rerun = run_in_process("split", "--data-uri", source, "--output-dir", output_dir)  # what a KFP retry does
    assert rerun.exit_code == 0, rerun.stderr
    assert outputs.verify_published(output_dir)["objects"]


@pytest.mark.parametrize("where", ["input", "output"])
def test_s3_down_throughout_fails_with_exit_4_in_bounded_time(private_s3, use_s3, iris_csv, tmp_path, where):
    if private_s3.running():
        private_s3.stop(signal.SIGTERM)  # a graceful stop: SeaweedFS takes ~15 s to drain its filer
    use_s3(private_s3, attempts=DEFAULT_ATTEMPTS)
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
    assert line.startswith(f"error: {label}: s3://{private_s3.bucket}/down/")
    assert f"unreachable after {DEFAULT_ATTEMPTS} attempts" in line
    assert elapsed < max_retry_window(DEFAULT_ATTEMPTS) + ATTEMPT_SLACK
