"""The monitoring history of a model as one self-contained HTML page: drift share, estimated and realised
metric, and alerts, batch by batch over time.

Read from the registry's journals (newest ``limit`` records of each):

    <registry>/<model>/drift/          detect_drift --registry-uri       drift share, prediction drift, quality
    <registry>/<model>/estimates/      estimate_performance              estimated metric and its interval
    <registry>/<model>/performance/    check_performance                 realised metric, its interval, baseline
    <alerts>/alerts/history/           notify --state-uri                every alert raised (sent or not)

Charts are inline SVG (no script, no network, no other file), one point per record at its time.
"""
from __future__ import annotations

import datetime as dt
import html
from typing import Any

from . import journal, storage

_W, _H, _L, _R, _T, _B = 760, 220, 56, 12, 24, 34
MAX_ROWS = 200  # newest records listed in each table


def _time(text: Any) -> float | None:
    try:
        moment = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


def collect(registry_uri: str, model_name: str, *, alerts_uri: str | None = None, limit: int = 500) -> dict[str, Any]:
    base = storage.join(registry_uri, model_name)
    drift = [r for r in journal.read_recent(storage.join(base, "drift"), limit) if isinstance(r, dict)]
    estimates = [r for r in journal.read_recent(storage.join(base, "estimates"), limit) if isinstance(r, dict)]
    performance = [r for r in journal.read_recent(storage.join(base, "performance"), limit) if isinstance(r, dict)]
    alerts = [r for r in journal.read_recent(storage.join(alerts_uri or registry_uri, "alerts", "history"), limit)
              if isinstance(r, dict) and (r.get("labels") or {}).get("model", model_name) == model_name]
    return {"model": model_name, "registry_uri": registry_uri, "drift": drift, "estimates": estimates,
            "performance": performance, "alerts": alerts}


def _series(records: list[dict[str, Any]], time_key: str, value: Any) -> list[tuple[float, float, float | None,
                                                                                       float | None]]:
    points = []
    for record in records:
        moment = _time(record.get(time_key))
        try:
            v, low, high = value(record)
        except (KeyError, TypeError, ValueError):
            continue
        if moment is not None and isinstance(v, (int, float)):
            points.append((moment, float(v), low, high))
    return sorted(points)


