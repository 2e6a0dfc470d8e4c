"""Small SVG charts rendered on the server: no JavaScript library, no CDN, readable without script.

Each chart is an ``<svg role="img">`` with a ``<title>`` and one ``<title>`` per mark, so the numbers
show on hover and reach screen readers. Values are scaled to a "nice" axis maximum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 40
Series = dict[str, Sequence[float]]
#: Series colours with 4.5:1 contrast on white.
PALETTE = ("#0b57d0", "#b3261e", "#146c2e", "#7c4dff", "#8a5a00", "#00639b")


def nice_max(value: float, unit: str = "") -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value``; row counts start at 4."""
    if unit == "":
        value = max(value, 4)
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        candidate = step * 10**exponent
        if candidate >= value:
            return float(candidate)
    return float(10 ** (exponent + 1))


def _number(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value:.0f} %"
    if unit == "s":
        return f"{value:.2f} s" if value < 10 else f"{value:.0f} s"
    if value != int(value) and value < 100:
        return f"{value:.1f}"
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    return f"{value:,.0f}"


def _frame(title: str, top: float, unit: str, labels: Sequence[str], body: list[str], legend) -> SafeString:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [
        format_html(
            '<svg class="chart" role="img" viewBox="0 0 {} {}" width="100%" '
            'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg"><title>{}</title>',
            WIDTH,
            HEIGHT,
            title,
        )
    ]
    for i in range(5):
        value = top * i / 4
        y = TOP + plot_h - plot_h * i / 4
        parts.append(
            format_html(
                '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#d0d7de"/>'
                '<text x="{}" y="{}" text-anchor="end" font-size="11" fill="#4d5661">{}</text>',
                LEFT,
                WIDTH - RIGHT,
                f"{y:.1f}",
                f"{y:.1f}",
                LEFT - 6,
                f"{y + 4:.1f}",
                _number(value, unit),
            )
        )
    if labels:
        step = max(1, math.ceil(len(labels) / 8))
        slot = plot_w / len(labels)
        for index in range(0, len(labels), step):
            x = LEFT + slot * (index + 0.5)
            parts.append(
                format_html(
                    '<text x="{}" y="{}" text-anchor="middle" font-size="11" fill="#4d5661">{}</text>',
                    f"{x:.1f}",
                    HEIGHT - BOTTOM + 16,
                    labels[index],
                )
            )
    else:
        parts.append(
            format_html(
                '<text x="{}" y="{}" text-anchor="middle" font-size="13" fill="#4d5661">no data yet</text>',
                WIDTH / 2,
                HEIGHT / 2,
            )
        )
    parts.extend(body)
    for index, (name, color) in enumerate(legend):
        x = LEFT + index * 150
        parts.append(
            format_html(
                '<rect x="{}" y="{}" width="10" height="10" fill="{}"/>'
                '<text x="{}" y="{}" font-size="11" fill="#1b1f24">{}</text>',
                x,
                HEIGHT - 14,
                color,
                x + 14,
                HEIGHT - 5,
                name,
            )
        )
    parts.append(mark_safe("</svg>"))
    return mark_safe("".join(str(part) for part in parts))


def _scale(labels: Sequence[str], series: Series, unit: str) -> tuple[float, float, float]:
    """The axis maximum, the plot's height and the width of one label's slot."""
    values = [v for points in series.values() for v in points]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    return nice_max(max(values, default=0), unit), plot_h, plot_w / max(len(labels), 1)


def bar_chart(title: str, labels: Sequence[str], series: Series, unit: str = "") -> SafeString:
    """Grouped bars: one group per label, one bar per series."""
    top, plot_h, slot = _scale(labels, series, unit)
    bar = min(slot * 0.8 / max(len(series), 1), 28.0)
    offset = (slot - bar * len(series)) / 2
    body = []
    for s_index, (name, points) in enumerate(series.items()):
        color = PALETTE[s_index % len(PALETTE)]
        for index, value in enumerate(points):
            height = plot_h * value / top
            x = LEFT + slot * index + offset + bar * s_index
            body.append(
                format_html(
                    '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}: {} {}</title></rect>',
                    f"{x:.1f}",
                    f"{TOP + plot_h - height:.1f}",
                    f"{max(bar - 1, 1):.1f}",
                    f"{height:.1f}",
                    color,
                    labels[index],
                    _number(value, unit),
                    name,
                )
            )
    legend = [(name, PALETTE[i % len(PALETTE)]) for i, name in enumerate(series)] if len(series) > 1 else []
    return _frame(title, top, unit, labels, body, legend)


def line_chart(title: str, labels: Sequence[str], series: Series, unit: str = "") -> SafeString:
    """One line per series over the labels, with a dot (and its value on hover) at each point."""
    top, plot_h, slot = _scale(labels, series, unit)
    body = []
    for s_index, (name, points) in enumerate(series.items()):
        color = PALETTE[s_index % len(PALETTE)]
        coords = [
            (LEFT + slot * (index + 0.5), TOP + plot_h - plot_h * value / top)
            for index, value in enumerate(points)
        ]
        if len(coords) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            body.append(
                format_html('<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>', path, color)
            )
        for (x, y), value, label in zip(coords, points, labels, strict=False):
            body.append(
                format_html(
                    '<circle cx="{}" cy="{}" r="3" fill="{}"><title>{} {}: {}</title></circle>',
                    f"{x:.1f}",
                    f"{y:.1f}",
                    color,
                    name,
                    label,
                    _number(value, unit),
                )
            )
    legend = [(name, PALETTE[i % len(PALETTE)]) for i, name in enumerate(series)]
    return _frame(title, top, unit, labels, body, legend)
