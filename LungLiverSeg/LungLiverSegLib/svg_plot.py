"""A small line chart as SVG text: the training curve and the correction-effort curve that the
browser page and the Slicer module show. Each series has its own vertical scale (0 to its top);
no plotting library, nothing to load in a page. Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT, MARGIN = 300, 120, 8
LEGEND_STEP = 110


@dataclass(frozen=True)
class Series:
    """One line: ``points`` maps x to y; y is drawn from 0 to ``top`` (default: its largest y)."""

    name: str
    colour: str
    points: Mapping[int, float]
    top: float | None = None


def line_chart(series: Sequence[Series], caption: str, marks: Sequence[float] = ()) -> str:
    """The series against a shared x axis (at least one unit wide), dots on every point, a legend
    of their names with their last values, ``caption`` at the bottom right, and a dashed vertical
    line at each x of ``marks`` (events, such as a retrain); "" when there is no point at all."""
    xs = sorted({x for one in series for x in one.points})
    if not xs:
        return ""
    first, last = xs[0], max(xs[-1], xs[0] + 1)
    drawn = "".join(_mark(x, first, last) for x in marks) + "".join(_line(one, first, last) for one in series)
    legend = "".join(_text(MARGIN + i * LEGEND_STEP, one.colour, _label(one)) for i, one in enumerate(series))
    legend += _text(WIDTH - MARGIN, "#aaa", caption, anchor="end")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}">{drawn}{legend}</svg>'
    )


def _x(x: float, first: int, last: int) -> float:
    return MARGIN + (x - first) / (last - first) * (WIDTH - 2 * MARGIN)


def _mark(x: float, first: int, last: int) -> str:
    left = f"{_x(x, first, last):.1f}"
    bottom = HEIGHT - 2 * MARGIN
    return f'<line x1="{left}" y1="{MARGIN}" x2="{left}" y2="{bottom}" stroke="#888" stroke-dasharray="3,3"/>'


def _label(series: Series) -> str:
    """The series' name and its last value (what the reader wants to know first)."""
    if not series.points:
        return series.name
    return f"{series.name} {series.points[max(series.points)]:.3g}"


def _line(series: Series, first: int, last: int) -> str:
    if not series.points:
        return ""
    top = series.top or max(series.points.values()) or 1.0
    plot_height = HEIGHT - 3 * MARGIN

    def point(x: int, y: float) -> tuple[str, str]:
        left = _x(x, first, last)
        down = MARGIN + (1 - min(max(y / top, 0.0), 1.0)) * plot_height
        return f"{left:.1f}", f"{down:.1f}"

    points = [point(x, series.points[x]) for x in sorted(series.points)]
    line = " ".join(f"{x},{y}" for x, y in points)
    dots = "".join(f'<circle cx="{x}" cy="{y}" r="2.5" fill="{series.colour}"/>' for x, y in points)
    return f'<polyline fill="none" stroke="{series.colour}" stroke-width="2" points="{line}"/>{dots}'


def _text(x: float, colour: str, text: str, anchor: str = "start") -> str:
    return (
        f'<text x="{x}" y="{HEIGHT - 2}" font-size="10" fill="{colour}" text-anchor="{anchor}">'
        f"{escape(text)}</text>"
    )
