"""A page shown while its ledger catches up (node/store/states.py `LedgerStates.shown`): after a restart or an
upgrade, until the ledger's fold is at hand, a page shows the last state the node had of it rather than wait for
the whole ledger, and says which entries stored since (the owner's write just made, say) it does not count yet: the
newest few by name, then how many more, however many arrive meanwhile (the store keeps only the newest:
node/store/since.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from node.web.html import Markup, el
from node.web.i18n import _, ngettext, number
from protocol import Entry, TallyError
from protocol.state import LedgerState
from protocol.valueflows import ABOUT_KIND, ENDORSE_KIND, EVENT_KIND, parse_event

#: The entries a notice names, newest first (at most node/store/since.py NEWEST); it counts the rest.
LISTED: Final = 5


@dataclass(frozen=True, slots=True)
class Behind:
    """The state a page shows and the entries stored after it, not counted in it yet."""

    name: str  # the ledger's
    state: LedgerState
    since: tuple[Entry, ...]  # the newest of them, oldest first
    count: int  # how many there are
    exact: bool  # False: the state the Tally version before saved (an upgrade), shown while the ledger is folded again


#: Set on a request whose page shows a ledger's last state (`layout.shown_ledger`): `page` says so.
BEHIND: Final = web.RequestKey("behind", Behind)


def what(entry: Entry, state: LedgerState) -> str:
    """An entry as the notice names it: a contribution's action and quantity, a verdict, a name, else its kind."""
    body = entry.body or {}
    if entry.kind == EVENT_KIND:
        try:
            event = parse_event(dict(body), author=entry.author, ledger=state.ledger, rules=state.rules)
        except TallyError:
            return entry.kind
        return f"{event.action} {number(event.quantity.value)} {event.quantity.unit}" + (
            f" ({event.note})" if event.note else "")
    if entry.kind == ENDORSE_KIND:
        return _("accepts a contribution") if body.get("verdict") == "accept" else _("rejects a contribution")
    if entry.kind == ABOUT_KIND and isinstance(body.get("name"), str):
        return _("is now called {name}").format(name=body["name"])
    return entry.kind


def notice(behind: Behind, name: Callable[[str], str]) -> Markup:
    """What the page says of the entries it does not count yet (`name`: an author as the page names them)."""
    newest: Sequence[Entry] = behind.since[::-1][:LISTED]
    more = behind.count - len(newest)
    said = _("{ledger} is still loading (after a restart or an upgrade): this page does not count its {count} "
             "newest entries yet. Reload in a moment.").format(ledger=behind.name, count=number(behind.count))
    if not behind.exact:
        said = _("{ledger} is still loading after an upgrade: this page shows it as the Tally version before counted "
                 "it, without its {count} newest entries. Reload in a moment.").format(
                     ledger=behind.name, count=number(behind.count))
    named = (el("li", name(behind.state.agent_of(e.author)), ": ", what(e, behind.state)) for e in newest)
    rest = el("li", ngettext("and {count} more entry", "and {count} more entries", more).format(
        count=number(more)), class_="more") if more > 0 else None
    return el("div", el("p", said), el("ul", named, rest) if newest else None, class_="flash catching-up",
              role="status")
