"""Contributions (SPEC.md §16.5, §16.6): the valid events, each decided from the valid endorsements of it and
the corrections of its lineage, with its claim value."""

from __future__ import annotations

import operator
from array import array
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from decimal import Decimal
from heapq import nlargest
from itertools import groupby, pairwise
from typing import Any, Final, NamedTuple, overload

from .cid import CID
from .prepared import Prepared, latest_of
from .rules import Rules
from .valueflows import Endorsement, Event, claim_value

FINAL, PENDING, REJECTED, CORRECTED = "final", "pending", "rejected", "corrected"
_NO_CLAIM: Final = Decimal(0)  # one object for every contribution that claims nothing
#: rate -> quantity -> claim: the claims of events alike, each one Decimal (a fold's; no key tuple per quantity)
Claims = dict[Decimal, dict[Decimal, Decimal]]


@dataclass(frozen=True, slots=True)
class Contribution:
    id: CID
    author: str
    seq: int
    ts: int
    event: Event
    claim: Decimal  # claim value under the ledger's rates; it counts only when final
    status: str  # final, pending, rejected or corrected
    accepts: tuple[str, ...]  # members whose latest verdict accepts it
    rejects: tuple[str, ...]
    corrected_by: CID | None = None
    origin: CID | None = None  # the contribution its correction lineage started from; None: itself
    #: (rejecter, note) of each rejecter whose latest verdict rejects it with a note, by rejecter: kept with the
    #: state so a page shows them without reading the rejecters' chains (at most one note per member)
    reject_notes: tuple[tuple[str, str], ...] = ()


class Charted(NamedTuple):
    """What a chart reads of a contribution (`Contributions.charted`): its event, author, entry ts and claim."""

    event: Event
    author: str
    ts: int
    claim: Decimal


def event_ts_time(e: Event, ts: int) -> float:
    """Seconds since the epoch of an event: hasPointInTime, else hasBeginning, else its entry's `ts` (ms). As a
    `top` key, a fold's view reads it off its columns, without making the events (protocol/fold_views.py)."""
    return e.at if e.at is not None else ts / 1000


def event_order(e: Event, ts: int, raw: bytes) -> tuple[float, int, bytes]:
    """Oldest event first, then by entry ts and id (`by_event_time`'s order) as a `select` key: a fold's view reads it
    off its columns too."""
    return event_ts_time(e, ts), ts, raw


@dataclass(frozen=True)  # not slotted: a snapshot's format names protocol's slotted records (node/store/snapshots.py)
class Matching:
    """A history page's filter (`select`'s keep) but for the status (`of_status` finds those): contributions whose
    event `agent` provides, receives or wrote, of `action`, its time (`event_ts_time`) from `since` on and up to
    `until` (before it: `until_day`, `until` being the next day's start); None: any. A fold's view reads it off its
    columns, making no event."""

    agent: str | None = None
    action: str | None = None
    since: float | None = None
    until: float | None = None
    until_day: bool = False

    def __call__(self, e: Event, author: str, status: str, ts: int) -> bool:
        if self.agent is not None and self.agent not in (e.provider, e.receiver, author):
            return False
        return self.action in (None, e.action) and self.within(event_ts_time(e, ts))

    def within(self, when: float) -> bool:
        if self.since is not None and when < self.since:
            return False
        return self.until is None or (when < self.until if self.until_day else when <= self.until)


