"""The notify step against a real HTTP server on 127.0.0.1: both payload formats, deduplication within a
window (state on the real S3 server), and a dead or refusing webhook that never fails the run."""
from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mlops_runtime import alerts, storage


class Webhook:
    """A webhook receiver that records every POST and answers with ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status, self.received = status, []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 -- http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.received.append({"path": self.path, "content_type": self.headers["Content-Type"],
                                      "body": json.loads(body)})
                self.send_response(hook.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


def dead_url() -> str:
    """A port on 127.0.0.1 that nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def outputs_of(result) -> dict:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_slack_message_then_deduplicated_within_the_window(step, webhook, s3_prefix, tmp_path):
    args = ["--event", "drift", "--webhook-url", f"{webhook.url}/slack", "--summary", "3 of 4 features drifted",
            "--labels", "model=iris,pipeline=monitoring", "--details", '{"drift_share": 0.75}',
            "--report-uri", "s3://b/run/drift_report.html", "--state-uri", s3_prefix,
            "--status-output-path", str(tmp_path / "status"), "--delivered-output-path", str(tmp_path / "delivered")]
    first = outputs_of(step("notify", *args))
    assert first["status"] == "sent" and first["delivered"] is True
    assert (tmp_path / "status").read_text() == "sent" and (tmp_path / "delivered").read_text() == "true"
    assert len(webhook.received) == 1
    message = webhook.received[0]
    assert message["path"] == "/slack" and message["content_type"] == "application/json"
    assert message["body"]["text"] == "[WARNING] Data drift detected: 3 of 4 features drifted"
    section = message["body"]["blocks"][0]["text"]["text"]
    assert "drift_share: 0.75" in section and "s3://b/run/drift_report.html" in section
    assert message["body"]["blocks"][1]["elements"][0]["text"] == "model=iris | pipeline=monitoring"

    second = outputs_of(step("notify", *args[:5], "2 of 4 features drifted", *args[6:]))  # new numbers, same alert
    assert second["status"] == "deduplicated" and second["delivered"] is False and len(webhook.received) == 1
    other = outputs_of(step("notify", *args[:7], "model=wine,pipeline=monitoring", *args[8:]))
    assert other["status"] == "sent" and len(webhook.received) == 2  # other labels: another alert
    no_window = outputs_of(step("notify", *args, "--dedup-window-seconds", "0"))
    assert no_window["status"] == "sent" and len(webhook.received) == 3

    history = storage.list_uris(f"{s3_prefix}/alerts/history")
    assert len(history) == 4
    statuses = sorted(json.loads(storage.read_bytes(uri))["status"] for uri in history)
    assert statuses == ["deduplicated", "sent", "sent", "sent"]


def test_alertmanager_format(step, webhook):
    result = step("notify", "--event", "degradation", "--webhook-url", f"{webhook.url}/api/v2/alerts",
                  "--webhook-format", "alertmanager", "--summary", "accuracy 0.71 < baseline 0.90 - 0.05",
                  "--labels", "model=iris", "--details", '{"metric": "accuracy", "value": 0.71}')
    assert outputs_of(result)["status"] == "sent"
    (posted,) = webhook.received
    assert posted["path"] == "/api/v2/alerts"
    (alert,) = posted["body"]
    assert alert["labels"] == {"alertname": "mlops_degradation", "severity": "critical", "event": "degradation",
                               "model": "iris"}
    assert alert["annotations"]["summary"] == "accuracy 0.71 < baseline 0.90 - 0.05"
    assert alert["annotations"]["metric"] == "accuracy" and alert["annotations"]["value"] == "0.71"
    assert alert["startsAt"].endswith("Z") and alert["endsAt"] > alert["startsAt"]


@pytest.mark.parametrize(("event", "title"), [("prediction_drift", "Model output drift detected"),
                                              ("data_quality", "Data quality check failed")])
