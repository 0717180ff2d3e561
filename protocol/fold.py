"""A ledger's state kept current as entries arrive: work in proportion to what arrives.

`LedgerFold` holds what `compute_state` (protocol/state.py) builds from scratch and
updates it when entries are added, in any batches and any order; `state()` equals
`compute_state(genesis, everything added, forks)`, digest and every field
(tests/protocol/test_fold.py checks it with Hypothesis).

Why a local update is enough. An entry's own outcome (valid or not, the members and
rules it knows) depends only on its causal past, which is applied before it, so
nothing applied changes when others arrive. What does change is bounded: an
endorsement re-decides one contribution (and its corrections' lineage), a correction
its lineage, an admission or leave the member sets, a closing the rules for entries
that know it. The canonical order (a (ts, id)-greedy topological order) matters only
for the order of motions, pledges, distributions and amendments; it is kept as a
list sorted by each entry's `eff`, the largest (ts, id) in its causal past: the
greedy order is always sorted by `eff` (the entry popped when a key K is the largest
seen so far has K in its past, or the greedy would have popped an ancestor first).
New entries' `eff` are at least the smallest new key, so only the old entries with
`eff` at or above it are re-placed: none when the new entries are the newest.
"""

from __future__ import annotations

import heapq
import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from decimal import Decimal
from itertools import islice
from typing import Any, Final, TypeVar

from .cid import CID
from .distribution import DistributionRecord, conflicting
from .entry import Entry, Header
from .erasure import ERASE_KIND
from .errors import InvalidData, LocalError
from .governance import Ballot, Closing, Motion, RulesInEffect
from .keys import has_key_events
from .pledges import Pledge
from .references import NO_REFERENCES
from .rules import Rules
from .state import (
    CONFLICTING,
    CORRECTED,
    DIGEST_BUCKETS,
    EMPTY_BUCKET_DIGEST,
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
    LedgerState,
    Prepared,
    Problem,
    Voice,
    apply_node,
    bucket_digest,
    compute_state,
    contributions,
    digest_of,
    governance_of,
    is_ignored,
    prepare,
    recorded_distribution,
    voice,
)
from .state import state_digest as state_digest  # where node/store/snapshots.py reads it
from .valueflows import About, Admission, Endorsement, Event, Leave

#: the records whose canonical order the state shows (or the rules in effect follow)
_RANKED: Final = (Motion, Ballot, Closing, Pledge, About, DistributionRecord)
_T = TypeVar("_T")
#: every status an entry can have, by its one-byte code in a fold
_STATUSES: Final = (VALID, INVALID, WAITING, QUARANTINED, IGNORED, CONFLICTING, ERASED, FINAL, PENDING, REJECTED,
                    CORRECTED)
_CODES: Final = {status: code for code, status in enumerate(_STATUSES)}


def _seq(v: Voice) -> int:
    return v.seq


def _by_author(c: Contribution) -> tuple[str, int, bytes]:
    return c.author, c.seq, c.id.raw


class _ByAuthor:
    """The contributions by (author, seq, id), read often and changed a few at a time: changes merge in at the
    next read, so a read after one new entry costs a bisect and a copy of the list, not a sort. The list is its
    own key (`_by_author`): no key kept per contribution."""

    def __init__(self) -> None:
        self._values: list[Contribution] = []
        self._changed: dict[bytes, Contribution] = {}  # by id

    def put(self, c: Contribution) -> None:
        self._changed[c.id.raw] = c

    def values(self) -> list[Contribution]:
        values, changed = self._values, self._changed
        if len(changed) > 64 and len(changed) > len(values) // 64:  # many: one sort beats many inserts
            kept = [c for c in values if c.id.raw not in changed]
            kept += changed.values()
            kept.sort(key=_by_author)
            self._values = kept
        else:
            for c in changed.values():
                key = _by_author(c)
                i = bisect_left(values, key, key=_by_author)
                if i < len(values) and values[i].id.raw == c.id.raw:
                    values[i] = c
                else:
                    values.insert(i, c)
        changed.clear()
        return self._values


