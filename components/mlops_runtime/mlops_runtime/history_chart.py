"""A metric's history (check_performance records) as one inline SVG chart, in the drift report's style.

Checks are drawn in time order at even spacing (batches arrive irregularly; the table below the chart
has the exact times): the metric with its bootstrap interval, the baseline and the degradation limit
(baseline − tolerance for a higher-is-better metric, baseline + tolerance for an error such as rmse).
"""
from __future__ import annotations

import html
from typing import Any

from .metrics import METRIC_DIRECTIONS

_WIDTH, _HEIGHT, _LEFT, _RIGHT, _TOP, _BOTTOM = 800, 360, 56, 16, 34, 62
_VALUE, _DEGRADED, _BASELINE, _LIMIT, _INTERVAL = "#1f5fa8", "#c0392b", "#2b7a2b", "#c77c02", "#888888"


def _limit(record: dict[str, Any], metric: str) -> float:
    sign = 1 if METRIC_DIRECTIONS.get(metric) == "lower" else -1
    return record["baseline"] + sign * record["tolerance"]


def _range(history: list[dict[str, Any]], metric: str) -> tuple[float, float]:
    """The y range: every value, interval end, baseline and limit, padded by 5 %."""
    numbers = [n for r in history for n in (r["value"], r["ci"]["lower"], r["ci"]["upper"], r["baseline"],
                                            _limit(r, metric))]
    low, high = min(numbers), max(numbers)
    pad = (high - low) * 0.05 or 0.05
    return low - pad, high + pad


def history_svg(history: list[dict[str, Any]], metric: str) -> str:
    """``history`` (oldest first, at least one record) as a self-contained ``<svg>`` element."""
    e = html.escape
    plot_width, plot_height = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM
    low, high = _range(history, metric)
    slot = plot_width / len(history)

    def x(index: float) -> float:
        return _LEFT + (index + 0.5) * slot

    def y(value: float) -> float:
        return _TOP + plot_height * (high - value) / (high - low)

    def steps(values: list[float]) -> str:
        points = [f"M{_LEFT} {y(values[0]):.1f}"]
        for index, value in enumerate(values):
            points.append(f"V{y(value):.1f} H{_LEFT + (index + 1) * slot:.1f}")
        return " ".join(points)

    title = f"{metric} of {history[-1]['model']} on production batches"
    confidence = f"{history[-1]['ci']['confidence']:.0%} bootstrap interval"
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{_HEIGHT}" role="img">',
             f"<title>{e(title)}</title>", '<g font-family="sans-serif" font-size="11" fill="#444">',
             f'<text x="{_LEFT}" y="16" font-size="13" font-weight="bold">{e(title)}</text>']
    for tick in range(5):
        value = low + (high - low) * tick / 4
        parts.append(f'<path d="M{_LEFT} {y(value):.1f} H{_LEFT + plot_width}" stroke="#ddd"/>'
                     f'<text x="{_LEFT - 4}" y="{y(value) + 4:.1f}" text-anchor="end">{value:.3f}</text>')
    parts.append(f'<path d="{steps([r["baseline"] for r in history])}" fill="none" stroke="{_BASELINE}"/>')
    parts.append(f'<path d="{steps([_limit(r, metric) for r in history])}" fill="none" '
                 f'stroke="{_LIMIT}" stroke-dasharray="5 3"/>')
    for index, record in enumerate(history):
        top, bottom, centre = y(record["ci"]["upper"]), y(record["ci"]["lower"]), x(index)
        parts.append(f'<path d="M{centre:.1f} {top:.1f} V{bottom:.1f} M{centre - 3:.1f} {top:.1f} H{centre + 3:.1f} '
                     f'M{centre - 3:.1f} {bottom:.1f} H{centre + 3:.1f}" stroke="{_INTERVAL}"/>')
        colour = _DEGRADED if record["degraded"] else _VALUE
        parts.append(f'<circle cx="{centre:.1f}" cy="{y(record["value"]):.1f}" r="4" fill="{colour}">'
                     f'<title>{e(record["checked_at"])}: {record["value"]:.4f}</title></circle>')
    baseline = _TOP + plot_height
    parts.append(f'<path d="M{_LEFT} {_TOP} V{baseline} H{_LEFT + plot_width}" fill="none" stroke="#888"/>')
    parts.append(f'<text transform="translate(14,{_TOP + plot_height / 2:.1f}) rotate(-90)" '
                 f'text-anchor="middle">{e(metric)}</text>')
    parts.append(f'<text x="{x(0):.1f}" y="{baseline + 14}" text-anchor="middle">{e(history[0]["checked_at"][:16])}'
                 "</text>")
    if len(history) > 1:
        parts.append(f'<text x="{x(len(history) - 1):.1f}" y="{baseline + 14}" text-anchor="end">'
                     f'{e(history[-1]["checked_at"][:16])}</text>')
    limit = "baseline + tolerance" if METRIC_DIRECTIONS.get(metric) == "lower" else "baseline − tolerance"
    legend = [("baseline", _BASELINE, ""), (limit, _LIMIT, ' stroke-dasharray="5 3"'),
              (confidence, _INTERVAL, ""), (f"{metric} (red: degraded)", _VALUE, "")]
    for index, (label, colour, dash) in enumerate(legend):
        left = _LEFT + index * 185
        parts.append(f'<path d="M{left} {baseline + 38} h18" stroke="{colour}" stroke-width="2"{dash}/>'
                     f'<text x="{left + 22}" y="{baseline + 42}">{e(label)}</text>')
    parts.append("</g></svg>")
    return "".join(parts)