class Contributions(Sequence[Contribution]):
    """A state's contributions, by (author, seq, id), with the lookups its readers make, so that a reader asks for
    what it shows rather than going through every contribution: `ContributionTuple` (compute_state's, a tuple),
    protocol/fold_views.py's `ContributionView` (a fold's: each contribution made when read, a lookup's answer
    another such view, found without making them)."""

    __slots__ = ()

    # A view equals any sequence of the same contributions (compute_state's tuple among them); a tuple's own
    # equality (and hash) comes first in ContributionTuple's order; the views are unhashable, as __eq__ leaves them.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(map(operator.eq, self, other))

    def get(self, entry_id: CID) -> Contribution | None:
        """The contribution of an event, or None."""
        return next((c for c in self if c.id == entry_id), None)

    def of_status(self, *statuses: str) -> Contributions:
        """The contributions with one of these statuses, in order."""
        return ContributionTuple(c for c in self if c.status in statuses)

    def by_author(self, author: str) -> Contributions:
        """One author's contributions, by seq."""
        lo = bisect_left(self, author, key=_author)
        return ContributionTuple(self[lo : bisect_right(self, author, lo=lo, key=_author)])

    def awaiting(self, member: str) -> Contributions:
        """The pending contributions of others that have no verdict of `member`'s yet."""
        return ContributionTuple(c for c in self if c.status == PENDING and c.author != member
                                 and member not in c.accepts and member not in c.rejects)

    def authors(self) -> set[str]:
        return {c.author for c in self}

    def charted(self, *statuses: str) -> Iterator[Charted]:
        """What a chart reads of each contribution with one of these statuses, in order."""
        return (Charted(c.event, c.author, c.ts, c.claim) for c in self.of_status(*statuses))

    def claimed(self, status: str) -> Iterator[tuple[Event, Decimal]]:
        """The event and claim of each contribution with this status (what totals read), in order."""
        return ((c.event, c.claim) for c in self.of_status(status))

    def by_time(self) -> Contributions:
        """The contributions by the time their entries were written (ts, then id)."""
        return ContributionTuple(sorted(self, key=_written))

    def by_event_time(self) -> Contributions:
        """The contributions by their event's time (`Event.at`, else their entry's ts in seconds), then ts, then id:
        a history's order."""
        return ContributionTuple(sorted(self, key=_event_written))

    def select(self, keep: Callable[[Event, str, str, int], bool],
               key: Callable[[Event, int, bytes], Any]) -> Contributions:
        """Those whose (event, author, status, entry ts) `keep` keeps, sorted by `key` of (event, entry ts, entry
        id): a page's filter and order, read off a fold's rows without making the contributions it leaves out."""
        kept = [c for c in self if keep(c.event, c.author, c.status, c.ts)]
        return ContributionTuple(sorted(kept, key=lambda c: key(c.event, c.ts, c.id.raw)))

    def top(self, n: int, key: Callable[[Event, int], Any]) -> list[Contribution]:
        """The `n` largest by `key` of (event, entry ts), as sorted(…, reverse=True)[:n] has them."""
        found: list[Contribution] = nlargest(n, self, key=lambda c: key(c.event, c.ts))
        return found


class ContributionTuple(tuple[Contribution, ...], Contributions):
    """The contributions as a tuple (compute_state's)."""

    __slots__ = ()


_DECIDED: Final = (FINAL, PENDING, REJECTED, CORRECTED)  # a contribution's status, by its code in `PackedContributions`
_ID_WIDTH: Final = 36  # a CIDv1 sha2-256's binary form: every entry id Tally makes
_AT: Final = operator.attrgetter("at")  # an event's time (Event.at), read in C