def test_the_label_free_checks_of_detect_drift_alert_as_warnings(step, webhook, event, title):
    result = step("notify", "--event", event, "--webhook-url", f"{webhook.url}/api/v2/alerts",
                  "--webhook-format", "alertmanager", "--labels", "model=iris,batch=b1")
    assert outputs_of(result)["status"] == "sent"
    ((alert,),) = [posted["body"] for posted in webhook.received]
    assert alert["labels"] == {"alertname": f"mlops_{event}", "severity": "warning", "event": event,
                               "model": "iris", "batch": "b1"}
    assert alert["annotations"]["title"] == title


@pytest.mark.parametrize("failure", ["dead", "500", "404"])
def test_a_failing_webhook_never_fails_the_run(step, s3_prefix, failure):
    hook = None if failure == "dead" else Webhook(status=int(failure))
    url = dead_url() if hook is None else f"{hook.url}/hook"
    try:
        args = ["--event", "pipeline_failure", "--webhook-url", url, "--state-uri", s3_prefix,
                "--retries", "1", "--timeout-seconds", "2"]
        result = step("notify", *args)
        outcome = outputs_of(result)
        assert outcome["status"] == "failed" and outcome["delivered"] is False
        assert "not delivered" in result.stderr  # logged
        if hook is not None:  # 5xx is retried, 4xx is not
            assert len(hook.received) == (2 if failure == "500" else 1)
        # a failed delivery does not count as sent: the next run tries again
        assert outputs_of(step("notify", *args))["status"] == "failed"
        if hook is not None:
            hook.status = 200
            assert outputs_of(step("notify", *args))["status"] == "sent"
    finally:
        if hook is not None:
            hook.close()


def test_inactive_and_unconfigured(step, webhook):
    assert outputs_of(step("notify", "--event", "drift", "--active", "false", "--webhook-url",
                           webhook.url))["status"] == "inactive"
    assert outputs_of(step("notify", "--event", "drift"))["status"] == "no_webhook"
    assert webhook.received == []


def test_an_exit_task_alerts_only_when_the_pipeline_did_not_succeed(step, webhook):
    """--pipeline-status is KFP's PipelineTaskFinalStatus, which an ExitHandler's exit task receives."""
    args = ["--event", "pipeline_failure", "--webhook-url", f"{webhook.url}/api/v2/alerts", "--webhook-format",
            "alertmanager", "--labels", "pipeline=production"]
    succeeded = json.dumps({"state": "SUCCEEDED", "pipeline_task_name": "exit-handler-1", "error": {}})
    assert outputs_of(step("notify", *args, "--pipeline-status", succeeded))["status"] == "inactive"
    assert webhook.received == []
    failed = json.dumps({"state": "FAILED", "error": {"code": 1, "message": "Task exit-handler-1 failed."}})
    assert outputs_of(step("notify", *args, "--pipeline-status", failed))["status"] == "sent"
    (alert,) = webhook.received[0]["body"]
    assert alert["labels"]["event"] == "pipeline_failure"
    assert alert["annotations"]["pipeline_state"] == "FAILED"
    assert alert["annotations"]["error"] == "Task exit-handler-1 failed."
    refused = step("notify", *args, "--pipeline-status", '{"error": {}}')
    assert refused.exit_code == 2 and refused.stderr.startswith("error: --pipeline-status: expected a JSON object")


def test_concurrent_runs_send_one_alert(webhook, s3_prefix):
    alert = alerts.Alert("drift", "x", {"model": "m"})
    results = []

    def run() -> None:
        results.append(alerts.notify(alert, webhook_url=webhook.url, state=s3_prefix, window_seconds=600).status)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["deduplicated"] * 3 + ["sent"] and len(webhook.received) == 1


@pytest.mark.parametrize(("args", "option"), [
    (["--webhook-url", "ftp://127.0.0.1/x"], "--webhook-url"),
    (["--labels", "bad-name=x"], "--labels"),
    (["--labels", "novalue"], "--labels"),
    (["--details", "[1, 2]"], "--details"),
    (["--dedup-window-seconds", "1e12"], "--dedup-window-seconds"),
    (["--retries", "100"], "--retries"),
])
def test_bad_options_are_usage_errors(step, args, option):
    result = step("notify", "--event", "drift", *args)
    lines = result.stderr.splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and option in lines[0], result.stderr