class StatusView(Mapping[bytes, str]):
    """A state's entry id -> status map, as the fold had it then: the fold's id index (which only grows) and a
    copy of its one-byte status codes, so a state after one new entry copies a byte per entry, not a dict."""

    __slots__ = ("_codes", "_ids", "_index")

    def __init__(self, index: Mapping[bytes, int], ids: list[bytes], codes: bytes) -> None:
        self._index, self._ids, self._codes = index, ids, codes

    def __getitem__(self, raw: bytes) -> str:
        i = self._index[raw]
        if i >= len(self._codes):  # added to the fold after this state
            raise KeyError(raw)
        return _STATUSES[self._codes[i]]

    def __len__(self) -> int:
        return len(self._codes)

    def __iter__(self) -> Iterator[bytes]:
        return islice(self._ids, len(self._codes))  # a list the fold only appends to: safe beside it

    def coded(self) -> tuple[tuple[str, ...], Iterator[tuple[bytes, int]]]:
        """The names of the statuses, and each id with its status's number among them, in this view's order:
        what a snapshot saves (node/store/snapshots.py), read in order rather than looked up a million times."""
        return _STATUSES, zip(self, self._codes, strict=True)

    def __repr__(self) -> str:
        return f"StatusView({len(self)} entries)"


class _Buckets:
    """The digest's buckets (SPEC.md §16.7): each bucket's ids sorted, and its digest kept until an entry in it
    is added or changes status; after one new entry one bucket of the 256 is hashed again."""

    def __init__(self) -> None:
        # only the buckets holding ids (a small ledger's are few: the state tests fold thousands of them)
        self._ids: dict[int, list[bytes]] = {}
        self._new: dict[int, list[bytes]] = {}
        self._digests: list[bytes] = [EMPTY_BUCKET_DIGEST] * DIGEST_BUCKETS
        self._stale: set[int] = set()  # buckets to hash again

    def add(self, raw: bytes) -> None:
        new = self._new.get(raw[-1])
        if new is None:
            self._new[raw[-1]] = [raw]
        else:
            new.append(raw)
        self._stale.add(raw[-1])

    def changed(self, raw: bytes) -> None:
        self._stale.add(raw[-1])

    def digests(self, index: Mapping[bytes, int], codes: bytearray) -> list[bytes]:
        """Each bucket's digest; its statuses looked up in C (a million-entry ledger's bucket holds ~4,000)."""
        for i in self._stale:
            ids = self._ids.setdefault(i, [])
            new = self._new.pop(i, None)
            if new:
                ids += new
                ids.sort()  # a sorted run and a few more: linear
            rows = list(map(index.__getitem__, ids))
            self._digests[i] = bucket_digest(ids, list(map(_STATUSES.__getitem__, map(codes.__getitem__, rows))))
        self._stale.clear()
        return list(self._digests)


_SLIM, _LEFT, _KEY_OK, _MAIN, _INCEPTED, _VERDICT, _ACCEPT = 1, 2, 4, 8, 16, 32, 64  # a row's flags
_COMPACT_AFTER: Final = 1_000  # entries added at once, after which the fold's working dicts are made again