def _chart(title: str, series: list[tuple[str, str, list]], span: tuple[float, float], *,
           marks: list[float] = ()) -> str:
    """Lines (with a shaded interval where given) over time; vertical marks (alerts) in red."""
    values = [v for _, _, pts in series for p in pts for v in (p[1], p[2], p[3]) if isinstance(v, (int, float))]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" role="img">'
             f"<title>{html.escape(title)}</title><g font-family=\"sans-serif\" font-size=\"10\" fill=\"#444\">"
             f'<text x="4" y="14" font-size="12" font-weight="bold">{html.escape(title)}</text>']
    if not values:
        return "".join(parts) + f'<text x="{_L}" y="{_H / 2}">no records</text></g></svg>'
    low, high = min(values), max(values)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    start, stop = span if span[1] > span[0] else (span[0] - 1, span[0] + 1)

    def x(t: float) -> float:
        return _L + (t - start) / (stop - start) * (_W - _L - _R)

    def y(v: float) -> float:
        return _T + (high - v) / (high - low) * (_H - _T - _B)

    for t in marks:
        parts.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{_T}" y2="{_H - _B}" stroke="#c0392b" '
                     'stroke-dasharray="3 3"/>')
    for index, (name, colour, points) in enumerate(series):
        band = [p for p in points if p[2] is not None and p[3] is not None]
        if len(band) > 1:
            outline = [f"{x(t):.1f},{y(hi):.1f}" for t, _, _, hi in band] + [
                f"{x(t):.1f},{y(lo):.1f}" for t, _, lo, _ in reversed(band)]
            parts.append(f'<polygon points="{" ".join(outline)}" fill="{colour}" fill-opacity="0.15"/>')
        if points:
            path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v, _, _ in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
            parts.extend(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.5" fill="{colour}"/>' for t, v, _, _ in points)
        parts.append(f'<rect x="{_W - 230 + index * 110}" y="6" width="10" height="9" fill="{colour}"/>'
                     f'<text x="{_W - 217 + index * 110}" y="14">{html.escape(name)}</text>')
    parts.append(f'<text x="{_L - 4}" y="{_T + 4}" text-anchor="end">{high:.3g}</text>'
                 f'<text x="{_L - 4}" y="{_H - _B}" text-anchor="end">{low:.3g}</text>'
                 f'<path d="M{_L} {_T} V{_H - _B} H{_W - _R}" fill="none" stroke="#888"/>')
    stamp = "%Y-%m-%d %H:%M" if stop - start > 86400 else "%Y-%m-%d %H:%M:%S"  # a day or less: seconds matter
    for t, anchor in ((start, "start"), (stop, "end")):
        label = dt.datetime.fromtimestamp(t, dt.UTC).strftime(stamp)
        parts.append(f'<text x="{x(t):.1f}" y="{_H - _B + 14}" text-anchor="{anchor}">{label}</text>')
    return "".join(parts) + "</g></svg>"


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_text(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>" if rows else "<p>no records</p>"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return "–" if value is None else str(value)


def render(history: dict[str, Any]) -> str:
    drift = _series(history["drift"], "checked_at", lambda r: (r["drift_share"], None, None))
    metric = next((r.get("metric") for r in history["estimates"] + history["performance"] if r.get("metric")),
                  "accuracy")
    estimated = _series(history["estimates"], "at", lambda r: (r["metrics"][metric]["estimate"],
                                                               r["metrics"][metric]["lower"],
                                                               r["metrics"][metric]["upper"]))
    realised = _series([r for r in history["performance"] if r.get("metric") == metric], "checked_at",
                       lambda r: (r["value"], r["ci"]["lower"], r["ci"]["upper"]))
    alert_times = sorted(t for t in (_time(r.get("raised_at")) for r in history["alerts"]) if t is not None)
    moments = [p[0] for s in (drift, estimated, realised) for p in s] + alert_times
    span = (min(moments), max(moments)) if moments else (0.0, 1.0)
    charts = [_chart("Drift share per batch", [("drift share", "#4c72b0", drift)], span, marks=alert_times),
              _chart(f"{metric}: estimated (no labels) and realised (labels)",
                     [("estimated", "#dd8452", estimated), ("realised", "#55a868", realised)], span,
                     marks=alert_times)]
    newest = list(reversed(history["drift"]))[:MAX_ROWS]
    drift_rows = [[r.get("checked_at"), r.get("drift_share"), r.get("drift_detected"),
                   r.get("prediction_drift_detected"), r.get("data_quality_ok"), r.get("current_uri")] for r in newest]
    perf_rows = ([["estimate", r.get("at"), r["metrics"][metric]["estimate"], r["metrics"][metric]["lower"],
                   r["metrics"][metric]["upper"], r.get("estimated_degraded"), r.get("current_uri")]
                  for r in reversed(history["estimates"][-MAX_ROWS:]) if metric in r.get("metrics", {})]
                 + [["realised", r.get("checked_at"), r.get("value"), (r.get("ci") or {}).get("lower"),
                     (r.get("ci") or {}).get("upper"), r.get("degraded"), (r.get("batch") or {}).get("uri")]
                    for r in reversed(history["performance"][-MAX_ROWS:])])
    alert_rows = [[r.get("raised_at"), r.get("event"), r.get("severity"), r.get("status"), r.get("summary")]
                  for r in reversed(history["alerts"][-MAX_ROWS:])]
    e = html.escape
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Monitoring history of {e(history['model'])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}}table{{border-collapse:collapse;margin:1rem 0;
font-size:.85rem}}th,td{{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}}th{{background:#f3f3f3}}
</style></head><body>
<h1>Monitoring history of {e(history['model'])}</h1>
<p>Registry {e(history['registry_uri'])}: {len(history['drift'])} drift checks, {len(history['estimates'])} estimates,
{len(history['performance'])} labeled checks, {len(history['alerts'])} alerts (red dashed lines).</p>
{''.join(charts)}
<h2>Drift checks</h2>
{_table(["checked at", "drift share", "drift", "prediction drift", "data quality ok", "batch"], drift_rows)}
<h2>Performance: estimated and realised</h2>
{_table(["kind", "at", metric, "lower", "upper", "degraded", "batch"], perf_rows)}
<h2>Alerts</h2>
{_table(["raised at", "event", "severity", "status", "summary"], alert_rows)}
</body></html>
"""
