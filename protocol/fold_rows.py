"""The rows of a ledger fold (protocol/fold.py): the applied entries that later rules read little of, kept as
columns (`Rows`) and built again as the rules read them when asked for (`RowNode`, through `Nodes`)."""

from __future__ import annotations

from array import array
from typing import Any, Final, TypeVar

from .cid import CID
from .contributions import Verdict
from .entry import Entry, Header
from .fold_events import Events, number_of
from .fold_ids import Ids
from .references import NO_REFERENCES
from .rules import Rules
from .state import Prepared, Voice
from .valueflows import Endorsement, Event

_T = TypeVar("_T")
SLIM, _LEFT, _KEY_OK, _MAIN, _INCEPTED, _VERDICT, _ACCEPT, _PREV = 1, 2, 4, 8, 16, 32, 64, 128  # a row's flags
_FROZEN_KEPT: Final = 64  # sets kept as frozensets at once (`Rows.frozen`): those of the rows read lately
_NONE: Final = -1  # `Rows.rec` of a row that is neither an event nor an endorsement
_BIG_SEQ: Final = 0xFFFF_FFFF  # `Rows.seqs` of a seq that is not under it: the seq is in `big_seqs`

def held_cid(raw: bytes) -> CID:
    """The CID of an id the fold holds: it was a CID's, checked when that was made (CID() checks it again)."""
    cid: CID = _new(CID)
    _SET_RAW(cid, raw)
    return cid


_new: Final = object.__new__
_SET_RAW: Final = vars(CID)["raw"].__set__