class _Rows:
    """Applied entries that later rules read little of (valid events and endorsements, ignored entries) as
    columns, one row per fold index, instead of a `Prepared` with its entry and header (~450 B each): what the
    rules read of them (state.py apply_node, contributions_of) is built again when asked for (`node`). Sets,
    rules, keys and kinds that many entries share are kept once and named by number."""

    def __init__(self, ledger: CID, index: dict[bytes, int], ids: list[bytes]) -> None:
        self.ledger, self.index, self.ids = ledger, index, ids  # the fold's own (ids by index)
        self.ts, self.seq = array("q"), array("q")  # every row's ts (the canonical order's key)
        self.flags = bytearray()
        self.author, self.prev, self.kind = array("i"), array("i"), array("i")
        self.known, self.gone, self.closings, self.rules = array("i"), array("i"), array("i"), array("i")
        self.dep_at, self.dep_n, self.deps = array("i"), bytearray(), array("i")  # row -> its deps' rows
        #: a valid event's latest valid endorsement, and each such endorsement's previous one (0: none; the genesis
        #: is row 0): the endorsements of an event, a list each, took ~50 B per entry. An endorsement kept as columns
        #: (`_VERDICT`) has its member's row in `link` (its event is its last dependency, its verdict a flag).
        self.link, self.verdict_before = array("i"), array("i")
        self.notes: dict[int, str] = {}  # the note of each endorsement kept as columns that has one
        self.links: dict[bytes, CID] = {}  # the ids records name as `member`, each kept once
        self.shared: dict[Any, Any] = {}  # values records share (`_share`), each kept once
        self.records: list[Event | Endorsement | None] = []
        self.keys: list[bytes] = []
        self.agents: list[str] = []
        self.kinds: list[str] = []
        self.sets: list[frozenset[Any]] = []
        self.rule_sets: list[Rules] = []
        self._numbers: tuple[dict[Any, int], ...] = ({}, {}, {})  # key, kind, set -> its number in its list

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (node/store/snapshots.py) with its columns as bytes."""
        state = {name: value for name, value in vars(self).items() if not isinstance(value, array)}
        state["_columns"] = {name: (value.typecode, value.tobytes()) for name, value in vars(self).items()
                             if isinstance(value, array)}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        columns = state.pop("_columns")
        vars(self).update(state)
        for name, (typecode, data) in columns.items():
            setattr(self, name, array(typecode, data))

    def grow(self) -> None:
        """Rows for the indexes given a ts since (every entry has one: its ts is read for any), all at once."""
        n = len(self.ts) - len(self.flags)
        if n:
            self.flags += bytes(n)
            for column in (self.seq, self.author, self.prev, self.kind, self.known, self.gone, self.closings,
                           self.rules, self.dep_at, self.link, self.verdict_before):
                column.frombytes(bytes(n * column.itemsize))
            self.dep_n += bytes(n)
            self.records += [None] * n

    def _number(self, which: int, kept: list[Any], value: Any) -> int:
        numbers = self._numbers[which]
        number = numbers.get(value)
        if number is None:
            number = numbers[value] = len(kept)
            kept.append(value)
        return number

    def _rules_number(self, rules: Rules) -> int:
        for i in range(len(self.rule_sets) - 1, -1, -1):  # a handful at most: one per amendment in effect
            if self.rule_sets[i] is rules:
                return i
        self.rule_sets.append(rules)
        return len(self.rule_sets) - 1

    def keep(self, i: int, node: Prepared) -> bool:
        """Keep an applied entry as row `i` if later rules read only what a row holds of it."""
        record, entry = node.record, node.entry
        if (node.error is not None or not isinstance(record, Event | Endorsement | None) or node.complete
                or node.erased is not None or entry.id == self.ledger or len(node.deps) > 255 or node.rules is None):
            return False
        h, index = entry.header, self.index
        self.seq[i] = h.seq
        keys, kinds, sets = self._numbers  # looked up here, the numbers most entries find (a call each cost more)
        n = keys.get(h.author)
        self.author[i] = n if n is not None else self._number(0, self.keys, h.author)
        if len(self.agents) < len(self.keys):
            self.agents.append(node.agent)
        self.prev[i] = -1 if h.prev is None else index[h.prev.raw]
        n = kinds.get(h.kind)
        self.kind[i] = n if n is not None else self._number(1, self.kinds, h.kind)
        n = sets.get(node.known)
        self.known[i] = n if n is not None else self._number(2, self.sets, node.known)
        n = sets.get(node.gone)
        self.gone[i] = n if n is not None else self._number(2, self.sets, node.gone)
        n = sets.get(node.closings)
        self.closings[i] = n if n is not None else self._number(2, self.sets, node.closings)
        rule_sets = self.rule_sets
        self.rules[i] = len(rule_sets) - 1 if rule_sets and rule_sets[-1] is node.rules else self._rules_number(
            node.rules)
        deps = self.deps
        self.dep_at[i] = len(deps)
        self.dep_n[i] = len(node.deps)
        deps.extend([index[d.raw] for d in node.deps])
        flags = _SLIM | _LEFT * node.left_chain | _KEY_OK * node.key_ok | _MAIN * node.main | _INCEPTED * node.incepted
        if isinstance(record, Endorsement) and node.deps[-1].raw == record.event.raw:  # what `record` reads
            self._link(record.member)
            self.link[i] = index[record.member.raw]
            if record.note:
                self.notes[i] = self._share(record.note)
            flags |= _VERDICT | _ACCEPT * record.accept
        else:
            self.records[i] = None if record is None else self._slim(record)
        self.flags[i] = flags
        return True

    def record(self, i: int) -> Event | Endorsement | None:
        """Row `i`'s record (an endorsement kept as columns is built again: ~100 B each otherwise)."""
        flags = self.flags[i]
        if not flags & _VERDICT:
            return self.records[i]
        ids = self.ids
        event = self.deps[self.dep_at[i] + self.dep_n[i] - 1]
        return Endorsement(CID(ids[event]), bool(flags & _ACCEPT), self.notes.get(i, ""), self.links[ids[self.link[i]]])

    def add_verdict(self, event: int, i: int) -> None:
        self.verdict_before[i] = self.link[event]
        self.link[event] = i

    def verdicts(self, event: int) -> list[int]:
        """The rows of an event's valid endorsements, in the order they were applied."""
        found: list[int] = []
        i = self.link[event]
        while i:
            found.append(i)
            i = self.verdict_before[i]
        found.reverse()
        return found

    def _slim(self, record: Event | Endorsement) -> Event | Endorsement:
        """The record with the ids it names kept once: each decoded payload had its own copy of them (~130 B
        per entry), and of the values many events share (a quantity, a time, a note: ~150 B per event)."""
        if isinstance(record, Endorsement):  # one `keep` does not keep as columns
            event = CID(self.ids[self.index[record.event.raw]])  # the fold's own bytes
            return Endorsement(event, record.accept, self._share(record.note), self._link(record.member))
        share = self._share
        return Event(record.action, record.provider, record.receiver, share(record.quantity), record.effort,
                     share(record.classifications), share(record.point), share(record.beginning), share(record.end),
                     share(record.note), record.corrects, self._link(record.member), record.fulfills,
                     share(record.at))

    def _share(self, value: _T) -> _T:
        """`value`, or an equal one kept before (strings, floats, tuples of strings, quantities of canonical
        decimals: equal ones are alike, so sharing one changes nothing a reader sees)."""
        if value is None:
            return value
        return self.shared.setdefault(value, value)  # type: ignore[no-any-return]

    def _link(self, cid: CID) -> CID:
        kept = self.links.get(cid.raw)
        if kept is None:
            kept = self.links[cid.raw] = CID(self.ids[self.index[cid.raw]])
        return kept

    def dep_rows(self, i: int) -> array[int]:
        return self.deps[self.dep_at[i] : self.dep_at[i] + self.dep_n[i]]

    def node(self, raw: bytes) -> Prepared:
        """The entry of a row as the rules read it (KeyError: not a row)."""
        i = self.index[raw]
        if not self.flags[i] & _SLIM:
            raise KeyError(raw)
        return _RowNode(self, i)

    def voice(self, i: int) -> Voice:
        """What the contributions read of row `i` (its `latest` is its seq: a fold's `pos` is 0)."""
        seq = self.seq[i]
        record = self.record(i)
        assert record is not None
        return Voice(CID(self.ids[i]), self.agents[self.author[i]], seq, self.ts[i], seq, record,
                     self.rule_sets[self.rules[i]])

    def entry(self, i: int) -> Entry:
        """Row `i`'s entry as the rules read it: its header without payload id, size or signature."""
        ids, a, p = self.ids, self.author[i], self.prev[i]
        cid = CID(ids[i])
        header = Header(self.keys[a], self.ledger, self.seq[i], None if p < 0 else CID(ids[p]), self.ts[i],
                        self.kinds[self.kind[i]], cid, 0, b"")
        return Entry(cid, header, b"", None, None)


