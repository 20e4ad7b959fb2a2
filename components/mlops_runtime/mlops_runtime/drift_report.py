"""A drift report (from :func:`mlops_runtime.drift.detect_drift`) as one self-contained HTML page.

Each feature gets a reference-vs-current distribution plot drawn as inline SVG (no other file, no
script, no network; and fast: a hundred features render in milliseconds) and a row of the results table.
"""
from __future__ import annotations

import html
import json
from typing import Any

MAX_PLOTS = 200  # drifted features first: a page of 10 000 plots helps nobody and takes seconds to draw

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.drift { color: #b00020; font-weight: bold; }
.stable { color: #1b6e20; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; border: 1px solid #ddd; padding: 0.4rem; }
figcaption { font-size: 0.85rem; }
"""
_REFERENCE, _CURRENT = "#4c72b0", "#dd8452"
_WIDTH, _HEIGHT, _LEFT, _RIGHT, _TOP, _BOTTOM = 400, 200, 46, 8, 26, 54


def _svg_bars(name: str, labels: list[str], reference: list[float], current: list[float], *,
              grouped: bool, x_axis: tuple[str, str] | None = None) -> str:
    """Two series of bars (shares) as an SVG: overlaid for histogram bins, side by side for categories."""
    plot_width, plot_height = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM
    top = max(max(reference, default=0.0), max(current, default=0.0)) or 1.0
    slot = plot_width / max(len(labels), 1)
    baseline = _TOP + plot_height
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{_HEIGHT}" role="img">',
             f"<title>{html.escape(name)}: reference vs current</title>",
             '<g font-family="sans-serif" font-size="10" fill="#444">',
             f'<text x="4" y="14" font-size="12" font-weight="bold">{html.escape(name[:40])}</text>']
    for offset, (label, color) in enumerate((("reference", _REFERENCE), ("current", _CURRENT))):
        x = _WIDTH - 150 + offset * 75
        parts.append(f'<rect x="{x}" y="6" width="10" height="9" fill="{color}"/><text x="{x + 13}" y="14">{label}'
                     "</text>")
    for series, (values, color) in enumerate(((reference, _REFERENCE), (current, _CURRENT))):
        width = slot * (0.42 if grouped else 0.98)
        for index, value in enumerate(values):
            height = plot_height * value / top
            x = _LEFT + index * slot + (series * width if grouped else 0)
            parts.append(f'<rect x="{x:.1f}" y="{baseline - height:.1f}" width="{width:.1f}" height="{height:.1f}" '
                         f'fill="{color}" fill-opacity="{0.85 if grouped else 0.55}"/>')
    parts.append(f'<path d="M{_LEFT} {_TOP} V{baseline} H{_LEFT + plot_width}" fill="none" stroke="#888"/>')
    parts.append(f'<text x="{_LEFT - 4}" y="{_TOP + 4}" text-anchor="end">{100 * top:.3g}%</text>')
    parts.append(f'<text x="{_LEFT - 4}" y="{baseline}" text-anchor="end">0%</text>')
    if x_axis:
        parts.append(f'<text x="{_LEFT}" y="{baseline + 13}">{html.escape(x_axis[0])}</text>')
        parts.append(f'<text x="{_LEFT + plot_width}" y="{baseline + 13}" text-anchor="end">'
                     f"{html.escape(x_axis[1])}</text>")
    else:
        for index, label in enumerate(labels):
            x = _LEFT + (index + 0.5) * slot
            parts.append(f'<text transform="translate({x:.1f},{baseline + 10}) rotate(30)">'
                         f"{html.escape(label[:16])}</text>")
    parts.append("</g></svg>")
    return "".join(parts)


def plot_feature(name: str, feature: dict[str, Any]) -> str | None:
    """An inline SVG of the feature's reference and current distributions, None without values to plot."""
    distribution = feature["checks"]["distribution"]
    histogram = distribution and distribution.get("histogram")
    if not histogram:
        return None
    if feature["kind"] == "numerical":
        edges = histogram["edges"]
        return _svg_bars(name, [""] * len(histogram["reference"]), histogram["reference"], histogram["current"],
                         grouped=False, x_axis=(f"{edges[0]:.4g}", f"{edges[-1]:.4g}"))
    return _svg_bars(name, [str(c) for c in histogram["categories"]], histogram["reference"], histogram["current"],
                     grouped=True)


def _number(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _check_cells(check: dict[str, Any] | None) -> str:
    if check is None:
        return '<td colspan="4">not evaluated (no values on one side)</td>'
    effects = "<br>".join(f"{html.escape(name)} {_number(e['value'])}, lower bound {_number(e.get('lower'))} "
                          f"(≥ {_number(e['threshold'])}: {'passed' if e['passed'] else 'no'})"
                          for name, e in check["effects"].items())
    verdict = '<span class="drift">drift</span>' if check["drift"] else '<span class="stable">no</span>'
    statistic = f"{html.escape(check['test'])}" + (f" {_number(check['statistic'])}" if "statistic" in check else "")
    anderson = check.get("anderson_darling")
    if anderson:
        statistic += f"<br>anderson_darling {_number(anderson['statistic'])}"
    q_text = f"q={_number(check['q_value'])}" + (f"<br>AD p={_number(anderson['p_value'])} q="
                                                 f"{_number(anderson['q_value'])}" if anderson else "")
    return (f"<td>{statistic}</td><td>p={_number(check['p_value'])}<br>{q_text}</td>"
            f"<td>{effects}</td><td>{verdict}</td>")


def render_html(report: dict[str, Any], *, title: str = "Data drift report") -> str:
    dataset = report["dataset"]
    verdict = ('<span class="drift">DRIFT DETECTED</span>' if dataset["drift_detected"]
               else '<span class="stable">no dataset drift</span>')
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in dataset["reasons"]) or "<li>no rule fired</li>"
    thresholds = ", ".join(f"{html.escape(k)}={_number(v)}" for k, v in report["thresholds"].items())
    rows, figures = [], []
    plotted = sorted(report["features"], key=lambda n: not report["features"][n]["drift"])[:MAX_PLOTS]
    plotted_set = set(plotted)
    for name, feature in report["features"].items():
        checks = feature["checks"]
        label = html.escape(name) + (" (critical)" if feature.get("critical") else "")
        verdict_cell = '<span class="drift">drift</span>' if feature["drift"] else '<span class="stable">stable</span>'
        rows.append(f"<tr><td rowspan=2>{label}</td><td rowspan=2>{feature['kind']}</td>"
                    f"<td rowspan=2>{feature['n_ref']} / {feature['n_cur']}</td><td>distribution</td>"
                    f"{_check_cells(checks['distribution'])}<td rowspan=2>{verdict_cell}</td></tr>"
                    f"<tr><td>missing rate {_number(checks['missing_rate']['reference_rate'])} → "
                    f"{_number(checks['missing_rate']['current_rate'])}</td>{_check_cells(checks['missing_rate'])}"
                    "</tr>")
        image = plot_feature(name, feature) if name in plotted_set else None
        if image:
            figures.append(f"<figure>{image}<figcaption>{label}: {verdict_cell}</figcaption></figure>")
    skipped = report.get("skipped_columns") or {}
    skipped_note = ""
    if skipped:
        listed = ", ".join(f"{html.escape(k)} ({html.escape(v)})" for k, v in skipped.items())
        skipped_note = f"<p>Skipped (unsupported types): {listed}</p>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{_STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>{verdict}: {dataset['n_drifted']} of {dataset['n_features']} features drifted
(share {_number(dataset['drift_share'])}). Reference: {report['reference']['mode']},
{report['reference']['n_rows']} rows; current: {report['current']['n_rows']} rows.</p>
<ul>{reasons}</ul>
<p>Thresholds: {thresholds}. A check flags drift when the lower end of its effect size's confidence
interval passes its threshold and its Benjamini–Hochberg q-value is below alpha.</p>
{skipped_note}
<table>
<tr><th>feature</th><th>kind</th><th>rows ref / cur</th><th>check</th><th>test statistic</th><th>p / q</th>
<th>effect sizes</th><th>check drift</th><th>feature</th></tr>
{''.join(rows)}
</table>
{_quality_section(report.get("data_quality"))}
{_predictions_section(report.get("predictions"))}
<h2>Distributions</h2>
{_plots_note(len(report["features"]), len(plotted))}
<div class="plots">{''.join(figures)}</div>
</body></html>
"""


def _plots_note(n_features: int, n_plotted: int) -> str:
    if n_plotted >= n_features:
        return ""
    return f"<p>{n_plotted} of {n_features} features plotted (drifted ones first).</p>"


def report_bytes(report: dict[str, Any]) -> bytes:
    """The report as compact JSON: json's C encoder (an indented dump runs in Python, ~10x slower on a report
    of 10 000 features)."""
    return (json.dumps(report, sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n").encode()


def _quality_section(quality: dict[str, Any] | None) -> str:
    if not quality:
        return ""
    state = '<span class="stable">ok</span>' if quality["ok"] else '<span class="drift">FAILED</span>'
    problems = [*quality["schema_errors"], *quality["issues"]]
    items = "".join(f"<li>{html.escape(p)}</li>" for p in problems[:100]) or "<li>no problem found</li>"
    return (f"<h2>Data quality against the model signature: {state}</h2><ul>{items}</ul>"
            f"<p>Threshold: a share of {_number(quality['share_threshold'])} of a column's values out of the training "
            "range, unseen in training, or newly missing.</p>")


def _predictions_section(predictions: dict[str, Any] | None) -> str:
    if not predictions:
        return ""
    if "skipped" in predictions:
        return f"<h2>Prediction drift</h2><p>Not compared: {html.escape(predictions['skipped'])}.</p>"
    dataset = predictions["dataset"]
    state = '<span class="drift">DRIFT</span>' if dataset["drift_detected"] else '<span class="stable">stable</span>'
    drifted, stable = '<span class="drift">drift</span>', "stable"
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{feature['kind']}</td><td>{drifted if feature['drift'] else stable}"
        f"</td><td>{html.escape('; '.join(feature['reasons'])) or '–'}</td></tr>"
        for name, feature in predictions["features"].items())
    return (f"<h2>Prediction drift (the model's outputs): {state}</h2><p>{dataset['n_drifted']} of "
            f"{dataset['n_features']} outputs drifted.</p><table><tr><th>output</th><th>kind</th><th>verdict</th>"
            f"<th>reasons</th></tr>{rows}</table>")
