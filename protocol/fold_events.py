"""A ledger fold's valid events (protocol/fold_rows.py `Rows`), kept as columns: each event is seven numbers and a
double (~36 B) instead of an Event (~150 B: 14 slots), built again when read (`event`, ~1 us). What events share is
kept once and named by number: what an event is (action, effort, classifications, note), who (provider, receiver,
member), quantities and times. What pages ask of many events at once (a history filter, the newest) is read off the
numbers (`matching`, `time`), without building them."""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from math import nan
from typing import Any, Final

from .cid import CID
from .contributions import Matching
from .valueflows import Event

#: An event's numbers in `Events.numbers`, STRIDE an event: its latest valid endorsement's row (0: none; the
#: genesis is row 0), what it is in `whats`, who in `whos`, its quantity, point, beginning and end in `values`
_LATEST, _WHAT, _WHO, _QUANTITY, _POINT, _BEGINNING, _END = range(7)
_STRIDE: Final = 7
_BLANK: Final = array("i", bytes(4 * _STRIDE))
#: an Event's slots' setters: an event built again sets them directly (a frozen dataclass's __init__ sets each
#: through object.__setattr__: 2.5 against 0.8 us)
(_S_ACTION, _S_PROVIDER, _S_RECEIVER, _S_QUANTITY, _S_EFFORT, _S_CLASSIFICATIONS, _S_POINT, _S_BEGINNING, _S_END,
 _S_NOTE, _S_CORRECTS, _S_MEMBER, _S_FULFILLS, _S_AT) = (vars(Event)[name].__set__ for name in (
    "action", "provider", "receiver", "quantity", "effort", "classifications", "point", "beginning", "end", "note",
    "corrects", "member", "fulfills", "at"))
_new: Final = object.__new__



def number_of(numbers: dict[Any, int], kept: list[Any], value: Any) -> int:
    """`value`'s number in `kept` (found through `numbers`), appended if new: values many rows share, kept once."""
    number = numbers.get(value)
    if number is None:
        number = numbers[value] = len(kept)
        kept.append(value)
    return number

class Events:
    """Events by number (0, 1, 2... as kept), as columns; only grows."""

    def __init__(self) -> None:
        self.numbers = array("i")  # `_STRIDE` numbers an event
        self.at = array("d")  # an event's `at` (nan: None)
        #: by number, what the few events that correct or fulfill name: (corrects, fulfills)
        self.named: dict[int, tuple[CID | None, CID | None]] = {}
        self.whats: list[tuple[str, bool, tuple[str, ...], str]] = []
        self.whos: list[tuple[str, str, CID]] = []
        self.values: list[Any] = [None]  # quantities, points, beginnings and ends, each kept once
        self._numbers: tuple[dict[Any, int], ...] = ({None: 0}, {}, {})  # value, what, who -> its number

    def __len__(self) -> int:
        return len(self.at)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (node/store/snapshots.py) with its columns as bytes: a snapshot names no class but protocol's."""
        return {**vars(self), "numbers": self.numbers.tobytes(), "at": self.at.tobytes()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state)
        self.numbers, self.at = array("i", state["numbers"]), array("d", state["at"])

    def add(self, record: Event, member: CID) -> int:
        """`record`'s number, its values kept once (`member`: its member's id as the fold keeps it)."""
        values_of, whats_of, whos_of = self._numbers
        what = (record.action, record.effort, record.classifications, record.note)
        n_what = whats_of.get(what)
        if n_what is None:
            n_what = number_of(self._numbers[1], self.whats, what)
        who = (record.provider, record.receiver, member.raw)
        n_who = whos_of.get(who)
        if n_who is None:
            n_who = whos_of[who] = len(self.whos)
            self.whos.append((record.provider, record.receiver, member))
        quantity, point, beginning, end = record.quantity, record.point, record.beginning, record.end
        get, values = values_of.get, self.values
        n_quantity, n_point, n_beginning, n_end = get(quantity), get(point), get(beginning), get(end)
        if n_quantity is None:
            n_quantity = number_of(self._numbers[0], values, quantity)
        if n_point is None:
            n_point = number_of(self._numbers[0], values, point)
        if n_beginning is None:
            n_beginning = number_of(self._numbers[0], values, beginning)
        if n_end is None:
            n_end = number_of(self._numbers[0], values, end)
        e = len(self.at)
        self.numbers.extend((0, n_what, n_who, n_quantity, n_point, n_beginning, n_end))
        self.at.append(nan if record.at is None else record.at)
        if record.corrects is not None or record.fulfills is not None:
            self.named[e] = (record.corrects, record.fulfills)
        return e

    def add_blank(self) -> int:
        """A number for an event kept as an object (`Rows.keep`: rare), for its list of endorsements only."""
        self.numbers.extend(_BLANK)
        self.at.append(nan)
        return len(self.at) - 1

    def event(self, e: int) -> Event:
        """Event `e`, built again."""
        _, what, who, quantity, point, beginning, end = self.numbers[e * _STRIDE : (e + 1) * _STRIDE]
        action, effort, classifications, note = self.whats[what]
        provider, receiver, member = self.whos[who]
        values, at = self.values, self.at[e]
        named = self.named.get(e) if self.named else None
        corrects, fulfills = (None, None) if named is None else named
        made: Event = _new(Event)
        _S_ACTION(made, action)
        _S_PROVIDER(made, provider)
        _S_RECEIVER(made, receiver)
        _S_QUANTITY(made, values[quantity])
        _S_EFFORT(made, effort)
        _S_CLASSIFICATIONS(made, classifications)
        _S_POINT(made, values[point])
        _S_BEGINNING(made, values[beginning])
        _S_END(made, values[end])
        _S_NOTE(made, note)
        _S_CORRECTS(made, corrects)
        _S_MEMBER(made, member)
        _S_FULFILLS(made, fulfills)
        _S_AT(made, at if at == at else None)  # nan: None
        return made

    def latest(self, e: int) -> int:
        """The row of event `e`'s latest valid endorsement (0: none)."""
        return self.numbers[e * _STRIDE + _LATEST]

    def link(self, e: int, row: int) -> int:
        """`row` is now event `e`'s latest valid endorsement: the one before it (0: none)."""
        at = e * _STRIDE + _LATEST
        before = self.numbers[at]
        self.numbers[at] = row
        return before

    def time(self, e: int, ts: int) -> float:
        """`event_ts_time` of event `e` (`ts`: its entry's)."""
        at = self.at[e]
        return at if at == at else ts / 1000

    def matching(self, rows: Iterable[tuple[int, int, int, int]], m: Matching, authors: set[int] | None
                 ) -> list[tuple[float, int, int]]:
        """Of `rows` ((row, event number, ts, author number) each), those `m` keeps (`authors`: the numbers of
        `m.agent`'s keys), as (`event_ts_time`, ts, row): read off the numbers, no event built."""
        numbers, at_of, within = self.numbers, self.at, m.within
        whats = None if m.action is None else {n for n, what in enumerate(self.whats) if what[0] == m.action}
        whos = None if m.agent is None else {n for n, who in enumerate(self.whos) if m.agent in who[:2]}
        found: list[tuple[float, int, int]] = []
        for row, e, ts, author in rows:
            base = e * _STRIDE
            if whats is not None and numbers[base + _WHAT] not in whats:
                continue
            if whos is not None and numbers[base + _WHO] not in whos and (authors is None or author not in authors):
                continue
            at = at_of[e]
            when = at if at == at else ts / 1000
            if within(when):
                found.append((when, ts, row))
        return found