class _RowNode(Prepared):
    """A row built again as the rules read it. Most reads are of its membership, flags and record, so its
    entry is built only when read; what every row has alike is a class attribute, not set per node. Its
    `deps` are left out: only the entry being applied and a ledger's key events and erasures (folded whole:
    `LedgerFold.keyed`) read them."""

    __slots__ = ("_built", "_i", "_rows")
    _built: Entry | None
    # Alike for every row (`_Rows.keep` keeps no other): read here, never set on a built row.
    deps = ()
    error = None
    complete = False
    payout = None
    reach = None
    refs = NO_REFERENCES
    key_link = None
    erased = None
    pos = 0

    def __init__(self, rows: _Rows, i: int) -> None:  # Prepared.__init__ is not called: it would set them all
        self._rows, self._i, self._built = rows, i, None
        flags, a = rows.flags[i], rows.author[i]
        self.agent, self.rules = rows.agents[a], rows.rule_sets[rows.rules[i]]
        sets = rows.sets
        self.known, self.gone, self.closings = sets[rows.known[i]], sets[rows.gone[i]], sets[rows.closings[i]]
        self.left_chain, self.key_ok = bool(flags & _LEFT), bool(flags & _KEY_OK)
        self.main, self.incepted = bool(flags & _MAIN), bool(flags & _INCEPTED)

    @property
    def record(self) -> Event | Endorsement | None:  # type: ignore[override]
        return self._rows.record(self._i)  # read of few rows: built only then

    @property
    def entry(self) -> Entry:  # type: ignore[override]
        built = self._built
        if built is None:
            built = self._built = self._rows.entry(self._i)
        return built


