"""notify: post a drift, prediction-drift, data-quality, degradation, estimated-degradation or pipeline-failure
alert to a webhook."""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlparse

import click

from mlops_runtime import alerts, outputs, step_io
from mlops_runtime.cli import FloatRange, KfpOption, output_path_option, step
from mlops_runtime.errors import UsageError
from mlops_runtime.log import get_logger

log = get_logger("notify")
MAX_DETAILS_BYTES = 64 << 10


def parse_labels(text: str) -> dict[str, str]:
    labels = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, equals, value = part.partition("=")
        if not equals:
            raise UsageError(f"{part!r} is not name=value", label="--labels")
        labels[name.strip()] = value.strip()[:alerts.MAX_TEXT]
    return labels


def parse_details(text: str) -> dict[str, Any]:
    if not text:
        return {}
    if len(text.encode()) > MAX_DETAILS_BYTES:
        raise UsageError(f"more than {MAX_DETAILS_BYTES} bytes", label="--details")
    try:
        document = json.loads(text)
    except ValueError:
        raise UsageError("not valid JSON", label="--details") from None
    if not isinstance(document, dict):
        raise UsageError("expected a JSON object", label="--details")
    return document


def parse_pipeline_status(text: str | None) -> dict[str, Any] | None:
    """KFP's PipelineTaskFinalStatus (what an ExitHandler's exit task receives): its state and error."""
    if text is None:
        return None
    if len(text.encode()) > MAX_DETAILS_BYTES:
        raise UsageError(f"more than {MAX_DETAILS_BYTES} bytes", label="--pipeline-status")
    try:
        status = json.loads(text)
    except ValueError:
        raise UsageError("not valid JSON", label="--pipeline-status") from None
    if not isinstance(status, dict) or not isinstance(status.get("state"), str) or not status["state"]:
        raise UsageError("expected a JSON object with a 'state' (KFP's PipelineTaskFinalStatus)",
                         label="--pipeline-status")
    error = status.get("error") if isinstance(status.get("error"), dict) else {}
    return {"state": status["state"], "error": str(error.get("message") or "")[:alerts.MAX_TEXT]}


def check_url(url: str) -> str | None:
    if not url:
        return None
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise UsageError("expected an http:// or https:// URL with a host", label="--webhook-url")
    return url


@step("notify", help="Post an alert (drift, prediction_drift, data_quality, degradation, estimated_degradation or "
                     "pipeline_failure) to a webhook in "
                     "Slack-compatible JSON or Alertmanager's /api/v2/alerts format, deduplicated within a window "
                     "(state under --state-uri). A dead webhook never fails the run: it is logged and reported in "
                     "the outputs, and the step exits 0.")
@click.option("--event", required=True, type=click.Choice(alerts.EVENTS), help="What happened.")
@click.option("--active", type=click.BOOL, default=True, show_default=True,
              help="Alert only when true (wire a verdict here, e.g. detect_drift's drift_detected).")
@click.option("--webhook-url", default="", help="Webhook to POST to (empty: none; the alert is only recorded).")
@click.option("--webhook-format", type=click.Choice(alerts.FORMATS), default="slack", show_default=True,
              help="slack: an incoming-webhook message; alertmanager: the list POST /api/v2/alerts takes.")
@click.option("--summary", default="", help=f"One-line summary (at most {alerts.MAX_TEXT} characters kept).")
@click.option("--labels", default="", help="Comma-separated name=value labels (model=iris,pipeline=monitoring); "
                                           "with the event, they identify the alert for deduplication.")
@click.option("--details", default="", help="JSON object of extra fields (e.g. {\"drift_share\": 0.6}).")
@click.option("--report-uri", default="", help="A report to link to (e.g. detect_drift's html_report_uri).")
@click.option("--state-uri", default="", help="Folder for deduplication state and alert history (the registry "
                                              "root); empty: no deduplication.")
@click.option("--dedup-window-seconds", type=FloatRange(min=0, max=30 * 86400), default=3600, show_default=True,
              help="An alert with the same event and labels sent within this window is not sent again (0: always).")
@click.option("--timeout-seconds", type=FloatRange(min=0.1, max=60), default=5, show_default=True,
              help="Timeout of one HTTP attempt.")
@click.option("--retries", type=click.IntRange(0, 5), default=2, show_default=True,
              help="Further attempts after a connection error, timeout, 5xx or 429.")
@click.option("--pipeline-status", default=None, cls=KfpOption, kfp={"exit_handler_only": True},
              help="KFP's PipelineTaskFinalStatus as JSON (an ExitHandler's exit task gets it): alert only when the "
                   "pipeline did not succeed. Not in component.yaml (KFP allows it in exit tasks only); "
                   "pipelines/production.py adds it to its exit task.")
@output_path_option("status", "sent, deduplicated, failed, inactive or no_webhook.")
@output_path_option("delivered", "true when the webhook accepted the alert.", "Boolean")
def cli(event: str, active: bool, webhook_url: str, webhook_format: str, summary: str, labels: str, details: str,
        report_uri: str, state_uri: str, dedup_window_seconds: float, timeout_seconds: float, retries: int,
        pipeline_status: str | None, status_output_path: str | None, delivered_output_path: str | None) -> None:
    url = check_url(webhook_url)
    final = parse_pipeline_status(pipeline_status)
    extra = parse_details(details)
    if final is not None:
        active = active and final["state"] != "SUCCEEDED"
        extra = {**extra, "pipeline_state": final["state"], **({"error": final["error"]} if final["error"] else {})}
    try:
        alert = alerts.Alert(event, summary or alerts.TITLES[event], parse_labels(labels), extra,
                             report_uri or None)
    except ValueError as error:
        raise UsageError(str(error), label="--labels") from None
    if not active:
        outcome = alerts.Outcome("inactive", False, alert.key, "condition false: nothing to alert")
    else:
        outcome = alerts.notify(alert, webhook_url=url, fmt=webhook_format, state=state_uri or None,
                                window_seconds=dedup_window_seconds, timeout=timeout_seconds, retries=retries)
    with outputs.publication() as out:  # the alert state is this step's output; only KFP files are published here
        out.parameters({"status": (status_output_path, outcome.status),
                        "delivered": (delivered_output_path, outcome.delivered)})
    step_io.print_outputs({"status": outcome.status, "delivered": outcome.delivered, "key": outcome.key,
                           "detail": outcome.detail, "state_errors": outcome.state_errors})


if __name__ == "__main__":
    cli()
