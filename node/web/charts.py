"""Charts drawn on the server as SVG: no script, no library, readable without styles.

Each bar carries a `<title>` (its tooltip) and each chart a table-like legend,
so the numbers are there for a screen reader and for a test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Final

from node.web.html import Markup, el, join
from node.web.i18n import number

#: Colour-blind-safe (Okabe–Ito), then greys; a series past the palette reuses it.
PALETTE: Final = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000",
                  "#999999", "#666666")
WIDTH: Final = 640
HEIGHT: Final = 220
LEFT: Final = 48  # room for the y axis labels
BOTTOM: Final = 28  # room for the period labels
TOP: Final = 10


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _number(value: float) -> str:
    """A value as data (`data-value`): the API's decimal point, no grouping."""
    return f"{value:.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.2f}"


def _shown(value: float) -> str:
    """A value as the page's locale writes it."""
    return number(Decimal(_number(value)))


def legend(names: Sequence[str], labels: Mapping[str, str] | None = None) -> Markup:
    return el("ul", (el("li", el("svg", el("rect", width=12, height=12, fill=colour(i)), viewBox="0 0 12 12",
                                    class_="swatch", aria_hidden="true"),
                        (labels or {}).get(name, name))
                     for i, name in enumerate(names)), class_="legend")


def stacked_bars(title: str, periods: Sequence[str], series: Mapping[str, Sequence[float]], measure: str,
                 labels: Mapping[str, str] | None = None, shown: Mapping[str, str] | None = None) -> Markup:
    """One bar per period, stacked by series (e.g. per member); `series[name][i]` is period i's value;
    `shown` says a period as the page shows it (its locale's date)."""
    names = list(series)
    totals = [sum(series[n][i] for n in names) for i in range(len(periods))]
    top = max(totals, default=0.0) or 1.0
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - TOP - BOTTOM
    band = plot_w / max(len(periods), 1)
    bar_w = max(band * 0.7, 1.0)
    shapes: list[Markup] = []
    for tick in (0.0, top / 2, top):  # y axis: 0, half, max
        y = TOP + plot_h - plot_h * tick / top
        shapes.append(el("line", x1=LEFT, x2=WIDTH - 8, y1=f"{y:.1f}", y2=f"{y:.1f}", class_="grid"))
        shapes.append(el("text", _shown(tick), x=LEFT - 4, y=f"{y + 4:.1f}", class_="axis", text_anchor="end"))
    every = max(1, len(periods) // 8)  # at most ~8 period labels
    for i, period in enumerate(periods):
        x = LEFT + i * band + (band - bar_w) / 2
        base = float(TOP + plot_h)
        for s, name in enumerate(names):
            value = series[name][i]
            if value <= 0:
                continue
            h = plot_h * value / top
            base -= h
            label = (labels or {}).get(name, name)
            when = (shown or {}).get(period, period)
            shapes.append(el("rect", el("title", f"{when} · {label}: {_shown(value)} {measure}"),
                             x=f"{x:.1f}", y=f"{base:.1f}", width=f"{bar_w:.1f}", height=f"{h:.1f}",
                             fill=colour(s), data_series=name, data_period=period, data_value=_number(value)))
        if i % every == 0:
            shapes.append(el("text", (shown or {}).get(period, period), x=f"{x + bar_w / 2:.1f}", y=HEIGHT - 10,
                             class_="axis", text_anchor="middle"))
    svg = el("svg", el("title", title), join(shapes), viewBox=f"0 0 {WIDTH} {HEIGHT}", role="img",
             aria_label=f"{title} ({measure})", class_="chart")
    # tabindex: on a phone the chart keeps its size and scrolls in its box, which the keyboard must reach
    return el("figure", el("figcaption", title, el("small", f" ({measure})")), svg, legend(names, labels),
              tabindex=0)


def share_bars(title: str, rows: Sequence[tuple[str, float, str]], unit: str,
               labels: Mapping[str, str] | None = None) -> Markup:
    """Horizontal bars, one per row `(name, amount, amount text)`, longest first as given."""
    top = max((amount for _, amount, _ in rows), default=0.0) or 1.0
    total = sum(amount for _, amount, _ in rows) or 1.0
    row_h = 26
    height = row_h * len(rows) + 8
    label_w = 180
    bar_room = WIDTH - label_w - 140
    shapes: list[Markup] = []
    for i, (name, amount, text) in enumerate(rows):
        y = 4 + i * row_h
        label = (labels or {}).get(name, name)
        w = max(bar_room * amount / top, 1.0)
        share = f"{number(Decimal(f'{100 * amount / total:.1f}'))} %"
        shapes.append(el("text", label, x=label_w - 6, y=y + 16, class_="axis", text_anchor="end"))
        shapes.append(el("rect", el("title", f"{label}: {number(Decimal(text))} {unit} ({share})"), x=label_w, y=y + 3,
                         width=f"{w:.1f}", height=row_h - 8, fill=colour(i), data_series=name, data_value=text))
        shapes.append(el("text", f"{number(Decimal(text))} {unit} · {share}", x=f"{label_w + w + 6:.1f}", y=y + 16,
                         class_="axis"))
    svg = el("svg", el("title", title), join(shapes), viewBox=f"0 0 {WIDTH} {height}", role="img",
             aria_label=title, class_="chart")
    return el("figure", el("figcaption", title), svg, tabindex=0)
