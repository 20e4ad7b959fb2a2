"""Alerts: drift, degradation, estimated degradation and pipeline failure posted to a webhook.

Two payload formats: ``slack`` (an incoming-webhook message: ``text`` plus ``blocks``) and
``alertmanager`` (the JSON list Prometheus Alertmanager's ``POST /api/v2/alerts`` takes; give the
full URL, e.g. ``http://alertmanager:9093/api/v2/alerts``).

Deduplication: an alert's key is its event and labels (not its summary, whose numbers change from run
to run). With a state folder (the registry root), ``<state>/alerts/state/<key>.json`` records when the
key was last sent; an alert with the same key inside the window is not sent again. The state is
claimed with a conditional write before sending, so of two runs raising the same alert at once one
sends and the other counts it as deduplicated. Every alert raised is also recorded as
``<state>/alerts/history/<time>-<key>.json`` (for the history report).

Alerting never fails the run it reports on: a dead or refusing webhook, a timeout or a state folder
that cannot be read is logged and counted in the outcome, and :func:`notify` returns normally.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import json
import re
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any

from . import storage
from .errors import ComponentError
from .log import get_logger

log = get_logger(__name__)

EVENTS = ("drift", "prediction_drift", "data_quality", "degradation", "estimated_degradation", "pipeline_failure")
FORMATS = ("slack", "alertmanager")
SEVERITY = {"drift": "warning", "prediction_drift": "warning", "data_quality": "warning", "degradation": "critical",
            "estimated_degradation": "warning", "pipeline_failure": "critical"}
TITLES = {"drift": "Data drift detected", "prediction_drift": "Model output drift detected",
          "data_quality": "Data quality check failed", "degradation": "Model performance degraded",
          "estimated_degradation": "Estimated model performance degraded", "pipeline_failure": "Pipeline failed"}
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,62}$")
MAX_LABELS = 20
MAX_TEXT = 2_000


@dataclass
class Alert:
    event: str
    summary: str
    labels: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    report_uri: str | None = None
    raised_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise ValueError(f"unknown event {self.event!r}; one of {', '.join(EVENTS)}")
        bad = [name for name in self.labels if not LABEL_NAME.match(name)]
        if bad:
            raise ValueError(f"label name {bad[0]!r} is not [a-zA-Z_][a-zA-Z0-9_]* (at most 63 characters)")
        if len(self.labels) > MAX_LABELS:
            raise ValueError(f"at most {MAX_LABELS} labels")
        self.summary = self.summary[:MAX_TEXT]

    @property
    def key(self) -> str:
        identity = json.dumps({"event": self.event, "labels": self.labels}, sort_keys=True)
        return hashlib.sha256(identity.encode()).hexdigest()[:32]

    @property
    def severity(self) -> str:
        return SEVERITY[self.event]


def slack_payload(alert: Alert) -> dict[str, Any]:
    title = f"[{alert.severity.upper()}] {TITLES[alert.event]}"
    lines = [f"*{title}*", alert.summary]
    if alert.details:
        lines.append(", ".join(f"{k}: {v}" for k, v in sorted(alert.details.items())))
    if alert.report_uri:
        lines.append(f"report: {alert.report_uri}")
    context = " | ".join(f"{k}={v}" for k, v in sorted(alert.labels.items())) or "no labels"
    return {"text": f"{title}: {alert.summary}",
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:3000]}},
                       {"type": "context", "elements": [{"type": "mrkdwn", "text": context[:3000]}]}]}


def alertmanager_payload(alert: Alert, *, resolve_after_seconds: float) -> list[dict[str, Any]]:
    started = dt.datetime.strptime(alert.raised_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    annotations = {"summary": alert.summary, "title": TITLES[alert.event]}
    annotations.update({k: str(v)[:MAX_TEXT] for k, v in alert.details.items()})
    if alert.report_uri:
        annotations["report_uri"] = alert.report_uri
    return [{"labels": {"alertname": f"mlops_{alert.event}", "severity": alert.severity, "event": alert.event,
                        **alert.labels},
             "annotations": annotations, "startsAt": alert.raised_at,
             "endsAt": (started + dt.timedelta(seconds=max(resolve_after_seconds, 60))).strftime(
                 "%Y-%m-%dT%H:%M:%S.%fZ")}]


def payload(alert: Alert, fmt: str, *, window_seconds: float) -> Any:
    if fmt == "slack":
        return slack_payload(alert)
    if fmt == "alertmanager":
        return alertmanager_payload(alert, resolve_after_seconds=window_seconds)
    raise ValueError(f"unknown format {fmt!r}")


def post_json(url: str, document: Any, *, timeout: float, retries: int) -> tuple[bool, str]:
    """POST ``document``; (delivered, what happened). Retries connection errors, timeouts and 5xx/429."""
    body = json.dumps(document).encode()
    last = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(0.5 * 2 ** (attempt - 1), 4.0))
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json", "User-Agent": "mlops-notify"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 -- http(s) checked
                return True, f"HTTP {response.status}"
        except urllib.error.HTTPError as error:
            last = f"HTTP {error.code}"
            if error.code < 500 and error.code != 429:
                return False, last
        except (OSError, http.client.HTTPException) as error:  # refused, reset, timed out, garbled
            reason = getattr(error, "reason", error)
            last = f"{type(reason).__name__}: {reason}"
    return False, last


@dataclass
class Outcome:
    status: str  # sent | deduplicated | failed | inactive | no_webhook
    delivered: bool
    key: str
    detail: str
    state_errors: int = 0


def _state_uri(state: str, key: str) -> str:
    return storage.join(state, "alerts", "state", f"{key}.json")


def _parse_time(text: Any) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def _claim(state: str, alert: Alert, window: float) -> tuple[bool, dict[str, Any] | None]:
    """(send it, the previous state). False when the key was sent inside the window or another run claimed it."""
    uri = _state_uri(state, alert.key)
    found = storage.read_with_etag(uri)
    previous: dict[str, Any] | None = None
    if found is not None:
        try:
            previous = json.loads(found[0])
        except ValueError:
            previous = None
        if not isinstance(previous, dict):
            previous = None  # an unreadable state is replaced, never trusted
    last = _parse_time(previous.get("last_sent_at")) if previous else None
    now = _parse_time(alert.raised_at)
    assert now is not None
    if last is not None and (now - last).total_seconds() < window:
        return False, previous
    state_document = {"key": alert.key, "event": alert.event, "labels": alert.labels, "last_sent_at": alert.raised_at,
                      "previous_sent_at": previous.get("last_sent_at") if previous else None,
                      "sent_count": int((previous or {}).get("sent_count", 0) or 0) + 1}
    data = json.dumps(state_document, sort_keys=True).encode()
    if found is None:
        won = storage.write_bytes(uri, data, if_absent=True)
    else:
        won = storage.write_bytes(uri, data, if_match=found[1])
    return won, previous


def _release(state: str, alert: Alert, previous: dict[str, Any] | None) -> None:
    """After a failed delivery: the key counts as not sent, so the next run tries again."""
    uri = _state_uri(state, alert.key)
    if previous is None:
        storage.delete(uri)
    else:
        storage.write_bytes(uri, json.dumps(previous, sort_keys=True).encode())


def _record(state: str, alert: Alert, fmt: str, outcome: Outcome) -> None:
    stamp = alert.raised_at.replace(":", "").replace("-", "").replace(".", "")
    record = {**asdict(alert), "key": alert.key, "severity": alert.severity, "format": fmt,
              "status": outcome.status, "delivered": outcome.delivered, "detail": outcome.detail}
    storage.write_bytes(storage.join(state, "alerts", "history", f"{stamp}-{alert.key[:12]}.json"),
                        json.dumps(record, sort_keys=True).encode())


def notify(alert: Alert, *, webhook_url: str | None, fmt: str = "slack", state: str | None = None,
           window_seconds: float = 3600.0, timeout: float = 5.0, retries: int = 2) -> Outcome:
    """Send ``alert`` unless deduplicated; never raises for a webhook or state failure (see the module doc)."""
    state_errors = 0
    if not webhook_url:
        outcome = Outcome("no_webhook", False, alert.key, "no webhook configured")
    else:
        send, previous = True, None
        if state and window_seconds > 0:
            try:
                send, previous = _claim(state, alert, window_seconds)
            except ComponentError as error:
                state_errors += 1
                log.warning("alert state unavailable (%s): sending without deduplication", error.one_line())
        if not send:
            outcome = Outcome("deduplicated", False, alert.key,
                              f"sent at {(previous or {}).get('last_sent_at', 'the same time by another run')}, "
                              f"within the {window_seconds:g} s window")
        else:
            delivered, detail = post_json(webhook_url, payload(alert, fmt, window_seconds=window_seconds),
                                          timeout=timeout, retries=retries)
            outcome = Outcome("sent" if delivered else "failed", delivered, alert.key, detail)
            if not delivered:
                log.warning("alert %s not delivered to the webhook after %d attempt(s): %s", alert.event,
                            retries + 1, detail)
                if state and window_seconds > 0:
                    try:
                        _release(state, alert, previous)
                    except ComponentError as error:
                        state_errors += 1
                        log.warning("alert state not released (%s)", error.one_line())
    if state:
        try:
            _record(state, alert, fmt, outcome)
        except ComponentError as error:
            state_errors += 1
            log.warning("alert history not recorded (%s)", error.one_line())
    outcome.state_errors = state_errors
    log.info("alert %s (%s): %s, %s", alert.event, alert.key[:12], outcome.status, outcome.detail)
    return outcome