class PackedContributions(Contributions):
    """The contributions as columns, each `Contribution` made when read: what a fold's state pickles its contributions
    as (node/store/snapshots.py), without making one object per contribution, and what a state read back holds
    (its events, and ~40 B per contribution besides, not a Contribution with its id). Ids are 36 bytes each.
    `decisions`: (accepts, rejects[, reject notes, corrected by, origin]) as protocol/fold_views.py keeps them.
    A lookup's answer (a slice, by status, author, verdicts, time) is another such view of the positions it found
    (`_pick`), read off the columns without making the contributions it leaves out, as a fold's view is."""

    __slots__ = ("_author", "_authors", "_claim", "_claims", "_decision", "_decisions", "_events", "_ids", "_pick",
                 "_seq", "_status", "_ts")

    def __init__(self, events: list[Event], ids: bytes, authors: list[str], author: bytes, seq: bytes, ts: bytes,
                 claims: list[Decimal], claim: bytes, status: bytes, decisions: list[tuple[Any, ...]],
                 decision: bytes) -> None:
        self._events, self._ids, self._authors, self._claims, self._decisions = events, ids, authors, claims, decisions
        self._author, self._seq, self._ts = array("i", author), array("q", seq), array("q", ts)
        self._claim, self._status, self._decision = array("i", claim), status, array("i", decision)
        n = len(events)
        if not (len(ids) == n * _ID_WIDTH and len(self._author) == len(self._seq) == len(self._ts) == len(self._claim)
                == len(status) == len(self._decision) == n):
            raise ValueError("the columns of packed contributions differ in length")
        self._pick: array[int] | None = None  # the positions this view shows, in its order; None: every one

    def _of(self, pick: Iterable[int]) -> PackedContributions:
        """This view of some positions of its columns (in this order)."""
        view: PackedContributions = object.__new__(PackedContributions)
        for name in PackedContributions.__slots__:
            setattr(view, name, getattr(self, name))
        view._pick = array("i", pick)
        return view

    def _positions(self) -> Sequence[int]:
        return range(len(self._events)) if self._pick is None else self._pick

    def __reduce__(self) -> tuple[Any, ...]:
        if self._pick is not None:  # a lookup's answer (never kept in a snapshot): its contributions
            return ContributionTuple, (tuple(self),)
        return PackedContributions, (self._events, self._ids, self._authors, self._author.tobytes(),
                                     self._seq.tobytes(), self._ts.tobytes(), self._claims, self._claim.tobytes(),
                                     self._status, self._decisions, self._decision.tobytes())

    def __len__(self) -> int:
        return len(self._positions())

    @overload
    def __getitem__(self, i: int) -> Contribution: ...
    @overload
    def __getitem__(self, i: slice) -> PackedContributions: ...
    def __getitem__(self, i: int | slice) -> Contribution | PackedContributions:
        if isinstance(i, slice):
            return self._of(self._positions()[i])
        return self._made(self._positions()[i])

    def __iter__(self) -> Iterator[Contribution]:
        return map(self._made, self._positions())

    def __repr__(self) -> str:
        return f"PackedContributions({len(self)} contributions)"

    def _made(self, i: int) -> Contribution:
        decision = self._decisions[self._decision[i]]
        yes, no, notes, corrected_by, origin = decision if len(decision) == 5 else (*decision, (), None, None)
        return made(CID(self._ids[i * _ID_WIDTH : (i + 1) * _ID_WIDTH]), self._authors[self._author[i]], self._seq[i],
                    self._ts[i], self._events[i], self._claims[self._claim[i]], _DECIDED[self._status[i]], yes, no,
                    corrected_by, origin, notes)

    def get(self, entry_id: CID) -> Contribution | None:
        ids, raw = self._ids, entry_id.raw
        at = ids.find(raw)
        while at >= 0 and at % _ID_WIDTH:  # found across two ids: look on
            at = ids.find(raw, at + 1)
        if at < 0 or len(raw) != _ID_WIDTH or (self._pick is not None and at // _ID_WIDTH not in self._pick):
            return None
        return self._made(at // _ID_WIDTH)

    def _coded(self, statuses: tuple[str, ...]) -> list[int]:
        status, codes = self._status, bytes(_DECIDED.index(s) for s in statuses if s in _DECIDED)
        return [i for i in self._positions() if status[i] in codes]

    def of_status(self, *statuses: str) -> PackedContributions:
        return self._of(self._coded(statuses))

    def by_author(self, author: str) -> PackedContributions:
        code = self._authors.index(author) if author in self._authors else -1
        if self._pick is None:  # by (author, seq, id): the authors numbered in that order (`packed`)
            lo = bisect_left(self._author, code)
            return self._of(range(lo, bisect_right(self._author, code, lo=lo)))
        return self._of(i for i in self._pick if self._author[i] == code)

    def awaiting(self, member: str) -> PackedContributions:
        heard = {n for n, (yes, no, *_) in enumerate(self._decisions) if member in yes or member in no}
        decision, author, code = self._decision, self._author, \
            self._authors.index(member) if member in self._authors else -1
        return self._of([i for i in self._coded((PENDING,)) if decision[i] not in heard and author[i] != code])

    def authors(self) -> set[str]:
        return set(map(self._authors.__getitem__, set(map(self._author.__getitem__, self._positions()))))

    def charted(self, *statuses: str) -> Iterator[Charted]:
        events, authors, author, ts, claims, claim = \
            self._events, self._authors, self._author, self._ts, self._claims, self._claim
        return (Charted(events[i], authors[author[i]], ts[i], claims[claim[i]]) for i in self._coded(statuses))

    def claimed(self, status: str) -> Iterator[tuple[Event, Decimal]]:
        events, claims, claim = self._events, self._claims, self._claim
        return ((events[i], claims[claim[i]]) for i in self._coded((status,)))

    def _raw(self, i: int) -> bytes:
        return self._ids[i * _ID_WIDTH : (i + 1) * _ID_WIDTH]

    def by_time(self) -> PackedContributions:
        positions = self._positions()
        return self._of(ranked(positions, list(map(self._ts.__getitem__, positions)), self._raw))

    def by_event_time(self) -> PackedContributions:
        positions = self._positions()
        stamps = list(map(self._ts.__getitem__, positions))
        ats = map(_AT, map(self._events.__getitem__, positions))
        times = [stamp / 1000 if at is None else at for at, stamp in zip(ats, stamps, strict=True)]
        return self._of(ranked(positions, stamps, self._raw, times))

    def select(self, keep: Callable[[Event, str, str, int], bool],
               key: Callable[[Event, int, bytes], Any]) -> PackedContributions:
        events, authors, author, status, ts = self._events, self._authors, self._author, self._status, self._ts
        found = [i for i in self._positions() if keep(events[i], authors[author[i]], _DECIDED[status[i]], ts[i])]
        return self._of(sorted(found, key=lambda i: key(events[i], ts[i], self._raw(i))))

    def top(self, n: int, key: Callable[[Event, int], Any]) -> list[Contribution]:
        events, ts = self._events, self._ts
        return list(map(self._made, nlargest(n, self._positions(), key=lambda i: key(events[i], ts[i]))))


def ranked(positions: Sequence[int], stamps: list[int], raw: Callable[[int], bytes],
           times: list[float] | None = None) -> array[int]:
    """`positions` by (`times`, `stamps`, id: `raw` of a position), each list in their order: sorted by keys looked
    up in C (a page asked for them), ids read only where stamps are alike (entries of one ms)."""
    ranks = sorted(range(len(positions)), key=stamps.__getitem__)
    if len(set(stamps)) < len(stamps):
        tied: list[int] = []
        for _, alike in groupby(ranks, key=stamps.__getitem__):
            group = list(alike)
            if len(group) > 1:
                group.sort(key=lambda r: raw(positions[r]))
            tied += group
        ranks = tied
    if times is not None:
        ranks.sort(key=times.__getitem__)  # stable: ties stay by (stamps, id)
    return array("i", map(positions.__getitem__, ranks))


def packed(contributions: Iterable[tuple[Event, bytes, str, int, int, Decimal, str, int]],
           decisions: list[tuple[Any, ...]]) -> PackedContributions | None:
    """`PackedContributions` of (event, id, author, seq, ts, claim, status, decision number) each, or None if an id
    is not 36 bytes."""
    events: list[Event] = []
    ids, author, seq, ts, claim, status, decision = bytearray(), array("i"), array("q"), array("q"), array("i"), \
        bytearray(), array("i")
    authors: dict[str, int] = {}
    claims: dict[Decimal, int] = {}
    for event, raw, who, s, t, value, decided, number in contributions:
        if len(raw) != _ID_WIDTH:
            return None
        events.append(event)
        ids += raw
        author.append(authors.setdefault(who, len(authors)))
        seq.append(s)
        ts.append(t)
        claim.append(claims.setdefault(value, len(claims)))
        status.append(_DECIDED.index(decided))
        decision.append(number)
    return PackedContributions(events, bytes(ids), list(authors), author.tobytes(), seq.tobytes(), ts.tobytes(),
                               list(claims), claim.tobytes(), bytes(status), decisions, decision.tobytes())


def _author(c: Contribution) -> str:
    return c.author


def _written(c: Contribution) -> tuple[int, bytes]:
    return c.ts, c.id.raw


def _event_written(c: Contribution) -> tuple[float, int, bytes]:
    at = c.event.at
    return c.ts / 1000 if at is None else at, c.ts, c.id.raw


class Voice(NamedTuple):
    """What the contributions read of a valid event (`contributions`): a fold (protocol/fold.py) makes these
    from its columns, without the entry."""

    id: CID
    agent: str
    seq: int
    ts: int
    latest: int  # `latest_of`: orders one identity's entries
    record: Event
    rules: Rules | None  # the rules in effect at it


#: What the contributions read of a valid endorsement: its identity, `latest_of` it, the event it names (its id's
#: bytes), whether it accepts, its note. A plain tuple: a fold makes one per endorsement from its columns.
Verdict = tuple[str, int, bytes, bool, str]


def voice(n: Prepared) -> Voice:
    assert isinstance(n.record, Event)
    e = n.entry
    return Voice(e.id, n.agent, e.header.seq, e.header.ts, latest_of(n), n.record, n.rules)


def verdict(n: Prepared) -> Verdict:
    record = n.record
    assert isinstance(record, Endorsement)
    return n.agent, latest_of(n), record.event.raw, record.accept, record.note


def contributions_of(valid: list[Prepared], rules: Rules, status: dict[bytes, str]) -> ContributionTuple:
    """The contributions of the valid events among `valid` (in a topological order); each one's status put in
    `status` too."""
    result = contributions([voice(n) for n in valid if isinstance(n.record, Event)],
                           [verdict(n) for n in valid if isinstance(n.record, Endorsement)], rules)
    for c in result:
        status[c.id.raw] = c.status
    return result


def contributions(voices: list[Voice], verdicts: Iterable[Verdict], rules: Rules,
                  claims: Claims | None = None,
                  names: dict[tuple[str, ...], tuple[str, ...]] | None = None) -> ContributionTuple:
    """The contributions of valid events (`voices`: an event after the event it corrects) from them and the valid
    endorsements (`verdicts`), by author then seq. `claims`: the claims made so far, by rate and quantity; `names`:
    the lists of members made so far (protocol/fold.py keeps one of each alike, not one per contribution)."""
    events = {v.id.raw: v for v in voices}
    # A correction belongs to the lineage of the original it corrects, directly or through other
    # corrections: all in one author's chain, so seq orders them. An event's target (a valid event)
    # comes before it.
    origin: dict[bytes, bytes] = {}
    lineages: dict[bytes, list[Voice]] = defaultdict(list)
    for raw, v in events.items():
        corrects = v.record.corrects
        if corrects is None:
            origin[raw] = raw
        else:
            origin[raw] = first = origin[corrects.raw]
            lineages[first].append(v)
    corrected_by: dict[bytes, CID] = {}
    for first, fixes in lineages.items():
        fixes.sort(key=_voice_latest)  # one chain's seq order, also across an identity's keys
        chain = [first] + [f.id.raw for f in fixes]
        # The latest correction stands; the original and earlier corrections are superseded.
        for older, newer in pairwise(chain):
            corrected_by[older] = events[newer].id
    latest: dict[tuple[str, bytes], Verdict] = {}  # each member's latest verdict on each event
    for given in verdicts:
        key = (given[0], given[2])
        seen = latest.get(key)
        if seen is None or given[1] > seen[1]:
            latest[key] = given
    accepts: dict[bytes, list[str]] = {}
    rejects: dict[bytes, list[str]] = {}
    notes: dict[bytes, list[tuple[str, str]]] = {}
    for who, _, target, accept, note in latest.values():
        if accept:
            accepts.setdefault(target, []).append(who)
        else:
            rejects.setdefault(target, []).append(who)
            if note:
                notes.setdefault(target, []).append((who, note))
    result: list[tuple[str, int, bytes, Contribution]] = []  # with its sort key: no key function called
    for raw, v in events.items():
        record = v.record
        accepted, rejected = accepts.get(raw), rejects.get(raw)
        yes = tuple(sorted(accepted)) if accepted else ()
        no = tuple(sorted(rejected)) if rejected else ()
        if names is not None:
            yes, no = names.setdefault(yes, yes), names.setdefault(no, no)
        in_effect = v.rules or rules  # the rules in effect at the contribution (§18.3)
        if raw in corrected_by:
            verdict = CORRECTED
        elif len(no) >= in_effect.validation.reject:
            verdict = REJECTED
        elif len(yes) >= in_effect.validation.accept:
            verdict = FINAL
        else:
            verdict = PENDING
        first = origin[raw]
        noted = notes.get(raw)
        result.append((v.agent, v.seq, raw, made(
            v.id, v.agent, v.seq, v.ts, record, claim_under(record, in_effect, claims), verdict, yes, no,
            corrected_by.get(raw), None if first == raw else events[first].id, tuple(sorted(noted)) if noted else (),
        )))
    result.sort()  # by author, seq, id: unique ids, so the contributions themselves are never compared
    return ContributionTuple([c for _, _, _, c in result])


def made(id: CID, author: str, seq: int, ts: int, event: Event, claim: Decimal, status: str,
                  accepts: tuple[str, ...], rejects: tuple[str, ...], corrected_by: CID | None, origin: CID | None,
                  reject_notes: tuple[tuple[str, str], ...]) -> Contribution:
    """A Contribution made through its slots: its frozen __init__ sets each field with object.__setattr__, twice
    the cost, and a fold makes one per event decided."""
    c: Contribution = _new(Contribution)
    _ID(c, id)
    _AUTHOR(c, author)
    _SEQ(c, seq)
    _TS(c, ts)
    _EVENT(c, event)
    _CLAIM(c, claim)
    _STATUS(c, status)
    _ACCEPTS(c, accepts)
    _REJECTS(c, rejects)
    _CORRECTED_BY(c, corrected_by)
    _ORIGIN(c, origin)
    _REJECT_NOTES(c, reject_notes)
    return c


_new: Final = object.__new__
_ID, _AUTHOR, _SEQ, _TS, _EVENT, _CLAIM, _STATUS, _ACCEPTS, _REJECTS, _CORRECTED_BY, _ORIGIN, _REJECT_NOTES = (
    vars(Contribution)[f.name].__set__ for f in fields(Contribution))


def _voice_latest(v: Voice) -> int:
    return v.latest


def claim_under(event: Event, rules: Rules, claims: Claims | None = None, *, keep: bool = True) -> Decimal:
    """The claim value (§16.6); a pledge payment earns none unless the rules say `pledge_claims` (§18.5).
    `claims` (see `contributions`): a quantity and a rate are canonical decimals (rules.parse_decimal parses
    both), so equal ones are written alike and so is their product. `keep`: a claim not in `claims` is put
    there (False: a reader beside the fold that owns `claims` only looks)."""
    if event.fulfills is not None and not rules.pledge_claims:
        return _NO_CLAIM
    if claims is None:
        return claim_value(event, rules)
    rate = rules.rate(event.action, event.classification, event.quantity.unit)
    if rate is None:
        return _NO_CLAIM
    by_quantity = claims.get(rate)
    claim = None if by_quantity is None else by_quantity.get(event.quantity.value)
    if claim is None:
        claim = claim_value(event, rules)
        if keep:
            claims.setdefault(rate, {})[event.quantity.value] = claim
    return claim

