"""A small SVG chart writer: stacked bars and lines over categories (weeks), with axes, ticks
and a legend, written as text that any browser renders and nothing else needs.

Every series is a ``<g class="series" data-series="NAME">``; a bar segment is a ``<rect>``
and a line a ``<polyline>``, each carrying its data as attributes (``data-x``, ``data-y``,
``data-points``), so what a chart shows can be read back and checked against the rows it
came from. The output depends only on the input: the same data gives the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["PALETTE", "Series", "bar_chart", "line_chart", "nice_ticks"]

PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
    "#a0cbe8",
    "#ffbe7d",
    "#8cd17d",
    "#b6992d",
    "#f1ce63",
    "#499894",
    "#86bcb6",
    "#d37295",
    "#fabfd2",
    "#d4a6c8",
)
"""Series colours, in order (Tableau 10, then the light and extra shades of Tableau 20);
they repeat after twenty series."""

WIDTH = 720
HEIGHT = 300
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 170, 34, 52


@dataclass(frozen=True, slots=True)
class Series:
    """One named series: a value for some of the chart's categories."""

    name: str
    values: dict[str, float]
    colour: str | None = None
    """Its colour; None takes the palette's colour of its place in the chart."""

    def colour_at(self, index: int) -> str:
        return self.colour or PALETTE[index % len(PALETTE)]