class _Nodes(dict[bytes, Prepared]):
    """The applied entries: those kept as objects, and the rows (`_Rows`) built again when asked for, kept
    here until `drop_built` (one entry's checks read each of its dependencies about three times)."""

    __slots__ = ("built", "rows")

    def __init__(self, rows: _Rows) -> None:
        super().__init__()
        self.rows = rows
        self.built: list[bytes] = []

    def __missing__(self, raw: bytes) -> Prepared:
        node = self[raw] = self.rows.node(raw)
        self.built.append(raw)
        return node

    def drop_built(self) -> None:
        for raw in self.built:
            self.pop(raw, None)
        self.built.clear()


class LedgerFold:
    """The state of one ledger, updated in place as entries are added (a sans-IO state machine)."""

    def __init__(self, genesis: Entry, forks: Mapping[bytes, int] | None = None, *, keep_entries: bool = True) -> None:
        """`keep_entries`: keep every entry added, for a ledger with key events (folded whole); False:
        keep none, and a ledger with key events has no state here (`keyed`: the caller folds it whole)."""
        if not genesis.is_genesis or genesis.body is None:
            raise InvalidData("bad_genesis", "the state starts from a ledger.genesis entry with its payload")
        self.genesis = genesis
        self.ledger = genesis.id
        self.rules = Rules.from_body(genesis.body)
        self.founders = frozenset(self.rules.founders)
        self.forks: Mapping[bytes, int] = dict(forks or {})
        self._pending: dict[bytes, Prepared] = {}  # waiting for a dependency
        self._missing: dict[bytes, int] = {}  # pending entry -> how many of its dependencies are not applied
        self._waiters: dict[bytes, list[bytes]] = {}  # absent or pending entry -> the pending entries naming it
        self._order: list[bytes] = []  # applied entries in canonical order
        self._pos: dict[bytes, int] = {}  # position in _order of the entries whose order shows (_RANKED)
        #: entry -> the entry with the largest (ts, id) in its causal past, when not itself (most are)
        self._eff: dict[bytes, bytes] = {}
        self._book = RulesInEffect(self.rules, order=self._pos.__getitem__)
        # Every entry's status: its index (in order of arrival), its id by index, its status code by index.
        self._index: dict[bytes, int] = {}
        self._ids: list[bytes] = []
        self._codes = bytearray()
        self._buckets = _Buckets()
        self._rows = _Rows(self.ledger, self._index, self._ids)
        self._nodes = _Nodes(self._rows)  # applied, in no particular order
        self._quarantined: list[CID] = []
        self._problems: dict[bytes, Problem] = {}
        self._members: set[str] = set(self.founders)
        self._gone: set[str] = set()
        self._admissions: dict[str, CID] = dict.fromkeys(self.founders, self.ledger)
        self._sponsorships: dict[str, list[CID]] = {}
        self._names: dict[str, tuple[int, bytes, str]] = {}  # author -> (seq, id, name) of their latest
        self._heads: dict[bytes, tuple[int, CID]] = {}  # author key -> (seq, id) of their latest applied
        #: valid correction -> the original of its lineage (an event that corrects nothing is its own: not kept)
        self._origin: dict[bytes, bytes] = {}
        self._lineage: dict[bytes, list[bytes]] = {}  # corrected original -> its lineage, the original first
        self._keys: dict[bytes, bytes] = {}  # author keys, each kept once however many entries it wrote
        self._paid: dict[bytes, Contribution] = {}  # the contributions of `_paying`
        #: (quantity, rate) -> claim: the claims of events alike are one Decimal (~100 B each)
        self._claims: dict[tuple[Decimal, Decimal], Decimal] = {}
        self._members_alike: dict[tuple[str, ...], tuple[str, ...]] = {}  # who accept, reject: each list kept once
        self._undecided: set[bytes] = set()  # lineages whose contributions the entries being placed touch
        self._by_author = _ByAuthor()
        self._governed: list[bytes] = []  # valid motions, ballots, closings and pledges
        self._paying: list[bytes] = []  # valid events that fulfil a pledge
        self._paid_out: list[bytes] = []  # valid distributions
        # Key events (SPEC.md §19) cut keys off outside causal pasts: a ledger that holds one is folded
        # whole by compute_state, from every entry added (kept for that, unless the caller keeps them).
        self._entries: list[Entry] | None = [] if keep_entries else None
        self.keyed = self.rules.creator is not None  # a genesis by a founder's later key (§19.9) too
        self.add([genesis])

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, entry_id: CID) -> bool:
        return entry_id.raw in self._index

    # ---- arrival ----------------------------------------------------------------------------------

    def add(self, entries: Iterable[Entry]) -> None:
        """Take entries of this ledger in (others and ones already held are left out)."""
        fresh: list[bytes] = []
        ledger, rules, index, forks, pending, held = self.ledger, self.rules, self._index, self.forks, self._pending, \
            self._entries
        for entry in entries:
            raw, h = entry.id.raw, entry.header
            if (raw if h.ledger is None else h.ledger.raw) != ledger.raw or raw in index:  # another ledger's, or held
                continue
            fork_seq = forks.get(h.author)
            if fork_seq is not None and h.seq >= fork_seq and raw != ledger.raw:
                self._quarantined.append(entry.id)
                self._set(raw, QUARANTINED, h.ts)
                continue
            if held is not None:
                held.append(entry)
            if not self.keyed:
                self.keyed = has_key_events(entry) or h.kind == ERASE_KIND  # both fold in rounds
            pending[raw] = prepare(entry, ledger, rules, entry.author)
            self._set(raw, WAITING, h.ts)
            fresh.append(raw)
        self._rows.grow()
        ready: list[bytes] = []
        nodes, index, flags, waiters = self._nodes, self._index, self._rows.flags, self._waiters
        for raw in fresh:
            missing = 0
            for dep in self._pending[raw].deps:
                d = dep.raw
                i = index.get(d)
                if d not in nodes and (i is None or not flags[i] & _SLIM):  # not applied yet
                    waiters.setdefault(d, []).append(raw)
                    missing += 1
            if missing:
                self._missing[raw] = missing
            else:
                ready.append(raw)
        placed: list[bytes] = []  # what can apply now, each after its dependencies
        while ready:
            raw = ready.pop()
            placed.append(raw)
            self._nodes[raw] = self._pending.pop(raw)
            for child in self._waiters.pop(raw, ()):
                self._missing[child] -= 1
                if not self._missing[child]:
                    del self._missing[child]
                    ready.append(child)
        if placed:
            self._place(placed)
        if len(fresh) > _COMPACT_AFTER:  # a dict keeps its table when emptied: these held every entry meanwhile
            self._pending, self._missing, self._waiters = dict(self._pending), dict(self._missing), dict(self._waiters)
            self._nodes.drop_built()
            kept, self._nodes = self._nodes, _Nodes(self._rows)
            self._nodes.update(kept)

    def _key(self, raw: bytes) -> tuple[int, bytes]:
        return self._rows.ts[self._index[raw]], raw

    def _dep_raws(self, raw: bytes) -> list[bytes]:
        i = self._index[raw]
        if self._rows.flags[i] & _SLIM:  # a row (built again, it has no deps)
            return list(map(self._ids.__getitem__, self._rows.dep_rows(i)))
        return [d.raw for d in self._nodes[raw].deps]

    def _eff_key(self, raw: bytes) -> tuple[int, bytes]:
        return self._key(self._eff.get(raw, raw))

    def _place(self, placed: list[bytes]) -> None:
        """Put newly applicable entries in the canonical order, then apply them in it."""
        eff, nodes, ts, index, ids = self._eff, self._nodes, self._rows.ts, self._index, self._ids
        for raw in placed:  # each after its dependencies
            best, best_key = raw, (ts[index[raw]], raw)
            for dep in nodes[raw].deps:
                other = eff.get(dep.raw, dep.raw)
                other_key = (ts[index[other]], other)
                if other_key > best_key:
                    best, best_key = other, other_key
            if best is not raw:
                eff[raw] = ids[index[best]]  # the fold's own bytes, not a decoded header's copy
        low = min(map(self._eff_key, placed))
        start = bisect_left(self._order, low, key=self._eff_key)
        tail = self._greedy([*self._order[start:], *placed])
        del self._order[start:]
        self._order += tail
        for i, raw in enumerate(tail, start):
            if isinstance(getattr(nodes.get(raw), "record", None), _RANKED):  # a row is none of those
                self._pos[raw] = i
        new = set(placed)
        for raw in tail:
            if raw in new:
                self._settle(self._nodes[raw])
        self._decide(self._undecided)  # once per lineage, however many verdicts it got
        self._undecided.clear()

    def _greedy(self, group: list[bytes]) -> list[bytes]:
        """The (ts, id)-greedy topological order of `group`, whose outside dependencies are placed."""
        ts, index = self._rows.ts, self._index
        ordered = sorted([(ts[index[raw]], raw) for raw in group])
        # When the (ts, id) order is a topological order (every dependency in the group before what names it:
        # entries written in time order, the usual case), the greedy order is that order: the smallest entry
        # left is always ready.
        inside = set(group)
        for key in ordered:
            for dep in self._dep_raws(key[1]):
                if dep in inside and (ts[index[dep]], dep) > key:
                    return self._kahn(group, inside)
        return [raw for _, raw in ordered]

    def _kahn(self, group: list[bytes], inside: set[bytes]) -> list[bytes]:
        """Kahn's algorithm with a (ts, id) heap over `group` (`inside`: its entries)."""
        count: dict[bytes, int] = {}
        dependents: dict[bytes, list[bytes]] = {}
        heap: list[tuple[int, bytes]] = []
        for raw in group:
            n = 0
            for dep in self._dep_raws(raw):
                if dep in inside:
                    dependents.setdefault(dep, []).append(raw)
                    n += 1
            count[raw] = n
            if not n:
                heap.append(self._key(raw))
        heapq.heapify(heap)
        out: list[bytes] = []
        while heap:
            _, raw = heapq.heappop(heap)
            out.append(raw)
            for child in dependents.get(raw, ()):
                count[child] -= 1
                if not count[child]:
                    heapq.heappush(heap, self._key(child))
        return out

    # ---- applying one entry ------------------------------------------------------------------------

    def _settle(self, node: Prepared) -> None:
        apply_node(node, self._nodes, self.ledger, self.rules, self.founders, self._book)
        entry = node.entry
        raw = entry.id.raw
        head = self._heads.get(entry.header.author)
        if head is None or entry.seq > head[0]:
            self._heads[entry.header.author] = (entry.seq, entry.id)
        if node.error is not None:
            self._set(raw, INVALID)
            self._problems[raw] = Problem(entry.id, entry.author, entry.kind, node.error.code, node.error.message)
        elif node.record is None and is_ignored(entry):
            self._set(raw, IGNORED)
        else:
            self._set(raw, VALID)
            self._count(node)
        # What later entries read of this one is in the node: the entry's bytes and payload can go, and what it
        # shares with others is kept once: its prev's id, the ledger's, its author's key, its kind. The payload's
        # id is never read again: the entry's own stands in for it (one object fewer per entry).
        self._nodes.drop_built()
        if self._rows.keep(self._index[raw], node):
            del self._nodes[raw]
            return
        h = entry.header  # built directly: dataclasses.replace costs more than the rest of this
        nodes = self._nodes
        prev = None if h.prev is None else nodes[h.prev.raw].entry.id
        node.deps = tuple([nodes[d.raw].entry.id for d in node.deps])  # applied: each is its node's own id
        key = self._keys.setdefault(h.author, h.author)
        header = Header(key, None if h.ledger is None else self.ledger, h.seq, prev, h.ts, sys.intern(h.kind),
                        entry.id, h.size, b"", h.version)
        node.entry = Entry(entry.id, header, b"", None, None)
        nodes.drop_built()  # rows built again are never kept (nor pickled with the fold)

    def _count(self, node: Prepared) -> None:
        """Fold a valid entry into the ledger-wide tallies."""
        record, entry = node.record, node.entry
        raw = entry.id.raw
        if isinstance(record, Admission):
            if node.complete:
                self._members.add(record.agent)
                # Deterministic choice among several completing admissions: the smallest id.
                current = self._admissions.get(record.agent)
                if current is None or raw < current.raw:
                    self._admissions[record.agent] = entry.id
            else:
                self._sponsorships.setdefault(record.agent, []).append(entry.id)
        elif isinstance(record, Leave):
            self._gone.add(entry.author)
        elif isinstance(record, About):
            named = self._names.get(entry.author)  # ties (only in a fork) go to the later in canonical order
            if named is None or (entry.seq, self._pos[raw]) > (named[0], self._pos[named[1]]):
                self._names[entry.author] = (entry.seq, raw, record.name)
        elif isinstance(record, Event):
            if record.corrects is None:
                origin = raw
            else:
                origin = self._origin.get(record.corrects.raw, record.corrects.raw)
                self._origin[raw] = origin
                self._lineage.setdefault(origin, [origin]).append(raw)
            if record.fulfills is not None:
                self._paying.append(raw)
            self._undecided.add(origin)
        elif isinstance(record, Endorsement):
            self._rows.add_verdict(self._index[record.event.raw], self._index[raw])
            self._undecided.add(self._origin.get(record.event.raw, record.event.raw))
        elif isinstance(record, Motion | Ballot | Closing | Pledge):
            self._governed.append(raw)
        if node.payout is not None:
            self._paid_out.append(raw)

    def _decide(self, origins: Iterable[bytes]) -> None:
        """Decide again the contributions of some lineages (an original and its corrections)."""
        lineage, said = self._lineage.get, self._voice
        events = [v for origin in origins  # each lineage in seq order: what a correction corrects first
                  for v in sorted(map(said, lineage(origin, (origin,))), key=_seq)]
        ids, index, rows = self._ids, self._index, self._rows
        verdicts = [said(ids[r]) for v in events for r in rows.verdicts(index[v.id.raw])]
        for c in contributions([*events, *verdicts], self.rules, self._claims, self._members_alike):
            if c.event.fulfills is not None:
                self._paid[c.id.raw] = c
            self._by_author.put(c)
            self._set(c.id.raw, c.status)

    def _voice(self, raw: bytes) -> Voice:
        i = self._index[raw]
        return self._rows.voice(i) if self._rows.flags[i] & _SLIM else voice(self._nodes[raw])

    def _set(self, raw: bytes, status: str, ts: int = 0) -> None:
        """Set an entry's status; a new entry (`ts`: its own) gets the next index."""
        i = self._index.get(raw)
        if i is None:
            self._index[raw] = len(self._ids)
            self._ids.append(raw)
            self._codes.append(_CODES[status])
            self._rows.ts.append(ts)  # the other columns grow at the end of the arrival (`_Rows.grow`)
            self._buckets.add(raw)
        else:
            self._codes[i] = _CODES[status]
            self._buckets.changed(raw)

    def _status(self, raw: bytes) -> str:
        return _STATUSES[self._codes[self._index[raw]]]

    # ---- reading --------------------------------------------------------------------------------

    def state(self) -> LedgerState:
        """The state of everything added so far: equal to compute_state of it."""
        if self.keyed:
            if self._entries is None:
                raise LocalError("internal", "a ledger with key events is folded whole from its entries")
            return compute_state(self.genesis, self._entries, self.forks)
        pos = self._pos.__getitem__
        governed = governance_of(
            [self._nodes[r] for r in sorted(self._governed, key=pos)], self._book,
            tuple(self._paid[r] for r in self._paying),
        )
        members = sorted(self._members - self._gone)
        recorded = [recorded_distribution(self._nodes[r]) for r in sorted(self._paid_out, key=pos)]
        clashing = conflicting(recorded) if self.rules.version > 1 else frozenset()
        for d in recorded:  # whether a distribution conflicts can change as others arrive (§17.5)
            status = CONFLICTING if d.id.raw in clashing else VALID
            if self._status(d.id.raw) != status:
                self._set(d.id.raw, status)
        state = LedgerState(
            ledger=self.ledger,
            rules=self._book.rules(governed[4]),
            members=tuple(members),
            left=tuple(sorted(self._gone)),
            contributions=tuple(self._by_author.values()),
            invalid=tuple(sorted(self._problems.values(), key=lambda p: p.id.raw)),
            waiting=tuple(sorted((n.entry.id for n in self._pending.values()), key=lambda c: c.raw)),
            quarantined=tuple(sorted(self._quarantined, key=lambda c: c.raw)),
            status=StatusView(self._index, self._ids, bytes(self._codes)),
            admissions={m: self._admissions[m] for m in members if m in self._admissions},
            sponsorships={a: tuple(sorted(c, key=lambda x: x.raw)) for a, c in sorted(self._sponsorships.items())
                          if a not in self._members},
            distributions=tuple(d for d in recorded if d.id.raw not in clashing),
            conflicting=tuple(d for d in recorded if d.id.raw in clashing),
            heads=tuple(sorted((cid for _, cid in self._heads.values()), key=lambda c: c.raw)),
            motions=governed[0],
            pledges=governed[1],
            amendments=governed[2],
            rules_heads=governed[3],
            names={who: named[2] for who, named in sorted(self._names.items())},
        )
        return replace(state, digest=self._digest(state))

    def _digest(self, state: LedgerState) -> bytes:
        """state.py's digest, from the buckets' kept digests (those that changed hashed again)."""
        return digest_of(state, self._buckets.digests(self._index, self._codes))