class Rows:
    """Applied entries that later rules read little of (valid events and endorsements, ignored entries) as
    columns, one row per fold index, instead of a `Prepared` with its entry and header (~450 B each): what the
    rules read of them (state.py apply_node, contributions_of) is built again when asked for (`node`). Sets,
    rules, keys and kinds that many entries share are kept once and named by number; a valid event is numbers too
    (protocol/fold_events.py), built again when read (`event`)."""

    def __init__(self, ledger: CID, ids: Ids) -> None:
        self.ledger, self.ids = ledger, ids  # the fold's own: a row's id, an id's row
        self.ts = array("q")  # every row's ts (the canonical order's key)
        #: every row's seq, under 2**32 - 1 (a seq may be up to 2**64: those are in `big_seqs`, by row)
        self.seqs = array("I")
        self.big_seqs: dict[int, int] = {}
        self.flags = bytearray()  # its prev (`_PREV`) is its first dependency
        self.author = array("i")
        #: a row's kind, member sets (known, gone, closings) and rules, by the number of that context in `contexts`:
        #: entries alike in all five are most (a column each took 20 B per entry)
        self.context = array("i")
        self.contexts: list[tuple[int, int, int, int, int]] = []
        self._context_numbers: dict[tuple[int, int, int, int, int], int] = {}
        self.dep_at, self.dep_n, self.deps = array("i"), bytearray(), array("i")  # row -> its deps' rows
        #: a row's event's number (>= 0: in `events`), or its endorsement's (-2 - n: n's in
        #: `verdicts`), or _NONE. A valid event's latest valid endorsement and each such endorsement's previous one
        #: make its list of endorsements (a list each took ~50 B per entry); an endorsement kept as columns
        #: (`_VERDICT`) has its member's row in `verdicts` too (its event is its last dependency, its verdict a flag).
        self.rec = array("i")
        self.events = Events()
        self.verdicts = array("i")  # an endorsement's member's row and the row of the one before it, by its number
        self.notes: dict[int, str] = {}  # the note of each endorsement kept as columns that has one
        self.links: dict[bytes, CID] = {}  # the ids records name as `member`, each kept once
        self.shared: dict[Any, Any] = {}  # values records kept as objects share (`_share`), each kept once
        self.objects: dict[int, Endorsement] = {}  # the records of the rows not kept as columns (rare)
        #: the events of this arrival's rows, as the fold's checks read them (its latest ones, those built again)
        self.built: dict[int, Event] = {}
        self.keys: list[bytes] = []
        self.agents: list[str] = []
        self.kinds: list[str] = []
        #: the member (and closing) sets rows name, as tuples: a frozenset of 90 members takes ~4.5 KB, its tuple
        #: 0.8 (a ledger's rows name hundreds of them); made frozensets again as rows are read (`frozen`)
        self.sets: list[tuple[Any, ...]] = []
        self._set_hashes: dict[int, list[int]] = {}  # a set's hash -> the numbers of the kept sets with that hash
        self.frozen_sets: list[frozenset[Any] | None] = []  # number -> its frozenset, for the sets read lately
        self._frozen_ids: dict[int, tuple[int, frozenset[Any]]] = {}  # id of one of those -> (its number, it)
        self.rule_sets: list[Rules] = []
        self._numbers: tuple[dict[Any, int], ...] = ({}, {})  # key, kind -> its number in its list

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (node/store/snapshots.py) with its columns as bytes."""
        state = {name: value for name, value in vars(self).items() if not isinstance(value, array)}
        state["frozen_sets"], state["_frozen_ids"] = [None] * len(self.sets), {}  # by object id: this process's
        state["built"] = {}
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
            for column in (self.seqs, self.author, self.context, self.dep_at):
                column.frombytes(bytes(n * column.itemsize))
            self.rec.frombytes(b"\xff" * (n * self.rec.itemsize))  # _NONE
            self.dep_n += bytes(n)

    def _rules_number(self, rules: Rules) -> int:
        for i in range(len(self.rule_sets) - 1, -1, -1):  # a handful at most: one per amendment in effect
            if self.rule_sets[i] is rules:
                return i
        self.rule_sets.append(rules)
        return len(self.rule_sets) - 1

    def _set_number(self, s: frozenset[Any]) -> int:
        """The number of a set among `sets`, kept there if new."""
        h = hash(s)
        alike = self._set_hashes.setdefault(h, [])
        for n in alike:
            kept = self.sets[n]
            if len(kept) == len(s) and s.issuperset(kept):
                break
        else:
            n = len(self.sets)
            self.sets.append(tuple(s))
            self.frozen_sets.append(None)
            alike.append(n)
        self._remember(n, s)
        return n

    def _remember(self, n: int, s: frozenset[Any]) -> None:
        frozen_ids, frozen_sets = self._frozen_ids, self.frozen_sets
        if len(frozen_ids) >= _FROZEN_KEPT:
            for kept, _ in frozen_ids.values():
                frozen_sets[kept] = None
            frozen_ids.clear()
        if frozen_sets[n] is None:
            frozen_sets[n] = s
        frozen_ids[id(s)] = (n, s)  # `s` kept with its id: the id is not another object's meanwhile

    def frozen(self, n: int) -> frozenset[Any]:
        """Set number `n` as the rules read it (RowNode reads `frozen_sets` first)."""
        s = self.frozen_sets[n]
        if s is None:
            s = frozenset(self.sets[n])
            self._remember(n, s)
        return s

    def keep(self, i: int, node: Prepared) -> bool:
        """Keep an applied entry as row `i` if later rules read only what a row holds of it."""
        record, entry = node.record, node.entry
        if (node.error is not None or not isinstance(record, Event | Endorsement | None) or node.complete
                or node.erased is not None or entry.id.raw == self.ledger.raw or len(node.deps) > 255
                or node.rules is None):
            return False
        h, index = entry.header, self.ids
        dep_rows = node.dep_rows  # looked up as it arrived (LedgerFold.add)
        if dep_rows is None:
            dep_rows = [index[d.raw] for d in node.deps]
        seq = h.seq
        if seq >= _BIG_SEQ:
            self.big_seqs[i] = seq
            seq = _BIG_SEQ
        self.seqs[i] = seq
        keys, kinds = self._numbers[0], self._numbers[1]  # looked up here, the numbers most entries find
        n = keys.get(h.author)
        self.author[i] = n if n is not None else number_of(self._numbers[0], self.keys, h.author)
        if len(self.agents) < len(self.keys):
            self.agents.append(node.agent)
        n = kinds.get(h.kind)
        kind = n if n is not None else number_of(self._numbers[1], self.kinds, h.kind)
        frozen_ids = self._frozen_ids
        found = frozen_ids.get(id(node.known))  # most are a set read from a row lately, or one of theirs
        known = found[0] if found is not None and found[1] is node.known else self._set_number(node.known)
        found = frozen_ids.get(id(node.gone))
        gone = found[0] if found is not None and found[1] is node.gone else self._set_number(node.gone)
        found = frozen_ids.get(id(node.closings))
        closings = found[0] if found is not None and found[1] is node.closings else self._set_number(node.closings)
        rule_sets = self.rule_sets
        rules = len(rule_sets) - 1 if rule_sets and rule_sets[-1] is node.rules else self._rules_number(node.rules)
        context = (kind, known, gone, closings, rules)
        n = self._context_numbers.get(context)
        if n is None:
            n = self._context_numbers[context] = len(self.contexts)
            self.contexts.append(context)
        self.context[i] = n
        deps = self.deps
        self.dep_at[i] = len(deps)
        self.dep_n[i] = len(node.deps)
        deps.extend(dep_rows)
        flags = SLIM | _LEFT * node.left_chain | _KEY_OK * node.key_ok | _MAIN * node.main | _INCEPTED * node.incepted
        if h.prev is not None:
            flags |= _PREV  # its first dependency (prepare)
        if isinstance(record, Event):  # `keep_event`, inline: most rows
            self.built[i] = record
            cid = record.member
            kept = self.links.get(cid.raw)
            self.rec[i] = self.events.add(record, cid if kept is None else kept)
            if kept is None:
                self.links[cid.raw] = cid
        elif isinstance(record, Endorsement):
            if node.deps[-1].raw == record.event.raw:  # what `record` reads
                self._link(record.member)
                member = record.member.raw  # named just before its event, most often (prepare)
                n = -2 - self.rec[i]  # numbered when it was counted (`add_verdict`)
                assert n >= 0
                self.verdicts[2 * n] = dep_rows[-2] if len(dep_rows) > 1 and node.deps[-2].raw == member \
                    else index[member]
                if record.note:
                    self.notes[i] = self._share(record.note)
                flags |= _VERDICT | _ACCEPT * record.accept
            else:
                self.objects[i] = self._slim(record)
        self.flags[i] = flags
        return True

    def keep_event(self, i: int, record: Event) -> None:
        """Row `i`'s event as numbers (`events`); the event itself is kept for this arrival's reads (`built`)."""
        self.built[i] = record
        self.rec[i] = self.events.add(record, self._link(record.member))

    def event(self, i: int) -> Event:
        """Row `i`'s event (kept as columns: `keep_event`), built again."""
        return self.events.event(self.rec[i])

    def _fold_event(self, i: int) -> Event:
        """Row `i`'s event as the fold's checks read it: built once per arrival (an endorsement's checks read its
        event, then its contribution is decided again)."""
        event = self.built.get(i)
        if event is None:
            event = self.built[i] = self.event(i)
        return event

    def seq(self, i: int) -> int:
        s = self.seqs[i]
        return s if s != _BIG_SEQ else self.big_seqs[i]

    def record(self, i: int) -> Event | Endorsement | None:
        """Row `i`'s record, as the fold's checks read it (an endorsement kept as columns is built again: ~100 B
        each otherwise)."""
        flags, r = self.flags[i], self.rec[i]
        if r >= 0:
            built = self.built.get(i)
            if built is None:
                built = self.built[i] = self.events.event(r)
            return built
        if not flags & _VERDICT:
            return self.objects.get(i)
        ids = self.ids
        event = self.deps[self.dep_at[i] + self.dep_n[i] - 1]
        return Endorsement(held_cid(ids.id(event)), bool(flags & _ACCEPT), self.notes.get(i, ""),
                           self.links[ids.id(self.verdicts[2 * (-2 - r)])])

    def add_verdict(self, event: int, i: int) -> None:
        """Row `i`, a valid endorsement, is `event`'s latest (either may be a row or an entry kept as an object)."""
        e = self.rec[event]
        if e < 0:  # an event kept as an object: numbered for its endorsements only
            e = self.rec[event] = self.events.add_blank()
        self.rec[i] = -2 - len(self.verdicts) // 2
        self.verdicts.extend((0, self.events.link(e, i)))

    def verdicts_of(self, event: int) -> list[int]:
        """The rows of an event's valid endorsements, in the order they were applied."""
        found: list[int] = []
        e = self.rec[event]
        if e < 0:
            return found
        rec, verdicts = self.rec, self.verdicts
        i = self.events.latest(e)
        while i:
            found.append(i)
            i = verdicts[2 * (-2 - rec[i]) + 1]
        found.reverse()
        return found

    def _slim(self, record: Endorsement) -> Endorsement:
        """The record with the ids it names kept once: each decoded payload had its own copy of them."""
        return Endorsement(record.event, record.accept, self._share(record.note), self._link(record.member))

    def _share(self, value: _T) -> _T:
        """`value`, or an equal one kept before (strings: equal ones are alike, so sharing one changes nothing a
        reader sees)."""
        if value is None:
            return value
        return self.shared.setdefault(value, value)  # type: ignore[no-any-return]

    def _link(self, cid: CID) -> CID:
        kept = self.links.get(cid.raw)
        if kept is None:
            kept = self.links[cid.raw] = cid
        return kept

    def dep_rows(self, i: int) -> array[int]:
        return self.deps[self.dep_at[i] : self.dep_at[i] + self.dep_n[i]]

    def node(self, raw: bytes) -> Prepared:
        """The entry of a row as the rules read it (KeyError: not a row)."""
        i = self.ids[raw]
        if not self.flags[i] & SLIM:
            raise KeyError(raw)
        return RowNode(self, i)

    def verdict(self, i: int, event: bytes) -> Verdict:
        """What the contributions read of row `i`, an endorsement of `event` (its id's bytes: the caller's, one
        object hashed once) (its `latest` is its seq: a fold's `pos` is 0), from its columns: no Endorsement built
        again."""
        flags, seq = self.flags[i], self.seqs[i]
        if seq == _BIG_SEQ:
            seq = self.big_seqs[i]
        if not flags & _VERDICT:
            record = self.objects[i]
            return self.agents[self.author[i]], seq, event, record.accept, record.note
        return self.agents[self.author[i]], seq, event, bool(flags & _ACCEPT), self.notes.get(i, "")

    def voice(self, i: int) -> Voice:
        """What the contributions read of row `i`, an event (its `latest` is its seq: a fold's `pos` is 0)."""
        seq = self.seqs[i]
        if seq == _BIG_SEQ:
            seq = self.big_seqs[i]
        return Voice(held_cid(self.ids.id(i)), self.agents[self.author[i]], seq, self.ts[i], seq,
                     self._fold_event(i), self.rules_of(i))

    def rules_of(self, i: int) -> Rules:
        """The rules in effect at row `i`."""
        return self.rule_sets[self.contexts[self.context[i]][4]]

    def entry(self, i: int) -> Entry:
        """Row `i`'s entry as the rules read it: its header without payload id, size or signature."""
        ids, a = self.ids, self.author[i]
        cid = held_cid(ids.id(i))
        prev = held_cid(ids.id(self.deps[self.dep_at[i]])) if self.flags[i] & _PREV else None
        header = Header(self.keys[a], self.ledger, self.seq(i), prev, self.ts[i],
                        self.kinds[self.contexts[self.context[i]][0]], cid, 0, b"")
        return Entry(cid, header, b"", None, None)


