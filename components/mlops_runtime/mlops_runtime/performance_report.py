"""check_performance's HTML report: this check, the metrics on the batch, and the metric's history."""
from __future__ import annotations

import datetime as dt
import html
from typing import Any

from . import metrics
from .history_chart import history_svg


def comparable(record: dict[str, Any], metric: str) -> bool:
    """Whether an earlier history record is a check of ``metric`` with every field the report draws."""
    try:
        dt.datetime.fromisoformat(record["checked_at"])
        numbers = [record["value"], record["baseline"], record["tolerance"], record["ci"]["lower"],
                   record["ci"]["upper"]]
        return record["metric"] == metric and all(metrics.is_number(n) for n in numbers)
    except (KeyError, TypeError, ValueError):
        return False


def report_html(result: dict[str, Any], history: list[dict[str, Any]]) -> bytes:
    e = html.escape
    metric = result["metric"]
    verdict = "DEGRADED" if result["degraded"] else "OK"
    colour = "#c0392b" if result["degraded"] else "#2b7a2b"
    rows = [("model", f"{result['model']} version {result['model_version'] or '—'}"),
            ("model URI", result["model_uri"]), ("batch", result["batch"]["uri"]),
            ("rows scored", f"{result['n_rows']} ({result['n_rows_skipped']} skipped: no label)"),
            (metric, f"{result['value']:.4f}"),
            (f"{result['ci']['confidence']:.0%} bootstrap interval",
             f"[{result['ci']['lower']:.4f}, {result['ci']['upper']:.4f}] ({result['ci']['n_resamples']} resamples)"),
            ("baseline", f"{result['baseline']:.4f} ({result['baseline_source']})"),
            ("worsening", f"{result['drop']:+.4f} (tolerance {result['tolerance']:.4f})")]
    details = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in rows)
    scores = "".join(f"<tr><th>{e(name)}</th><td>{value:.4f}</td></tr>"
                     for name, value in metrics.scalar_metrics(result["metrics"], result["task"]).items())
    matrix = result["metrics"].get("confusion_matrix")
    confusion = ""
    if matrix:
        header = "".join(f"<th>{e(str(label))}</th>" for label in matrix["labels"])
        body = "".join(f"<tr><th>{e(str(label))}</th>{''.join(f'<td>{v}</td>' for v in row)}</tr>"
                       for label, row in zip(matrix["labels"], matrix["matrix"], strict=True))
        confusion = (f"<h2>Confusion matrix (rows: true, columns: predicted)</h2><table><tr><th></th>{header}</tr>"
                     f"{body}</table>")
    worse = "baseline − {m} &gt; tolerance and the interval's upper end &lt; baseline − tolerance"
    if metrics.METRIC_DIRECTIONS[metric] == "lower":
        worse = "{m} − baseline &gt; tolerance and the interval's lower end &gt; baseline + tolerance"
    chart = history_svg(history, metric)
    past = "".join(
        f"<tr><td>{e(r['checked_at'])}</td><td>{e(str(r.get('model_version')))}</td><td>{r['value']:.4f}</td>"
        f"<td>[{r['ci']['lower']:.4f}, {r['ci']['upper']:.4f}]</td><td>{r['baseline']:.4f}</td>"
        f"<td>{'degraded' if r['degraded'] else 'ok'}</td><td>{e(r['batch']['uri'])}</td></tr>"
        for r in reversed(history))
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Performance of {e(result['model'])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse;margin:1em 0}}
th,td{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}.verdict{{color:#fff;background:{colour};
padding:.5em 1em;display:inline-block}}</style></head><body>
<h1>Production performance of {e(result['model'])}</h1>
<p class="verdict">{verdict}: {e(result['reason'])}</p>
<table>{details}</table>
<p>Rule: degraded when {worse.format(m=e(metric))}.</p>
<h2>Metrics on this batch</h2><table>{scores}</table>
{confusion}
<h2>History</h2>{chart}
<table><tr><th>checked at (UTC)</th><th>version</th><th>{e(metric)}</th><th>interval</th><th>baseline</th>
<th>verdict</th><th>batch</th></tr>{past}</table>
</body></html>
"""
    return page.encode()
