"""The console's charts: hand-written SVG, rendered on the server.

No plotting library and no JavaScript: each function returns one `<svg>` with
`role="img"` and a `<title>` (its accessible name); the page puts a data table
beside it, the chart's text alternative. Colours keep a 4.5:1 contrast with the
white background for text and 3:1 for marks (WCAG 2.2 1.4.3, 1.4.11).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence

INK = "#1a1a1a"
MUTED = "#595959"  # 7:1 on white
MARK = "#1f5f99"  # 6.6:1 on white
SECOND = "#a3460f"  # 5.6:1 on white
GRID = "#8c8c8c"  # 3.4:1 on white (a graphical object)
WIDTH, HEIGHT = 560, 240
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 56, 16, 28, 40


def _open(chart_id: str, title: str, width: int, height: int) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" id="{chart_id}" '
        f'aria-labelledby="{chart_id}-title" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" font-family="sans-serif" '
        f'font-size="12" fill="{INK}">',
        f'<title id="{chart_id}-title">{html.escape(title)}</title>',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
    ]


def _axes(height: int, width: int) -> list[str]:
    bottom = height - PAD_BOTTOM
    return [
        f'<line x1="{PAD_LEFT}" y1="{PAD_TOP}" x2="{PAD_LEFT}" y2="{bottom}" '
        f'stroke="{GRID}"/>',
        f'<line x1="{PAD_LEFT}" y1="{bottom}" x2="{width - PAD_RIGHT}" '
        f'y2="{bottom}" stroke="{GRID}"/>',
    ]


def histogram(
    chart_id: str, title: str, edges: Sequence[float], counts: Sequence[int]
) -> str:
    """Counts per bin of [edges[i], edges[i+1]), bars left to right."""
    width, height = WIDTH, HEIGHT
    top = max([1, *counts])
    inner_w = width - PAD_LEFT - PAD_RIGHT
    inner_h = height - PAD_TOP - PAD_BOTTOM
    bar_w = inner_w / max(1, len(counts))
    parts = _open(chart_id, title, width, height) + _axes(height, width)
    for i, n in enumerate(counts):
        h = inner_h * n / top
        x = PAD_LEFT + i * bar_w
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{PAD_TOP + inner_h - h:.1f}" '
            f'width="{max(bar_w - 2, 1):.1f}" height="{h:.1f}" fill="{MARK}"/>'
        )
    for value in (edges[0], edges[len(edges) // 2], edges[-1]):
        x = PAD_LEFT + (value - edges[0]) / ((edges[-1] - edges[0]) or 1) * inner_w
        parts.append(
            f'<text x="{x:.1f}" y="{height - PAD_BOTTOM + 16}" '
            f'text-anchor="middle">{value:g}</text>'
        )
    parts += [
        f'<text x="{PAD_LEFT - 6}" y="{PAD_TOP + 4}" text-anchor="end">{top:,}</text>',
        f'<text x="{PAD_LEFT - 6}" y="{PAD_TOP + inner_h}" text-anchor="end">0</text>',
        f'<text x="{PAD_LEFT + inner_w / 2:.1f}" y="{height - 6}" '
        'text-anchor="middle">probability</text>',
        "</svg>",
    ]
    return "\n".join(parts)


def bars(
    chart_id: str,
    title: str,
    rows: Sequence[tuple[str, float]],
    show: Callable[[float], str] = lambda v: f"{v:.3f}",
    marks: Sequence[tuple[float, str]] = (),
) -> str:
    """Horizontal bars, one row per label (e.g. a feature's PSI), with optional
    vertical reference lines `marks` (value, label)."""
    row_h, left, right = 22, 200, 70
    width = WIDTH
    height = PAD_TOP + row_h * max(1, len(rows)) + 12
    top = max([1e-9, *(v for _, v in rows), *(m for m, _ in marks)])
    inner = width - left - right

    def x(v: float) -> float:
        return left + inner * max(v, 0.0) / top

    parts = _open(chart_id, title, width, height)
    for i, (label, value) in enumerate(rows):
        y = PAD_TOP + i * row_h
        name = label if len(label) <= 28 else label[:27] + "…"
        parts += [
            f'<text x="{left - 6}" y="{y + 15}" text-anchor="end">'
            f"{html.escape(name)}</text>",
            f'<rect x="{left}" y="{y + 4}" width="{max(x(value) - left, 1):.1f}" '
            f'height="14" fill="{MARK}"/>',
            f'<text x="{x(value) + 4:.1f}" y="{y + 15}">'
            f"{html.escape(show(value))}</text>",
        ]
    for value, label in marks:
        parts += [
            f'<line x1="{x(value):.1f}" y1="{PAD_TOP - 4}" x2="{x(value):.1f}" '
            f'y2="{height - 8}" stroke="{SECOND}" stroke-dasharray="4,3"/>',
            f'<text x="{x(value):.1f}" y="{PAD_TOP - 8}" text-anchor="middle" '
            f'fill="{SECOND}">{html.escape(label)}</text>',
        ]
    parts.append("</svg>")
    return "\n".join(parts)


def lines(
    chart_id: str,
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    low: float | None = None,
    high: float | None = None,
) -> str:
    """Values over ordered labels (dates), one polyline per series; a legend
    names the series (the first solid, the second dashed)."""
    width, height = WIDTH, HEIGHT
    values = [v for _, vs in series for v in vs if v is not None]
    lo = min(values) if low is None and values else (low or 0.0)
    hi = max(values) if high is None and values else (high if high is not None else 1.0)
    span = (hi - lo) or 1.0
    inner_w = width - PAD_LEFT - PAD_RIGHT
    inner_h = height - PAD_TOP - PAD_BOTTOM
    step = inner_w / max(1, len(labels) - 1)

    def point(i: int, v: float) -> str:
        x = PAD_LEFT + (i * step if len(labels) > 1 else inner_w / 2)
        return f"{x:.1f},{PAD_TOP + inner_h * (1 - (v - lo) / span):.1f}"

    parts = _open(chart_id, title, width, height) + _axes(height, width)
    for k, (name, vs) in enumerate(series):
        colour, dash = (MARK, "") if k == 0 else (SECOND, ' stroke-dasharray="5,4"')
        pts = [point(i, v) for i, v in enumerate(vs) if v is not None]
        if len(pts) > 1:
            parts.append(
                f'<polyline points="{" ".join(pts)}" fill="none" stroke="{colour}" '
                f'stroke-width="2"{dash}/>'
            )
        parts += [
            f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="3" '
            f'fill="{colour}"/>'
            for p in pts
        ]
        parts.append(
            f'<text x="{PAD_LEFT + 8 + 160 * k}" y="{PAD_TOP - 10}" '
            f'fill="{colour}">{"—" if k == 0 else "- -"} {html.escape(name)}</text>'
        )
    parts += [
        f'<text x="{PAD_LEFT - 6}" y="{PAD_TOP + 4}" text-anchor="end">{hi:.3g}</text>',
        f'<text x="{PAD_LEFT - 6}" y="{PAD_TOP + inner_h}" text-anchor="end">'
        f"{lo:.3g}</text>",
    ]
    if labels:
        parts += [
            f'<text x="{PAD_LEFT}" y="{height - PAD_BOTTOM + 16}">'
            f"{html.escape(labels[0])}</text>",
            f'<text x="{width - PAD_RIGHT}" y="{height - PAD_BOTTOM + 16}" '
            f'text-anchor="end">{html.escape(labels[-1])}</text>',
        ]
    parts.append("</svg>")
    return "\n".join(parts)


def curve(chart_id: str, title: str, xs: Sequence[float], ys: Sequence[float]) -> str:
    """y against x on [0, 1] x [0, 1] with the diagonal (e.g. a calibration map:
    served probability against the raw model score)."""
    size, pad = 260, 44
    inner = size - 2 * pad + 20

    def point(x: float, y: float) -> str:
        return f"{pad + inner * x:.1f},{pad - 20 + inner * (1 - y):.1f}"

    path = " ".join(point(x, y) for x, y in zip(xs, ys, strict=True))
    bottom = pad - 20 + inner + 14
    parts = _open(chart_id, title, size, size)
    parts += [
        f'<rect x="{pad}" y="{pad - 20}" width="{inner}" height="{inner}" '
        f'fill="none" stroke="{GRID}"/>',
        f'<line x1="{pad}" y1="{pad - 20 + inner}" x2="{pad + inner}" y2="{pad - 20}" '
        f'stroke="{GRID}" stroke-dasharray="4,3"/>',
        f'<polyline points="{path}" fill="none" stroke="{MARK}" stroke-width="2"/>',
        f'<text x="{pad + inner / 2:.1f}" y="{size - 6}" text-anchor="middle">'
        "raw model score</text>",
        f'<text x="12" y="{pad - 20 + inner / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {pad - 20 + inner / 2:.1f})">served</text>',
        f'<text x="{pad}" y="{bottom}" text-anchor="middle">0</text>',
        f'<text x="{pad + inner}" y="{bottom}" text-anchor="middle">1</text>',
        "</svg>",
    ]
    return "\n".join(parts)


def labelled(chart_id: str, title: str, svg: str) -> str:
    """An SVG made elsewhere (serving.outreach.readout_report's interval charts)
    given the role and accessible name the console's charts carry."""
    opening = (
        f'<svg role="img" id="{chart_id}" aria-labelledby="{chart_id}-title" '
        f'style="max-width:100%"'
    )
    svg = re.sub(r"^<svg", opening, svg.strip(), count=1)
    head, sep, rest = svg.partition(">")
    return (
        f'{head}{sep}<title id="{chart_id}-title">{html.escape(title)}</title>'
        f'<rect width="100%" height="100%" fill="#ffffff"/>{rest}'
    )