class RowNode(Prepared):
    """A row built again as the rules read it. Most reads are of its membership, flags and record, so its
    entry is built only when read; what every row has alike is a class attribute, not set per node. Its
    `deps` are left out: only the entry being applied and a ledger's key events and erasures (folded whole:
    `LedgerFold.keyed`) read them."""

    __slots__ = ("_built", "_i", "_rows")
    _built: Entry | None
    # Alike for every row (`Rows.keep` keeps no other): read here, never set on a built row.
    deps = ()
    error = None
    complete = False
    payout = None
    reach = None
    refs = NO_REFERENCES
    key_link = None
    erased = None
    pos = 0

    def __init__(self, rows: Rows, i: int) -> None:  # Prepared.__init__ is not called: it would set them all
        self._rows, self._i, self._built = rows, i, None
        flags, a = rows.flags[i], rows.author[i]
        _, k, g, c, r = rows.contexts[rows.context[i]]
        self.agent, self.rules = rows.agents[a], rows.rule_sets[r]
        sets = rows.frozen_sets
        known, gone, closings = sets[k], sets[g], sets[c]
        self.known = rows.frozen(k) if known is None else known
        self.gone = rows.frozen(g) if gone is None else gone
        self.closings = rows.frozen(c) if closings is None else closings
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


class Nodes(dict[bytes, Prepared]):
    """The applied entries: those kept as objects, and the rows (`Rows`) built again when asked for, kept
    here until `drop_built` (one entry's checks read each of its dependencies about three times)."""

    __slots__ = ("built", "rows")

    def __init__(self, rows: Rows) -> None:
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
