"""What a ledger fold (protocol/fold.py) keeps for its states to show: each entry's status as a one-byte code
(`StatusView`) and the contributions (`Decided`), which a state shows made as read (`ContributionView`); the digest's
buckets are protocol/fold_buckets.py's."""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from heapq import merge, nlargest
from itertools import groupby
from operator import attrgetter, itemgetter
from typing import Any, Final, overload

from .cid import CID
from .contributions import (
    Charted,
    Claims,
    Contributions,
    ContributionTuple,
    Matching,
    claim_under,
    event_order,
    event_ts_time,
    made,
    packed,
    ranked,
)
from .fold_ids import Ids
from .fold_rows import Rows
from .rules import Rules
from .state import (
    CONFLICTING,
    CORRECTED,
    ERASED,
    FINAL,
    IGNORED,
    INVALID,
    PENDING,
    QUARANTINED,
    REJECTED,
    VALID,
    WAITING,
    Contribution,
)
from .valueflows import Event

#: every status an entry can have, by its one-byte code in a fold
STATUSES: Final = (VALID, INVALID, WAITING, QUARANTINED, IGNORED, CONFLICTING, ERASED, FINAL, PENDING, REJECTED,
                    CORRECTED)
CODES: Final = {status: code for code, status in enumerate(STATUSES)}


#: What a contribution's status rests on besides its event, kept once for all contributions alike: who accept, who
#: reject, and (when any is not empty: a tuple of 2 is 24 B less) the rejecters' notes, the correction that
#: supersedes it, the original of its lineage
Decision = (tuple[tuple[str, ...], tuple[str, ...]]
            | tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, str], ...], CID | None, CID | None])


