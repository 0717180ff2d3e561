"""HTML built from elements, escaped by construction.

The dashboard never pastes a string into markup: `el()` escapes every text
child and attribute value, and only `Markup` (what `el()` and `esc()` return)
goes in as is. Entry bodies come from peers, so a note like `<script>` must
show as text, never run.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from typing import Final

_VOID: Final = frozenset({"br", "hr", "img", "input", "link", "meta"})


class Markup(str):
    """Text that is already HTML (escaped where it had to be)."""

    __slots__ = ()


Child = Markup | str | int | None | Iterable["Child"]
AttrValue = str | int | bool | None


def esc(text: object) -> Markup:
    return Markup(escape(str(text), quote=True))


def _render(child: Child, out: list[str]) -> None:
    if child is None:
        return
    if isinstance(child, Markup):
        out.append(child)
    elif isinstance(child, str):
        out.append(escape(child, quote=False))
    elif isinstance(child, int):
        out.append(str(child))
    else:
        for item in child:
            _render(item, out)


def el(tag: str, *children: Child, **attrs: AttrValue) -> Markup:
    """`<tag attrs>children</tag>`. Attribute names: a trailing `_` is dropped (`class_`), `_` becomes `-`;
    None or False leaves an attribute out, True writes it bare."""
    parts = [f"<{tag}"]
    for name, value in attrs.items():
        if value is None or value is False:
            continue
        name = name.rstrip("_").replace("_", "-")
        parts.append(f" {name}" if value is True else f' {name}="{escape(str(value), quote=True)}"')
    parts.append(">")
    if tag in _VOID:
        return Markup("".join(parts))
    for child in children:
        _render(child, parts)
    parts.append(f"</{tag}>")
    return Markup("".join(parts))


def join(children: Iterable[Child]) -> Markup:
    out: list[str] = []
    for child in children:
        _render(child, out)
    return Markup("".join(out))


def field(label: str, tag: str, *children: Child, **attrs: AttrValue) -> Markup:
    """A form control with its label (`for` its id, so the label names the control alone)."""
    control_id = f"f-{attrs['name']}".replace(":", "-").replace(" ", "-")
    return el("div", el("label", label, for_=control_id), el(tag, *children, id=control_id, **attrs), class_="field")


def table(headers: Iterable[str], rows: list[Markup], *, empty: Child = None, **attrs: AttrValue) -> Markup:
    """A table with a header row; `empty` (when given) instead of a table without rows."""
    if not rows and empty is not None:
        return join((empty,))
    return el("table", el("thead", el("tr", (el("th", h) for h in headers))), el("tbody", rows), **attrs)
