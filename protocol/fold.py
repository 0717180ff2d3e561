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

What the fold keeps beside its working dicts: each entry's id and row number (protocol/fold_ids.py: entries are
named by row), the applied entries as rows (protocol/fold_rows.py) and what its states show, each entry's status
and the digest's buckets (protocol/fold_views.py); the greedy order of what arrives is protocol/fold_order.py's.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sized
from dataclasses import replace
from typing import Any, Final

from .cid import CID
from .contributions import Claims, verdict
from .distribution import DistributionRecord, conflicting
from .entry import Entry, Header
from .erasure import ERASE_KIND
from .errors import InvalidData, LocalError
from .fold_buckets import Buckets
from .fold_ids import Ids
from .fold_order import greedy
from .fold_rows import SLIM, Nodes, RowNode, Rows
from .fold_views import CODES, STATUSES, ContributionView, Decided
from .fold_views import StatusView as StatusView  # where node/store/kept_status.py reads it
from .governance import Ballot, Closing, Motion, RulesInEffect
from .keys import KEY_KINDS, KEY_LINK
from .pledges import Pledge
from .rules import Rules
from .state import (
    CONFLICTING,
    IGNORED,
    INVALID,
    QUARANTINED,
    VALID,
    WAITING,
    Contribution,
    LedgerState,
    Prepared,
    Problem,
    Voice,
    apply_node,
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
_UNRANKED: Final = frozenset({Event, Endorsement, type(None)})  # most entries' records: told without isinstance


def _seq_of(said: tuple[Voice, int]) -> int:
    return said[0].seq


_WAITING, _QUARANTINED, _INVALID, _IGNORED, _VALID = (CODES[s] for s in (WAITING, QUARANTINED, INVALID, IGNORED, VALID))
_ROUNDS_KINDS: Final = KEY_KINDS | {ERASE_KIND}  # kinds a ledger holding one is folded whole for (`keyed`)
_COMPACT_AFTER: Final = 1_000  # entries added at once, after which the fold's working dicts are made again


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
        self._order = array("i")  # the rows of the applied entries in canonical order
        self._pos: dict[bytes, int] = {}  # position in _order of the entries whose order shows (_RANKED)
        #: row -> the row of the entry with the largest (ts, id) in its causal past, when not itself (most are)
        self._eff: dict[int, int] = {}
        self._book = RulesInEffect(self.rules, order=self._pos.__getitem__)
        # Every entry's status: its row (in order of arrival), its id by row, its status code by row.
        self._ids = Ids()
        self._codes = bytearray()
        self._buckets = Buckets()
        self._rows = Rows(self.ledger, self._ids)
        self._nodes = Nodes(self._rows)  # applied, in no particular order
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
        self._claims: Claims = {}  # the claims of events alike are one Decimal (~100 B each)
        self._members_alike: dict[tuple[str, ...], tuple[str, ...]] = {}  # who accept, reject: each list kept once
        #: the entries of this arrival applied and kept as rows so far, by row from `_settled_from`: their
        #: dependents read them rather than rows built again
        self._settled: list[Prepared | None] = []
        self._settled_from = 0
        self._unions: dict[tuple[frozenset[str], frozenset[str]], frozenset[str]] = {}  # apply_node's, this arrival's
        self._undecided: set[int] = set()  # rows of the lineages whose contributions the entries being placed touch
        self._decided = Decided()  # the contributions, made as a state's are read
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

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (node/store/snapshots.py) with its order as bytes: a snapshot names no class but protocol's."""
        return {**vars(self), "_order": self._order.tobytes()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state, _order=array("i", state["_order"]))

    def __contains__(self, entry_id: CID) -> bool:
        return entry_id.raw in self._ids

    # ---- arrival ----------------------------------------------------------------------------------

    def add(self, entries: Iterable[Entry]) -> None:
        """Take entries of this ledger in (others and ones already held are left out)."""
        fresh: list[tuple[int, bytes, Prepared]] = []
        ledger, rules, index, forks, pending, held = self.ledger, self.rules, self._ids, self.forks, self._pending, \
            self._entries
        find, add_new = index.find, index.add_new
        base = len(index)  # the first row of what arrives now
        agents: dict[bytes, str] = {}  # author key -> its did:key, made once per arrival
        if isinstance(entries, Sized):
            index.reserve(len(entries))
        for entry in entries:
            raw, h = entry.id.raw, entry.header
            if (raw if h.ledger is None else h.ledger.raw) != ledger.raw:  # another ledger's
                continue
            i = add_new(raw)
            if i < 0:  # held
                continue
            fork_seq = forks.get(h.author)
            if fork_seq is not None and h.seq >= fork_seq and raw != ledger.raw:
                self._quarantined.append(entry.id)
                self._row_made(raw, i, QUARANTINED, h.ts)
                continue
            self._row_made(raw, i, WAITING, h.ts)
            if held is not None:
                held.append(entry)
            if not self.keyed:
                body = entry.body  # has_key_events, or an erasure: both fold in rounds
                self.keyed = h.kind in _ROUNDS_KINDS or (body is not None and KEY_LINK in body)
            agent = agents.get(h.author)
            if agent is None:
                agent = agents[h.author] = entry.author
            node = pending[raw] = prepare(entry, ledger, rules, agent)
            node.row = i
            fresh.append((h.ts, raw, node))
        self._rows.grow()
        # In (ts, id) order, what depends only on what was applied before or is placed already is placed at once,
        # and is marked applied (its status is set when it is): most arrivals, each after its dependencies.
        fresh.sort()
        recent = index.recent().get
        codes, waiters, missing_of = self._codes, self._waiters, self._missing
        placed: list[Prepared] = []  # what can apply now, each after its dependencies
        later: list[Prepared] = []
        for _, raw, node in fresh:
            # most name this arrival's entries (in a dict) or the ledger's few kept ones (in the table)
            rows = node.dep_rows = [i if (i := recent(d.raw, -1)) >= 0 else find(d.raw) for d in node.deps]
            for i in rows:
                if i < 0 or codes[i] == _WAITING or codes[i] == _QUARANTINED:  # not applied yet
                    later.append(node)
                    break
            else:
                codes[node.row] = _VALID
                placed.append(node)
                del pending[raw]
        ordered = len(placed)  # the first ones placed are in (ts, id) order
        ready: list[Prepared] = []
        for node in later:  # each waits for the dependencies not applied, placed or waiting now
            missing = 0
            raw = node.entry.id.raw
            for dep, i in zip(node.deps, node.dep_rows or (), strict=True):
                if i < 0 or codes[i] == _WAITING or codes[i] == _QUARANTINED:
                    waiters.setdefault(dep.raw, []).append(raw)
                    missing += 1
            if missing:
                missing_of[raw] = missing
            else:
                ready.append(node)
        for node in placed if waiters else ():  # what waited for them since an earlier arrival
            self._release(node.entry.id.raw, ready)
        while ready:
            node = ready.pop()
            raw = node.entry.id.raw
            placed.append(node)
            del pending[raw]
            if node.dep_rows is None or -1 in node.dep_rows:
                node.dep_rows = [index[d.raw] for d in node.deps]  # each held now
            self._release(raw, ready)
        if placed:
            self._settled = [None] * (len(index) - base)
            self._settled_from = base
            try:
                self._place(placed, ordered == len(placed))
            finally:
                self._settled = []  # never kept (nor pickled) beyond the arrival
                self._unions = {}
                self._rows.built.clear()
        self._ids.settled()
        if len(fresh) > _COMPACT_AFTER:  # a dict keeps its table when emptied: these held every entry meanwhile
            self._pending, self._missing, self._waiters = dict(self._pending), dict(self._missing), dict(self._waiters)
            self._nodes.drop_built()
            kept, self._nodes = self._nodes, Nodes(self._rows)
            self._nodes.update(kept)

    def _release(self, raw: bytes, ready: list[Prepared]) -> None:
        """The entries that waited for an entry being placed now, those it was the last one for ready."""
        missing_of = self._missing
        for child in self._waiters.pop(raw, ()):
            missing_of[child] -= 1
            if not missing_of[child]:
                del missing_of[child]
                ready.append(self._pending[child])

    def _key(self, raw: bytes) -> tuple[int, bytes]:
        return self._rows.ts[self._ids[raw]], raw

    def _dep_raws(self, raw: bytes) -> list[bytes]:
        i = self._ids[raw]
        if self._rows.flags[i] & SLIM:  # a row (built again, it has no deps)
            return list(map(self._ids.id, self._rows.dep_rows(i)))
        return [d.raw for d in self._nodes[raw].deps]

    def _row_eff_key(self, i: int) -> tuple[int, bytes]:
        e = self._eff.get(i, i)
        return self._rows.ts[e], self._ids.id(e)

    def _place(self, placed: list[Prepared], ordered: bool) -> None:
        """Put newly applicable entries in the canonical order, then apply them in it (`ordered`: `placed` is in
        (ts, id) order)."""
        eff, ts, index, order = self._eff, self._rows.ts, self._ids, self._order
        rid = index.id
        batch: dict[int, Prepared] = {}
        low: tuple[int, bytes] | None = None
        mixed = False  # some entry has a larger (ts, id) than its own in its causal past
        for node in placed:  # each after its dependencies
            i = node.row
            batch[i] = node
            assert node.dep_rows is not None
            best, best_ts, best_raw = i, ts[i], node.entry.id.raw
            for d in node.dep_rows:
                other = eff.get(d, d)
                other_ts = ts[other]
                if other_ts > best_ts or (other_ts == best_ts and rid(other) > best_raw):
                    best, best_ts, best_raw = other, other_ts, rid(other)
            if best != i:
                eff[i] = best
                mixed = True
            if low is None or (best_ts, best_raw) < low:
                low = (best_ts, best_raw)
        assert low is not None
        start = len(order)
        if start and self._row_eff_key(order[-1]) >= low:  # the new entries are not all the newest
            start = bisect_left(order, low, key=self._row_eff_key)
        old = order[start:]
        if ordered and not mixed and not old:  # the usual arrival: newer than everything, in order
            order.extend([n.row for n in placed])
            pos = self._pos
            for p, node in enumerate(placed, start):
                record = node.record
                if record.__class__ not in _UNRANKED and isinstance(record, _RANKED):
                    pos[node.entry.id.raw] = p
            for node in placed:
                self._settle(node)
            self._decide(self._undecided)
            self._undecided.clear()
            return
        if not mixed and not any(r in eff for r in old):
            # Every entry's dependencies have smaller (ts, id): that order is topological, and the greedy's.
            keyed = [(ts[r], rid(r), r) for r in old]
            keyed += [(ts[n.row], n.entry.id.raw, n.row) for n in placed]
            keyed.sort()
            tail = [r for _, _, r in keyed]
        else:
            new = {n.entry.id.raw: n for n in placed}

            def deps(raw: bytes) -> list[bytes]:
                n = new.get(raw)
                return self._dep_raws(raw) if n is None else [d.raw for d in n.deps]

            tail = list(map(index.__getitem__, greedy([*map(rid, old), *new], self._key, deps)))
        del order[start:]
        order.extend(tail)
        pos = self._pos
        for p, r in enumerate(tail, start):
            new_node = batch.get(r)
            if new_node is None:  # placed before: a row is none of _RANKED, a kept entry of them has a position
                if pos:
                    raw = rid(r)
                    if raw in pos:
                        pos[raw] = p
            elif isinstance(new_node.record, _RANKED):
                pos[new_node.entry.id.raw] = p
        for r in tail:
            new_node = batch.get(r)
            if new_node is not None:
                self._settle(new_node)
        self._decide(self._undecided)  # once per lineage, however many verdicts it got
        self._undecided.clear()

    # ---- applying one entry ------------------------------------------------------------------------

    def _settle(self, node: Prepared) -> None:
        nodes, rows = self._nodes, self._rows
        i, dep_rows = node.row, node.dep_rows
        assert dep_rows is not None
        flags, built, settled, base = rows.flags, nodes.built, self._settled, self._settled_from
        # Its dependencies kept as rows: those of this arrival as they were applied (what a row holds of them is
        # theirs), the others built again from their row, not found by id.
        for dep, r in zip(node.deps, dep_rows, strict=True):
            if flags[r] & SLIM:
                d = dep.raw
                if d not in nodes:
                    held = settled[r - base] if r >= base else None
                    nodes[d] = RowNode(rows, r) if held is None else held
                    built.append(d)
        apply_node(node, nodes, self.ledger, self.rules, self.founders, self._book, self._unions)
        entry = node.entry
        raw = entry.id.raw
        head = self._heads.get(entry.header.author)
        if head is None or entry.seq > head[0]:
            self._heads[entry.header.author] = (entry.seq, entry.id)
        if node.error is not None:
            self._codes[i] = _INVALID
            self._problems[raw] = Problem(entry.id, entry.author, entry.kind, node.error.code, node.error.message)
        elif node.record is None and is_ignored(entry):
            self._codes[i] = _IGNORED
        else:
            self._codes[i] = _VALID
            self._count(node)
        self._buckets.changed(raw)
        # What later entries read of this one is in the node: the entry's bytes and payload can go, and what it
        # shares with others is kept once: its prev's id, the ledger's, its author's key, its kind. The payload's
        # id is never read again: the entry's own stands in for it (one object fewer per entry).
        nodes.drop_built()
        if rows.keep(i, node):
            if i >= base:
                settled[i - base] = node
            return
        node.dep_rows = None
        nodes[raw] = node
        h = entry.header  # built directly: dataclasses.replace costs more than the rest of this
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
        if isinstance(record, Endorsement):
            event = record.event.raw
            dep_rows = node.dep_rows
            assert dep_rows is not None
            # A valid endorsement names its event last (prepare): its row was looked up on arrival.
            at = dep_rows[-1] if node.deps[-1].raw == event else self._ids[event]
            self._rows.add_verdict(at, node.row)
            origin = self._origin.get(event) if self._origin else None
            self._undecided.add(at if origin is None else self._ids[origin])
        elif isinstance(record, Event):
            if record.corrects is None:
                self._undecided.add(node.row)
            else:
                origin = self._origin.get(record.corrects.raw, record.corrects.raw)
                self._origin[raw] = origin
                self._lineage.setdefault(origin, [origin]).append(raw)
                self._undecided.add(self._ids[origin])
            if record.fulfills is not None:
                self._paying.append(raw)
        elif isinstance(record, Admission):
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
        elif isinstance(record, Motion | Ballot | Closing | Pledge):
            self._governed.append(raw)
        if node.payout is not None:
            self._paid_out.append(raw)

    def _decide(self, origins: Iterable[int]) -> None:
        """Decide again the contributions of some lineages (an original and its corrections), by their rows."""
        ids, rows, nodes, lineage, voice_at = self._ids, self._rows, self._nodes, self._lineage, self._voice_at
        flags, row_voice = rows.flags, rows.voice
        events: list[Voice] = []
        row_of: dict[bytes, int] = {}
        for origin in origins:
            raws = lineage.get(ids.id(origin)) if lineage else None
            if raws is None:
                v = row_voice(origin) if flags[origin] & SLIM else voice_at(origin)
                events.append(v)
                row_of[v.id.raw] = origin
                continue
            said = sorted([(voice_at(r), r) for r in map(ids.__getitem__, raws)], key=_seq_of)
            for v, r in said:  # each lineage in seq order: what a correction corrects first
                events.append(v)
                row_of[v.id.raw] = r
        verdicts = [rows.verdict(r, raw) if flags[r] & SLIM else verdict(nodes[ids.id(r)])
                    for raw, e in row_of.items() for r in rows.verdicts_of(e)]
        codes, changed, decided, paid = self._codes, self._buckets.changed, self._decided, self._paid
        for c in contributions(events, verdicts, self.rules, self._claims, self._members_alike):
            raw = c.id.raw
            if c.event.fulfills is not None:
                paid[raw] = c
            row = row_of[raw]
            decided.put(row, c, bool(flags[row] & SLIM))
            codes[row] = CODES[c.status]
            changed(raw)

    def _voice_at(self, i: int, raw: bytes | None = None) -> Voice:
        if self._rows.flags[i] & SLIM:
            return self._rows.voice(i)
        return voice(self._nodes[self._ids.id(i) if raw is None else raw])

    def _row_made(self, raw: bytes, i: int, status: str, ts: int) -> None:
        """The columns of a new entry's row `i` (`ts`: its own)."""
        self._codes.append(CODES[status])
        self._rows.ts.append(ts)  # the other columns grow at the end of the arrival (`Rows.grow`)
        self._buckets.add(raw, i)

    def _set(self, raw: bytes, status: str) -> None:
        """Set a held entry's status."""
        self._codes[self._ids[raw]] = CODES[status]
        self._buckets.changed(raw)

    def _status(self, raw: bytes) -> str:
        return STATUSES[self._codes[self._ids[raw]]]

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
        order, decision = self._decided.order(self._rows)
        codes = bytes(self._codes)
        state = LedgerState(
            ledger=self.ledger,
            rules=self._book.rules(governed[4]),
            members=tuple(members),
            left=tuple(sorted(self._gone)),
            contributions=ContributionView(self._rows, order, decision, self._decided, codes, self.rules, self._claims),
            invalid=tuple(sorted(self._problems.values(), key=lambda p: p.id.raw)),
            waiting=tuple(sorted((n.entry.id for n in self._pending.values()), key=lambda c: c.raw)),
            quarantined=tuple(sorted(self._quarantined, key=lambda c: c.raw)),
            status=StatusView(self._ids, codes),
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
        return digest_of(state, self._buckets.digests(self._ids, self._codes))