class Decided:
    """The fold's contributions, each kept as its event's row and its decision's number (`Decision`), not as a
    `Contribution` with its id (~270 B per contribution): a state's `ContributionView` makes one when it is read.
    The rows are kept by (author, seq, id); rows decided for the first time merge in at the next read (`order`).
    An event kept as an object, not a row (protocol/fold_rows.py `Rows.keep`: rare), keeps its contribution."""

    def __init__(self) -> None:
        self._order = array("i")  # rows of the contributions, by (author, seq, id)
        self._new = array("i")  # rows decided for the first time since the last `order`
        self._decision = array("i")  # row -> its decision's number in `decisions`; -1 (or past its end): none
        self.decisions: list[Decision] = []  # only grows: a state's view reads it beside the fold
        self._numbers: dict[Decision, int] = {}
        self.kept: dict[int, Contribution] = {}  # the contributions of events that are not rows

    def put(self, row: int, c: Contribution, is_row: bool) -> None:
        decision: Decision = (c.accepts, c.rejects) if not c.reject_notes and c.corrected_by is c.origin is None \
            else (c.accepts, c.rejects, c.reject_notes, c.corrected_by, c.origin)
        n = self._numbers.get(decision)
        if n is None:
            n = self._numbers[decision] = len(self.decisions)
            self.decisions.append(decision)
        numbers = self._decision
        if row >= len(numbers):  # grown an eighth more at a time: rows arrive in order
            numbers.frombytes(b"\xff" * (4 * (row + 1 - len(numbers) + len(numbers) // 8)))
        if numbers[row] < 0:
            self._new.append(row)
        numbers[row] = n
        if not is_row:
            self.kept[row] = c

    def order(self, rows: Rows) -> tuple[array[int], array[int]]:
        """The rows by (author, seq, id), and each row's decision number: copies, a state's own."""
        new = self._new
        if new:
            kept, agents, authors = self.kept, rows.agents, rows.author
            seqs = rows.seq if rows.big_seqs else rows.seqs.__getitem__

            def agent(row: int) -> str:
                c = kept.get(row)
                return agents[authors[row]] if c is None else c.author

            def seq(row: int) -> int:
                c = kept.get(row)
                return seqs(row) if c is None else c.seq

            self._new = array("i")
            self._order = _merged(self._order, _sorted(new, agent, seq, rows.ids.id), agent, seq, rows.ids.id)
        return array("i", self._order), array("i", self._decision)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (node/store/snapshots.py) with its arrays as bytes: a snapshot names no class but protocol's."""
        return {**vars(self), "_order": self._order.tobytes(), "_new": self._new.tobytes(),
                "_decision": self._decision.tobytes()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state)
        for name in ("_order", "_new", "_decision"):
            setattr(self, name, array("i", state[name]))


def _sorted(rows: array[int], agent: Callable[[int], str], seq: Callable[[int], int],
            raw: Callable[[int], bytes]) -> list[int]:
    """`rows` by (author, seq, id), sorted on one int each (the author's rank, then seq: no tuple, nor id, per row;
    seq is a CBOR uint, under 2**64); the few alike in both (one identity's keys, forks) then by id."""
    ranks = {a: i << 64 for i, a in enumerate(sorted(set(map(agent, rows))))}

    def key(row: int) -> int:
        return ranks[agent(row)] | seq(row)

    ordered = sorted(rows, key=key)
    out: list[int] = []
    for _, alike in groupby(ordered, key=key):
        group = list(alike)
        if len(group) > 1:
            group.sort(key=raw)
        out += group
    return out


def _merged(order: array[int], new: list[int], agent: Callable[[int], str], seq: Callable[[int], int],
            raw: Callable[[int], bytes]) -> array[int]:
    def key(row: int) -> tuple[str, int, bytes]:
        return agent(row), seq(row), raw(row)

    if not order:
        return array("i", new)
    if len(new) <= 64 or len(new) <= len(order) // 64:  # a few: a bisect each, not a pass over all
        for row in new:
            order.insert(bisect_left(order, key(row), key=key), row)
        return order
    return array("i", merge(order, new, key=key))


class ContributionView(Contributions):
    """A state's contributions, as the fold had them then (its rows' order and decisions copied, its statuses those
    of the state's `StatusView`): each `Contribution` made from its event's row when read, so a state holds no object
    per contribution, and a lookup's answer is another such view of the rows it found (by status, author, verdicts)
    without making any. Equal to a tuple of the same contributions; pickled as one (`ContributionTuple`)."""

    __slots__ = ("_claims", "_codes", "_decision", "_decisions", "_kept", "_order", "_rows", "_rules")

    def __init__(self, rows: Rows, order: array[int], decision: array[int], decided: Decided, codes: bytes,
                 rules: Rules, claims: Claims) -> None:
        self._rows, self._order, self._decision, self._codes = rows, order, decision, codes
        self._decisions, self._kept, self._rules, self._claims = decided.decisions, decided.kept, rules, claims

    def _of(self, order: array[int]) -> ContributionView:
        """This view of some of its rows (in its order)."""
        view: ContributionView = _new(ContributionView)
        for name in ContributionView.__slots__:
            setattr(view, name, getattr(self, name))
        view._order = order
        return view

    def __len__(self) -> int:
        return len(self._order)

    @overload
    def __getitem__(self, i: int) -> Contribution: ...
    @overload
    def __getitem__(self, i: slice) -> ContributionView: ...
    def __getitem__(self, i: int | slice) -> Contribution | ContributionView:
        if isinstance(i, slice):
            return self._of(self._order[i])
        return self._made(self._order[i])

    def __iter__(self) -> Iterator[Contribution]:
        return map(self._made, self._order)

    def __repr__(self) -> str:
        return f"ContributionView({len(self)} contributions)"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled (node/store/snapshots.py) as `PackedContributions`: columns, no Contribution made."""
        event, agent, ts = self._readers()
        codes, numbers, raw = self._codes, self._decision, self._rows.ids.id
        as_packed = packed(((e, raw(row), agent(row), self._seq(row), ts(row), self._claim(row, e),
                             STATUSES[codes[row]], numbers[row]) for row in self._order if (e := event(row))),
                           self._decisions)
        return (ContributionTuple, (tuple(self),)) if as_packed is None else as_packed.__reduce__()

    def charted(self, *statuses: str) -> Iterator[Charted]:
        codes, wanted = self._codes, bytes(CODES[s] for s in statuses if s in CODES)
        event, agent, ts = self._readers()
        return (Charted(e, agent(row), ts(row), self._claim(row, e)) for row in self._order
                if codes[row] in wanted and (e := event(row)))

    def claimed(self, status: str) -> Iterator[tuple[Event, Decimal]]:
        code, codes = CODES[status], self._codes
        return ((e, self._claim(row, e)) for row in self._order if codes[row] == code and (e := self._event(row)))

    def _seq(self, row: int) -> int:
        kept = self._kept.get(row)
        return self._rows.seq(row) if kept is None else kept.seq

    def _claim(self, row: int, event: Event) -> Decimal:
        """Row `row`'s claim; `event`: its event (built by the caller: an event kept as columns is built as read)."""
        kept = self._kept.get(row)
        if kept is not None:
            return kept.claim
        return claim_under(event, self._rows.rules_of(row) or self._rules, self._claims, keep=False)

    def _made(self, row: int) -> Contribution:
        """Row `row`'s contribution, from its columns (what `Rows.voice` reads, without making a Voice)."""
        decision = self._decisions[self._decision[row]]
        yes, no, notes, corrected_by, origin = decision if len(decision) == 5 else (*decision, (), None, None)
        status = STATUSES[self._codes[row]]
        kept = self._kept.get(row)
        if kept is not None:
            return made(kept.id, kept.author, kept.seq, kept.ts, kept.event, kept.claim, status, yes, no,
                        corrected_by, origin, notes)
        rows = self._rows
        event = rows.event(row)
        claim = claim_under(event, rows.rules_of(row) or self._rules, self._claims, keep=False)
        return made(CID(rows.ids.id(row)), rows.agents[rows.author[row]], rows.seq(row), rows.ts[row], event, claim,
                    status, yes, no, corrected_by, origin, notes)

    def get(self, entry_id: CID) -> Contribution | None:
        row = self._rows.ids.get(entry_id.raw)
        if row is None or row >= len(self._decision) or self._decision[row] < 0 or row >= len(self._codes):
            return None
        return self._made(row)

    def of_status(self, *statuses: str) -> ContributionView:
        codes, wanted = self._codes, bytes(CODES[s] for s in statuses if s in CODES)
        if len(wanted) == 1:
            code = wanted[0]
            return self._of(array("i", [row for row in self._order if codes[row] == code]))
        return self._of(array("i", [row for row in self._order if codes[row] in wanted]))

    def _agent(self, row: int) -> str:
        kept = self._kept.get(row)
        return self._rows.agents[self._rows.author[row]] if kept is None else kept.author

    def by_author(self, author: str) -> ContributionView:
        order = self._order
        lo = bisect_left(order, author, key=self._agent)
        return self._of(order[lo : bisect_right(order, author, lo=lo, key=self._agent)])

    def awaiting(self, member: str) -> ContributionView:
        # the decisions that heard from `member` found once each, not once per contribution
        heard = {n for n, (yes, no, *_) in enumerate(self._decisions) if member in yes or member in no}
        codes, numbers, pending = self._codes, self._decision, CODES[PENDING]
        found = [row for row in self._order if codes[row] == pending and numbers[row] not in heard]
        if self._kept:
            return self._of(array("i", [row for row in found if self._agent(row) != member]))
        mine, author = {n for n, agent in enumerate(self._rows.agents) if agent == member}, self._rows.author
        return self._of(array("i", [row for row in found if author[row] not in mine]))

    def authors(self) -> set[str]:
        if self._kept:
            return set(map(self._agent, self._order))
        agents = self._rows.agents  # each author's number looked up once
        return set(map(agents.__getitem__, set(map(self._rows.author.__getitem__, self._order))))

    def by_time(self) -> ContributionView:
        _, _, ts = self._readers()
        return self._of(self._ranked(list(map(ts, self._order))))

    def by_event_time(self) -> ContributionView:
        event, _, ts = self._readers()
        stamps = list(map(ts, self._order))
        if self._kept:
            ats = map(_AT, map(event, self._order))
            times = [stamp / 1000 if at is None else at for at, stamp in zip(ats, stamps, strict=True)]
        else:  # read off the events' columns, none built (nan: no time of its own)
            rows = self._rows
            at_of = map(rows.events.at.__getitem__, map(rows.rec.__getitem__, self._order))
            times = [at if at == at else stamp / 1000 for at, stamp in zip(at_of, stamps, strict=True)]
        return self._of(self._ranked(stamps, times))

    def _ranked(self, stamps: list[int], times: list[float] | None = None) -> array[int]:
        """The rows by (`times`, `stamps`, id), each list in this view's order (`contributions.ranked`)."""
        return ranked(self._order, stamps, self._rows.ids.id, times)

    def _event(self, row: int) -> Event:
        kept = self._kept.get(row)
        return self._rows.event(row) if kept is None else kept.event

    def _ts(self, row: int) -> int:
        kept = self._kept.get(row)
        return self._rows.ts[row] if kept is None else kept.ts

    def select(self, keep: Callable[[Event, str, str, int], bool],
               key: Callable[[Event, int, bytes], Any]) -> ContributionView:
        if isinstance(keep, Matching) and key is event_order and not self._kept:  # a history page's
            return self._of(self._matching(keep))
        event, agent, ts = self._readers()
        codes, raw = self._codes, self._rows.ids.id
        # each event built once (kept as columns: `Rows.event`), its key made as it is kept
        found = [(row, key(e, t, raw(row))) for row in self._order
                 if keep(e := event(row), agent(row), STATUSES[codes[row]], t := ts(row))]
        found.sort(key=_second)
        return self._of(array("i", [row for row, _ in found]))

    def _readers(self) -> tuple[Callable[[int], Event], Callable[[int], str], Callable[[int], int]]:
        """A row's event, author and ts: read off the columns in C when every event is a row (most ledgers)."""
        if self._kept:
            return self._event, self._agent, self._ts
        rows = self._rows
        agents, authors = rows.agents, rows.author
        return rows.event, lambda row: agents[authors[row]], rows.ts.__getitem__

    def _matching(self, m: Matching) -> array[int]:
        """`select(m, event_order)`, read off the rows' columns: no event built (~1 us each)."""
        rows = self._rows
        rec, ts, author = rows.rec, rows.ts, rows.author
        authors = None if m.agent is None else {n for n, agent in enumerate(rows.agents) if agent == m.agent}
        found = rows.events.matching(((row, rec[row], ts[row], author[row]) for row in self._order), m, authors)
        found.sort()
        if len(set(map(_when_ts, found))) == len(found):  # no two alike in time and ts: the usual case
            return array("i", map(_third, found))
        out, raw = array("i"), rows.ids.id
        for _, alike in groupby(found, key=_when_ts):  # those alike by id, as by_event_time has them
            out.extend(sorted(map(_third, alike), key=raw))
        return out

    def top(self, n: int, key: Callable[[Event, int], Any]) -> list[Contribution]:
        if key is event_ts_time and not self._kept:  # the newest events: their times read off the columns
            rows = self._rows
            time, rec, at = rows.events.time, rows.rec, rows.ts
            return list(map(self._made, nlargest(n, self._order, key=lambda row: time(rec[row], at[row]))))
        event, _, ts = self._readers()
        return list(map(self._made, nlargest(n, self._order, key=lambda row: key(event(row), ts(row)))))


_new: Final = object.__new__
_AT: Final = attrgetter("at")  # an event's time (Event.at), read in C
_second: Final = itemgetter(1)
_third: Final = itemgetter(2)
_when_ts: Final = itemgetter(0, 1)


class StatusView(Mapping[bytes, str]):
    """A state's entry id -> status map, as the fold had it then: the fold's ids (which only grow) and a copy of
    its one-byte status codes, so a state after one new entry copies a byte per entry, not a dict."""

    __slots__ = ("_codes", "_ids")

    def __init__(self, ids: Ids, codes: bytes) -> None:
        self._ids, self._codes = ids, codes

    def __getitem__(self, raw: bytes) -> str:
        i = self._ids[raw]
        if i >= len(self._codes):  # added to the fold after this state
            raise KeyError(raw)
        return STATUSES[self._codes[i]]

    def __len__(self) -> int:
        return len(self._codes)

    def __iter__(self) -> Iterator[bytes]:
        return self._ids.first(len(self._codes))  # ids the fold only appends to: safe beside it

    def coded(self) -> tuple[tuple[str, ...], Iterator[tuple[bytes, int]]]:
        """The names of the statuses, and each id with its status's number among them, in this view's order:
        what a snapshot saves (node/store/snapshots.py), read in order rather than looked up a million times."""
        return STATUSES, zip(self, self._codes, strict=True)

    def __repr__(self) -> str:
        return f"StatusView({len(self)} entries)"
