"""Server-rendered SVG charts (lines, bars, intervals): no script, no external asset."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

Formatter = Callable[[float], str]

# Colours of the series, in order; chosen to stay apart for the common colour-vision types.
PALETTE = ("#2563eb", "#d97706", "#059669", "#9333ea", "#dc2626", "#0891b2")
_FONT = 11


def percent(value: float) -> str:
    """0.1234 → '12.3 %'."""
    return f"{value * 100:.1f} %"


def plain(value: float) -> str:
    """A short number: '0.123', '12.3', '1,234'."""
    if value == 0:
        return "0"
    if abs(value) >= 100 or (abs(value) >= 1 and float(value).is_integer()):
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.1f}"
    return f"{value:.3f}"


@dataclass(frozen=True)
class Series:
    """One line: a name for the legend and one value per x label (None leaves a gap)."""

    name: str
    values: Sequence[float | None]


@dataclass(frozen=True)
class Bar:
    """One horizontal bar: a label, a value and an optional note printed after it."""

    label: str
    value: float
    note: str = ""


def _svg(width: int, height: int, title: str, body: list[str], css_class: str) -> Markup:
    head = (
        f'<svg class="chart {css_class}" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
    )
    return Markup(head + "".join(body) + "</svg>")  # noqa: S704 - every text part is escaped


def _nice_max(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 × 10^n at or above `value` (a readable axis top)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        top = step * 10.0**exponent
        if top >= value * (1 - 1e-12):
            return top
    return 10.0 ** (exponent + 1)


def line_chart(
    x_labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    y_format: Formatter = plain,
    y_max: float | None = None,
    width: int = 720,
    height: int = 240,
) -> Markup:
    """Lines over shared x labels, with a y axis from 0, gridlines and a legend.

    A None value breaks its line; a lone point between gaps is drawn as a dot, so sparse
    data still shows.
    """
    left, right, top, bottom = 52, 24, 28, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    found = [v for s in series for v in s.values if v is not None and math.isfinite(v)]
    ceiling = y_max if y_max is not None else _nice_max(max(found, default=0.0))
    n = len(x_labels)

    def x(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h - plot_h * min(max(v / ceiling, 0.0), 1.0)

    body = []
    for k in range(5):
        value = ceiling * k / 4
        gy = y(value)
        body.append(
            f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{gy:.1f}" y2="{gy:.1f}"/>'
            f'<text class="axis" x="{left - 6}" y="{gy + 4:.1f}" text-anchor="end" '
            f'font-size="{_FONT}">{escape(y_format(value))}</text>'
        )
    # About six x labels whatever the number of points, first and last included.
    stride = max(1, math.ceil(n / 6))
    for i, label in enumerate(x_labels):
        if (i % stride == 0 and n - 1 - i >= stride / 2) or i == n - 1:
            # The last label ends at its point, so it never runs off the right edge.
            anchor = "end" if i == n - 1 and n > 1 else "middle"
            body.append(
                f'<text class="axis" x="{x(i):.1f}" y="{height - 12}" text-anchor="{anchor}" '
                f'font-size="{_FONT}">{escape(label)}</text>'
            )
    legend_x = left
    for index, line in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        runs: list[list[tuple[float, float]]] = [[]]
        for i, point in enumerate(line.values):
            if point is None or not math.isfinite(point):
                runs.append([])
            else:
                runs[-1].append((x(i), y(point)))
        for run in runs:
            if len(run) == 1:
                cx, cy = run[0]
                body.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="2.5" fill="{colour}"/>')
            elif run:
                points = " ".join(f"{px:.1f},{py:.1f}" for px, py in run)
                body.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>'
                )
        lx = legend_x
        legend_x += 30 + 7 * len(line.name)
        body.append(
            f'<rect x="{lx}" y="8" width="10" height="10" fill="{colour}"/>'
            f'<text x="{lx + 14}" y="17" font-size="{_FONT + 1}">{escape(line.name)}</text>'
        )
    body.append(
        f'<line class="axis-line" x1="{left}" x2="{left + plot_w}" '
        f'y1="{top + plot_h}" y2="{top + plot_h}"/>'
    )
    return _svg(width, height, title, body, "line")


def bar_chart(
    bars: Sequence[Bar],
    *,
    title: str,
    value_format: Formatter = plain,
    threshold: float | None = None,
    threshold_label: str = "",
    width: int = 720,
    bar_height: int = 18,
) -> Markup:
    """Horizontal bars, longest scale first as given; an optional dashed threshold line.

    Bars over the threshold are drawn in the warning colour, so a drift report reads at a
    glance.
    """
    label_w, value_w, top = 190, 110, 8
    plot_w = width - label_w - value_w
    gap = 6
    height = top + len(bars) * (bar_height + gap) + (22 if threshold is not None else 8)
    peak = max([b.value for b in bars] + [threshold or 0.0, 0.0])
    scale = plot_w / peak if peak > 0 else 0.0
    body = []
    for i, bar in enumerate(bars):
        y = top + i * (bar_height + gap)
        over = threshold is not None and bar.value > threshold
        length = max(bar.value * scale, 0.0)
        text = value_format(bar.value) + (f" {bar.note}" if bar.note else "")
        body.append(
            f'<text x="{label_w - 8}" y="{y + bar_height - 5}" text-anchor="end" '
            f'font-size="{_FONT + 1}">{escape(_clip(bar.label, 26))}</text>'
            f'<rect class="{"bar over" if over else "bar"}" x="{label_w}" y="{y}" '
            f'width="{length:.1f}" height="{bar_height}" '
            f'fill="{PALETTE[4] if over else PALETTE[0]}"/>'
            f'<text x="{label_w + length + 6:.1f}" y="{y + bar_height - 5}" '
            f'font-size="{_FONT}">{escape(text)}</text>'
        )
    if threshold is not None and scale > 0:
        label = threshold_label or value_format(threshold)
        body.append(_threshold_mark(label_w + threshold * scale, top, height, label))
    return _svg(width, height, title, body, "bars")


def _threshold_mark(x: float, top: int, height: int, label: str) -> str:
    """A dashed line across the bars at `x`, labelled below them."""
    return (
        f'<line class="threshold" x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" '
        f'y2="{height - 16}" stroke="{PALETTE[4]}" stroke-dasharray="4 3"/>'
        f'<text x="{x:.1f}" y="{height - 4}" text-anchor="middle" font-size="{_FONT}">'
        f"{escape(label)}</text>"
    )


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