def nice_ticks(top: float, count: int = 5, bottom: float = 0.0) -> list[float]:
    """Round tick values from at most ``bottom`` to at least ``top``, about ``count`` steps
    of 1, 2 or 5 times a power of ten."""
    if not top > bottom:
        top = bottom + 1
    raw = (top - bottom) / count
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    ticks = [round(math.floor(bottom / step) * step, 10)]
    while ticks[-1] < top:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _number(value: float) -> str:
    """A coordinate or tick label: at most two decimals, no trailing zeros."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _tick(value: float) -> str:
    """A tick label: thousands grouped (``200,000``), decimals only when needed."""
    if value == int(value):
        return f"{int(value):,}"
    return _number(value)


def _datum(value: float) -> str:
    """A value as emitted in a data attribute: every digit needed to read it back."""
    return repr(float(value))


class _Frame:
    """The plot area: maps a category index and a value to SVG coordinates."""

    def __init__(
        self, categories: Sequence[str], top: float, bottom: float, legend_rows: int
    ) -> None:
        self.categories = list(categories)
        self.ticks = nice_ticks(top, bottom=bottom)
        self.bottom, self.top = self.ticks[0], self.ticks[-1]
        self.width = WIDTH - _LEFT - _RIGHT
        self.total_height = max(HEIGHT, _TOP + 18 * legend_rows + 8)
        """The legend sets the height when it is taller than the plot."""
        self.height = HEIGHT - _TOP - _BOTTOM
        self.slot = self.width / max(len(self.categories), 1)

    def x(self, index: int) -> float:
        return _LEFT + self.slot * (index + 0.5)

    def y(self, value: float) -> float:
        return _TOP + self.height * (1 - (value - self.bottom) / (self.top - self.bottom))

    def axes(self, title: str, y_label: str) -> list[str]:
        out = [
            f'<text x="{_LEFT}" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
            f'<text x="14" y="{_number(_TOP + self.height / 2)}" font-size="11"'
            f' transform="rotate(-90 14 {_number(_TOP + self.height / 2)})"'
            f' text-anchor="middle">{escape(y_label)}</text>',
        ]
        for tick in self.ticks:
            y = _number(self.y(tick))
            out.append(
                f'<line x1="{_LEFT}" y1="{y}" x2="{_LEFT + self.width}" y2="{y}"'
                ' stroke="#ddd" stroke-width="1"/>'
            )
            out.append(
                f'<text x="{_LEFT - 6}" y="{y}" font-size="10" text-anchor="end"'
                f' dominant-baseline="middle">{_tick(tick)}</text>'
            )
        bottom = _number(_TOP + self.height)
        out.append(
            f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{bottom}" stroke="#333"/>'
            f'<line x1="{_LEFT}" y1="{bottom}" x2="{_LEFT + self.width}" y2="{bottom}"'
            ' stroke="#333"/>'
        )
        every = max(1, math.ceil(64 / self.slot))  # a date label is about 55 px wide
        for i, category in enumerate(self.categories):
            if i % every:
                continue
            x = _number(self.x(i))
            out.append(
                f'<text x="{x}" y="{_number(_TOP + self.height + 16)}" font-size="10"'
                f' text-anchor="middle">{escape(category)}</text>'
            )
        return out


def _legend(series: Sequence[Series]) -> list[str]:
    out = []
    x = WIDTH - _RIGHT + 16
    for i, s in enumerate(series):
        y = _TOP + 4 + 18 * i
        out.append(
            f'<rect class="legend" x="{x}" y="{y}" width="12" height="12"'
            f' fill="{s.colour_at(i)}"/>'
            f'<text x="{x + 18}" y="{y + 10}" font-size="11">{escape(s.name)}</text>'
        )
    return out


def _svg(body: list[str], kind: str, source: str, height: int) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="{kind}"'
        f' data-source="{escape(source)}" width="{WIDTH}" height="{height}"'
        f' viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">\n'
        + "\n".join(body)
        + "\n</svg>"
    )


def bar_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    y_label: str,
    source: str = "",
) -> str:
    """Stacked bars: one bar per category, one segment per series with a positive value
    there, stacked in series order. ``source`` names where the figures come from."""
    totals = [sum(max(s.values.get(c, 0.0), 0.0) for s in series) for c in categories]
    frame = _Frame(categories, max(totals, default=0.0), 0.0, len(series))
    body = frame.axes(title, y_label)
    base = [0.0] * len(categories)
    width = frame.slot * 0.7
    for n, s in enumerate(series):
        colour = s.colour_at(n)
        body.append(f'<g class="series" data-series="{escape(s.name)}" fill="{colour}">')
        for i, category in enumerate(categories):
            value = s.values.get(category)
            if value is None or value <= 0:
                continue
            top, bottom = frame.y(base[i] + value), frame.y(base[i])
            base[i] += value
            body.append(
                f'<rect x="{_number(frame.x(i) - width / 2)}" y="{_number(top)}"'
                f' width="{_number(width)}" height="{_number(bottom - top)}"'
                f' data-x="{escape(category)}" data-y="{_datum(value)}">'
                f"<title>{escape(s.name)} {escape(category)}: {_number(value)}</title></rect>"
            )
        body.append("</g>")
    return _svg([*body, *_legend(series)], "bar", source, frame.total_height)


def line_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    y_label: str,
    source: str = "",
    from_zero: bool = True,
) -> str:
    """One line per series through its values in category order (a category it has no value
    for is skipped, so a missed week joins its neighbours), with a dot at each value. With
    ``from_zero`` false the value axis starts at a round value below the smallest one."""
    values = [v for s in series for v in s.values.values()]
    low, high = min(values, default=0.0), max(values, default=0.0)
    # A little room under the lowest value, so its line does not run along the axis.
    bottom = min(low, 0.0) if from_zero else low - 0.1 * ((high - low) or abs(low))
    frame = _Frame(categories, max(values, default=0.0), bottom, len(series))
    body = frame.axes(title, y_label)
    for n, s in enumerate(series):
        colour = s.colour_at(n)
        points = [(i, c, s.values[c]) for i, c in enumerate(categories) if c in s.values]
        coords = " ".join(f"{_number(frame.x(i))},{_number(frame.y(v))}" for i, _, v in points)
        data = " ".join(f"{c}={_datum(v)}" for _, c, v in points)
        body.append(f'<g class="series" data-series="{escape(s.name)}">')
        body.append(
            f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"'
            f' data-points="{escape(data)}"/>'
        )
        for i, c, v in points:
            body.append(
                f'<circle cx="{_number(frame.x(i))}" cy="{_number(frame.y(v))}" r="3"'
                f' fill="{colour}"><title>{escape(s.name)} {escape(c)}: {_number(v)}</title>'
                "</circle>"
            )
        body.append("</g>")
    return _svg([*body, *_legend(series)], "line", source, frame.total_height)
