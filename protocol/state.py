"""A ledger's state: a pure function of the SET of its entries.

Entries are taken in one canonical order: a topological order of their
dependencies (the previous entry of their chain and every entry their payload
names), ties broken by (ts, id). An entry whose dependencies have not all
arrived waits, and so does everything that depends on it; it applies when
they arrive. An entry's validity depends only on its own chain and on what it
names (through which it knows the members in its causal past), so an entry
that was valid never becomes invalid when others arrive. The digest
summarizes the state: two nodes holding the same set compute the same digest.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from itertools import pairwise, repeat
from typing import Any, Final, NamedTuple

from . import dagcbor
from .cid import CID
from .distribution import (
    DISTRIBUTION_KIND,
    DistributionRecord,
    Payout,
    RecordedDistribution,
    check_lines,
    conflicting,
    distribute,
    parse_distribution,
)
from .entry import GENESIS_KIND, Entry
from .erasure import ERASE_KIND, Erase, erasable, parse_erase
from .errors import InvalidData
from .governance import (
    CLOSE_KIND,
    MOTION_KIND,
    VOTE_KIND,
    Ballot,
    Closing,
    Motion,
    MotionState,
    RulesInEffect,
    check_ballot,
    check_closer,
    count,
    merge,
    motion_states,
    parse_ballot,
    parse_closing,
    parse_motion,
    passed,
    rules_heads,
)
from .identity import did_from_public_key, public_key_from_did
from .keys import (
    KEY_KINDS,
    MAX_KEY_ROUNDS,
    REVOKED,
    ROTATED,
    DeviceState,
    IdentityKeys,
    Incept,
    KeyEvent,
    Recover,
    Revoke,
    Rotate,
    claimed_agents,
    key_event_deps,
    next_digest,
    parse_key_event,
    take_key_link,
)
from .keys import Device as DeviceGrant
from .pledges import (
    PLEDGE_KIND,
    Payment,
    Pledge,
    PledgeState,
    check_payment,
    check_pledge,
    parse_pledge,
    payment_day,
)
from .references import NO_REFERENCES, References, split
from .rules import Rules, exact
from .valueflows import (
    ABOUT_KIND,
    ADMIT_KIND,
    ENDORSE_KIND,
    EVENT_KIND,
    LEAVE_KIND,
    About,
    Admission,
    Endorsement,
    Event,
    Leave,
    claim_value,
    needs_membership,
    parse_about,
    parse_admission,
    parse_endorsement,
    parse_event,
    parse_leave,
)

#: 2: the digest's entries are 256 bucket digests (SPEC.md §16.7), so a node updates it after one new entry
#: by hashing one bucket again, not every entry
STATE_VERSION: Final = 2
DIGEST_BUCKETS: Final = 256  # an entry's bucket is the last byte of its binary CID (of its sha2-256 digest)
FINAL, PENDING, REJECTED, CORRECTED = "final", "pending", "rejected", "corrected"
VALID, INVALID, WAITING, QUARANTINED, IGNORED = "valid", "invalid", "waiting", "quarantined", "ignored"
CONFLICTING = "conflicting"  # a valid distribution that counts nothing (SPEC.md §17.5; version 2 rules)
ERASED = "erased"  # its payload was erased by a valid ledger.erase (SPEC.md §20): it counts for nothing
_EMPTY: Final[frozenset[str]] = frozenset()
_Governed = Motion | Ballot | Closing | Pledge
_NO_CLOSINGS: Final[frozenset[bytes]] = frozenset()
_NO_CLAIM: Final = Decimal(0)  # one object for every contribution that claims nothing


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


@dataclass(frozen=True, slots=True)
class Problem:
    """An entry kept as evidence that does not count: who wrote it and what rule it breaks."""

    id: CID
    author: str
    kind: str
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class MemberTotals:
    quantities: dict[str, dict[str, Decimal]]  # action -> unit -> quantity (final contributions)
    claim: Decimal


@dataclass(frozen=True, slots=True)
class Erased:
    id: CID
    agent: str
    kind: str
    seq: int
    ts: int
    by: CID  # the ledger.erase entry


@dataclass(frozen=True, slots=True)
class LedgerState:
    ledger: CID
    rules: Rules
    members: tuple[str, ...]  # admitted and not left, sorted
    left: tuple[str, ...]
    contributions: tuple[Contribution, ...]  # by author then seq
    invalid: tuple[Problem, ...]
    waiting: tuple[CID, ...]  # dependencies not arrived yet
    quarantined: tuple[CID, ...]  # after their author's fork point
    status: Mapping[bytes, str] = field(repr=False)  # entry id (raw) -> status
    #: member -> the entry a new entry of theirs names as `member` (the genesis, for founders)
    admissions: Mapping[str, CID] = field(default_factory=dict, repr=False)
    #: agent not yet a member -> the valid sponsorships of them so far (what a new one names in `with`)
    sponsorships: Mapping[str, tuple[CID, ...]] = field(default_factory=dict, repr=False)
    digest: bytes = b""
    #: valid ledger.distribution entries, in the canonical order, with what each paid (SPEC.md §17)
    distributions: tuple[RecordedDistribution, ...] = field(default=(), repr=False)
    #: valid distributions that count nothing: each paid a claim an earlier one it did not count paid (§17.5)
    conflicting: tuple[RecordedDistribution, ...] = field(default=(), repr=False)
    #: the latest applied entry of every chain, sorted by id: what a new distribution names as `counted`
    heads: tuple[CID, ...] = field(default=(), repr=False)
    #: governance (SPEC.md §18): motions in canonical order, pledges, the closings whose amendments made
    #: `rules` (canonical order), and what a new entry names in `rules` to be checked under them
    motions: tuple[MotionState, ...] = field(default=(), repr=False)
    pledges: tuple[PledgeState, ...] = field(default=(), repr=False)
    amendments: tuple[CID, ...] = field(default=(), repr=False)
    rules_heads: tuple[CID, ...] = field(default=(), repr=False)
    names: Mapping[str, str] = field(default_factory=dict, repr=False)  # did:key -> the name they gave (§16.1)
    #: identities with key events (SPEC.md §19): their main key, devices, what a rotation names as prior
    identities: Mapping[str, IdentityKeys] = field(default_factory=dict, repr=False)
    #: (identity, new key did) -> the valid key.recover approvals of it: what the next approval names in `with`
    recoveries: Mapping[tuple[str, str], tuple[CID, ...]] = field(default_factory=dict, repr=False)
    #: entries whose payload a valid ledger.erase erased (SPEC.md §20), in canonical order
    erased: tuple[Erased, ...] = field(default=(), repr=False)

    def agent_of(self, key: str) -> str:
        """The identity a key (did:key) writes as here: an identity's current key or device, or the next key it
        committed to (which may write its rotation, §19.8), else the key itself."""
        digest = next_digest(public_key_from_did(key)) if self.identities else b""
        for ident in self.identities.values():
            if key in ident.writers() or ident.next == digest:
                return ident.identity
        return key

    def totals(self) -> dict[str, MemberTotals]:
        """Per provider (did:key): quantities by action and unit, and claim value, of final contributions."""
        quantities: dict[str, dict[str, dict[str, Decimal]]] = defaultdict(lambda: defaultdict(dict))
        claims: dict[str, Decimal] = defaultdict(Decimal)
        with exact():  # sums of up to 36-digit quantities: Python's default 28 digits would round them
            for c in self.contributions:
                if c.status != FINAL or not c.event.provider.startswith("did:"):
                    continue
                by_unit = quantities[c.event.provider][c.event.action]
                by_unit[c.event.quantity.unit] = by_unit.get(c.event.quantity.unit, Decimal(0)) + c.event.quantity.value
                claims[c.event.provider] += c.claim
        return {
            who: MemberTotals({a: dict(u) for a, u in quantities[who].items()}, claims[who])
            for who in sorted(set(quantities) | set(claims))
        }

    def contribution(self, entry_id: CID) -> Contribution | None:
        return next((c for c in self.contributions if c.id == entry_id), None)


@dataclass(slots=True)
class Prepared:
    entry: Entry
    record: Event | Endorsement | Admission | Leave | About | DistributionRecord | _Governed | KeyEvent | Erase | None \
        = None
    agent: str = ""  # the identity the entry's key writes as (SPEC.md §19); its author's did:key by default
    deps: tuple[CID, ...] = ()
    error: InvalidData | None = None
    known: frozenset[str] = _EMPTY  # members admitted in this entry's causal past (and itself)
    gone: frozenset[str] = _EMPTY  # members who left in its causal past
    left_chain: bool = False  # its author left at or before this entry in their own chain
    complete: bool = False  # an admission that completed at this entry
    payout: Payout | None = None  # a valid distribution's recomputed payout
    reach: Mapping[str, int] | None = None  # a distribution's counted chains: author -> seq of the named head
    rules: Rules | None = None  # the rules in effect at this entry (genesis rules + amendments in its past)
    closings: frozenset[bytes] = _NO_CLOSINGS  # valid gov.close entries in its causal past (and itself)
    refs: References = NO_REFERENCES  # its `rules` and `cites` links (protocol/references.py)
    key_link: CID | None = None  # what authorizes its key for `agent`, on a chain's first entry (§19)
    key_ok: bool = True  # its key may write as `agent` here
    main: bool = False  # its key is its identity's inception, rotated-in or recovered key (not a device)
    incepted: bool = False  # its chain holds a valid key.incept or key.rotate at or before it
    erased: CID | None = None  # the valid ledger.erase that erased its payload (SPEC.md §20)
    pos: int = 0  # its place in the canonical order: the later of two entries of one identity is the latest


def _union(a: frozenset[str], b: frozenset[str]) -> frozenset[str]:
    # Reuse a set when it already holds the other: most entries know what their prev knew (the same set, most
    # often: no need to compare them member by member).
    if a is b or a >= b:
        return a
    if b >= a:
        return b
    return a | b


def compute_state(genesis: Entry, entries: Iterable[Entry], forks: Mapping[bytes, int] | None = None) -> LedgerState:
    """The state of the ledger founded by `genesis`, from a set of its chain-valid entries.

    `forks` maps an author's public key to the seq where their chain forked: their
    entries from there on are quarantined (kept, not counted).
    """
    if not genesis.is_genesis or genesis.body is None:
        raise InvalidData("bad_genesis", "the state starts from a ledger.genesis entry with its payload")
    entries = list(entries)
    # Rotations, revocations and recoveries cut keys off after a named entry, whatever the causal
    # past of the later ones (SPEC.md §19.6): fold again with the cut-offs the valid ones give until
    # they settle. A ledger without such events folds once.
    # Erasures (SPEC.md §20) likewise: an erased entry is applied without its payload, which changes
    # nothing its erasure's validity rests on, so one more round settles them.
    settled: Settled = ({}, {})
    for _ in range(MAX_KEY_ROUNDS):
        state, found = _fold(genesis, entries, forks, settled)
        if found == settled:
            break
        settled = found
    return state


#: What the rounds of the fold settle: the keys cut off (public key -> (last seq that counts, code)), and the
#: erased entries (id raw -> (the erasure's id, the links it keeps as the erased entry's dependencies)).
Settled = tuple[dict[bytes, tuple[int, str]], dict[bytes, tuple[CID, tuple[CID, ...]]]]


def _fold(genesis: Entry, entries: list[Entry], forks: Mapping[bytes, int] | None,
          settled: Settled) -> tuple[LedgerState, Settled]:
    cut, erased = settled
    assert genesis.body is not None
    ledger = genesis.id
    rules = Rules.from_body(genesis.body)
    founders = frozenset(rules.founders)
    forks = forks or {}
    nodes: dict[bytes, Prepared] = {}
    status: dict[bytes, str] = {}
    quarantined: list[CID] = []
    agents = claimed_agents({e.id.raw: e for e in entries if e.ledger_id == ledger})
    for entry in entries:
        if entry.ledger_id != ledger or entry.id.raw in nodes or entry.id.raw in status:
            continue
        fork_seq = forks.get(entry.header.author)
        # The genesis founds the ledger: a fork of its founder at seq 1 quarantines the rest of their chain.
        if fork_seq is not None and entry.seq >= fork_seq and entry.id != ledger:
            quarantined.append(entry.id)
            status[entry.id.raw] = QUARANTINED
            continue
        agent = agents.get(entry.header.author, entry.author)
        erasure = erased.get(entry.id.raw)
        if erasure is None:
            node = nodes[entry.id.raw] = prepare(entry, ledger, rules, agent)
        else:  # the same on every node, whether it still holds the payload or not
            node = nodes[entry.id.raw] = Prepared(entry, agent=agent, erased=erasure[0])
            node.deps = tuple(dict.fromkeys([*([entry.header.prev] if entry.header.prev else []), *erasure[1]]))
        stop = cut.get(entry.header.author)
        if stop is not None and entry.seq > stop[0] and entry.id != ledger:
            node.error = (InvalidData("key_revoked", "this device was revoked before this entry (§19)")
                          if stop[1] == REVOKED else
                          InvalidData("key_rotated", "its identity rotated away from this key before this entry (§19)"))
    nodes.setdefault(ledger.raw, prepare(genesis, ledger, rules, agents.get(genesis.header.author, genesis.author)))
    book = RulesInEffect(rules)

    order, waiting = _order(nodes)
    for raw in waiting:
        status[raw] = WAITING
    problems: list[Problem] = []
    for pos, raw in enumerate(order):
        node = nodes[raw]
        node.pos = pos
        apply_node(node, nodes, ledger, rules, founders, book)
        if node.error is not None:
            status[raw] = INVALID
            e = node.entry
            problems.append(Problem(e.id, node.agent, e.kind, node.error.code, node.error.message))
        elif node.erased is not None:
            status[raw] = ERASED
        elif node.record is None and is_ignored(node.entry):
            status[raw] = IGNORED
        else:
            status[raw] = VALID

    valid = [nodes[raw] for raw in order if status[raw] == VALID]
    members = set(founders)
    gone: set[str] = set()
    admissions: dict[str, CID] = {f: ledger for f in founders}
    sponsorships: dict[str, list[CID]] = defaultdict(list)
    for node in valid:
        if isinstance(node.record, Admission):
            agent = node.record.agent
            if node.complete:
                members.add(agent)
                # Deterministic choice among several completing admissions: the smallest id.
                if agent not in admissions or node.entry.id.raw < admissions[agent].raw:
                    admissions[agent] = node.entry.id
            else:
                sponsorships[agent].append(node.entry.id)
        elif isinstance(node.record, Leave):
            gone.add(node.agent)
    names = {}  # each identity's latest valid member.about (last in the canonical order) names them
    for node in valid:
        if isinstance(node.record, About):
            names[node.agent] = node.record.name
    identities, found = _keys(valid, nodes, agents)
    erasures: dict[bytes, tuple[CID, tuple[CID, ...]]] = {}
    for node in valid:  # the first valid erasure of an entry, in canonical order, counts
        if isinstance(node.record, Erase):
            erasures.setdefault(node.record.entry.raw, (node.entry.id, node.record.keep))
    recoveries: dict[tuple[str, str], list[CID]] = defaultdict(list)
    for node in valid:
        if isinstance(node.record, Recover):
            recoveries[node.record.identity, did_from_public_key(node.record.key)].append(node.entry.id)
    contributions = contributions_of(valid, rules, status)
    recorded = [recorded_distribution(n) for n in valid if n.payout is not None]
    clashing = conflicting(recorded) if rules.version > 1 else frozenset()
    for raw in clashing:
        status[raw] = CONFLICTING
    governed = governance_of(valid, book, contributions)
    problems.sort(key=lambda p: p.id.raw)
    state = LedgerState(
        ledger=ledger,
        rules=book.rules(governed[4]),
        members=tuple(sorted(members - gone)),
        left=tuple(sorted(gone)),
        contributions=contributions,
        invalid=tuple(problems),
        waiting=tuple(sorted((nodes[raw].entry.id for raw in waiting), key=lambda c: c.raw)),
        quarantined=tuple(sorted(quarantined, key=lambda c: c.raw)),
        status=status,
        admissions={m: admissions[m] for m in sorted(members - gone) if m in admissions},
        sponsorships={a: tuple(sorted(c, key=lambda x: x.raw)) for a, c in sorted(sponsorships.items())
                      if a not in members},
        distributions=tuple(d for d in recorded if d.id.raw not in clashing),
        conflicting=tuple(d for d in recorded if d.id.raw in clashing),
        heads=_heads(nodes, order),
        motions=governed[0],
        pledges=governed[1],
        amendments=governed[2],
        rules_heads=governed[3],
        names=dict(sorted(names.items())),
        identities=identities,
        recoveries={k: tuple(sorted(v, key=lambda c: c.raw)) for k, v in sorted(recoveries.items())},
        erased=tuple(Erased(n.entry.id, n.agent, n.entry.kind, n.entry.seq, n.entry.header.ts, n.erased)
                     for raw in order if (n := nodes[raw]).erased is not None and status[raw] == ERASED),
    )
    return _with_digest(state), (found, erasures)


def recorded_distribution(node: Prepared) -> RecordedDistribution:
    assert node.payout is not None
    e = node.entry
    return RecordedDistribution(e.id, node.agent, e.header.ts, node.payout, e.seq, node.reach or {})


def is_ignored(entry: Entry) -> bool:
    return not needs_membership(entry.kind) and entry.kind != GENESIS_KIND


def prepare(entry: Entry, ledger: CID, rules: Rules, agent: str) -> Prepared:
    """Parse the payload and list the entry's dependencies."""
    node = Prepared(entry, agent=agent)
    deps: list[CID] = []
    if entry.header.prev is not None:
        deps.append(entry.header.prev)
    kind = entry.kind
    if kind == GENESIS_KIND or not needs_membership(kind):
        node.deps = tuple(deps)
        return node
    body = entry.body or {}
    try:
        if entry.body is None:
            raise InvalidData("bad_payload", "the payload of this entry was erased")
        body, node.refs = split(body)
        deps += node.refs.rules  # amendments it was written under; `cites` are never dependencies
        body, node.key_link = take_key_link(body)
        if node.key_link is not None:
            deps.append(node.key_link)
        if kind == EVENT_KIND:
            # Its links are dependencies even when the genesis rules refuse it: amended rules may accept it.
            deps += [v for k in ("member", "corrects", "fulfills") if isinstance(v := body.get(k), CID)]
            node.record = parse_event(body, author=agent, ledger=ledger, rules=rules)
        elif kind == ENDORSE_KIND:
            endorsement = parse_endorsement(body)
            node.record = endorsement
            deps += [endorsement.member, endorsement.event]
        elif kind == ADMIT_KIND:
            admission = parse_admission(body, ledger)
            node.record = admission
            deps += [admission.member, *admission.with_]
        elif kind == LEAVE_KIND:
            leave = parse_leave(body)
            node.record = leave
            deps.append(leave.member)
        elif kind == ABOUT_KIND:
            about = parse_about(body)
            node.record = about
            deps.append(about.member)
        elif kind == DISTRIBUTION_KIND:
            distribution = parse_distribution(body, ledger=ledger)
            node.record = distribution
            deps += [distribution.member, *distribution.counted]  # it waits for every chain it counts
        elif kind in _GOVERNANCE_KINDS:
            governed = _parse_governed(kind, body, agent, ledger)
            node.record = governed
            deps += _governance_deps(governed)
        elif kind in KEY_KINDS:
            key_event = parse_key_event(kind, body)
            node.record = key_event
            deps += key_event_deps(key_event)
        elif kind == ERASE_KIND:
            erase = parse_erase(body)
            node.record = erase
            deps += [erase.member, erase.entry, *erase.keep]
        else:
            # A membership kind this version does not interpret (later issues add them):
            # it still needs its author's membership to be valid.
            member = body.get("member")
            if not isinstance(member, CID):
                raise InvalidData("not_member", f"{kind} must name the author's admission as member")
            deps.append(member)
    except InvalidData as exc:
        node.error = exc
    node.deps = tuple(dict.fromkeys(deps))
    return node


def _order(nodes: dict[bytes, Prepared]) -> tuple[list[bytes], list[bytes]]:
    """Kahn's algorithm with a (ts, id) heap; entries with missing dependencies wait."""
    waiting: set[bytes] = set()
    dependents: dict[bytes, list[bytes]] = defaultdict(list)
    missing_count: dict[bytes, int] = {}
    for raw, node in nodes.items():
        count = 0
        for dep in node.deps:
            if dep.raw not in nodes:
                waiting.add(raw)
            else:
                dependents[dep.raw].append(raw)
                count += 1
        missing_count[raw] = count
    # Everything downstream of a waiting entry waits too.
    stack = list(waiting)
    while stack:
        for child in dependents.get(stack.pop(), ()):
            if child not in waiting:
                waiting.add(child)
                stack.append(child)
    heap = [(nodes[r].entry.header.ts, r) for r, n in missing_count.items() if n == 0 and r not in waiting]
    heapq.heapify(heap)
    order: list[bytes] = []
    while heap:
        _, raw = heapq.heappop(heap)
        order.append(raw)
        for child in dependents.get(raw, ()):
            if child in waiting:
                continue
            missing_count[child] -= 1
            if missing_count[child] == 0:
                heapq.heappush(heap, (nodes[child].entry.header.ts, child))
    # A dependency cycle cannot be signed into existence (ids are hashes), but be safe.
    placed = set(order)
    waiting |= {raw for raw in nodes if raw not in placed}
    return order, sorted(waiting)


def apply_node(
    node: Prepared, nodes: dict[bytes, Prepared], ledger: CID, rules: Rules, founders: frozenset[str],
    book: RulesInEffect,
) -> None:
    entry = node.entry
    known: frozenset[str] = founders if entry.id == ledger else _EMPTY
    gone: frozenset[str] = _EMPTY
    for dep in node.deps:
        d = nodes[dep.raw]
        known = _union(known, d.known)
        gone = _union(gone, d.gone)
    prev = nodes[entry.header.prev.raw] if entry.header.prev is not None else None
    node.left_chain = prev is not None and prev.left_chain
    node.known, node.gone = known, gone
    try:
        _authorize(node, nodes, prev)
    except InvalidData as exc:
        node.error = node.error or exc
    _rules_in_effect(node, nodes, ledger, rules, book)
    if node.erased is not None or node.error is not None or (node.record is None and not needs_membership(entry.kind)):
        return
    author = node.agent
    try:
        _check_member(node, nodes, ledger, founders)
        record = node.record
        if isinstance(record, Admission):
            _admit(node, record, nodes, node.rules or rules)
        elif isinstance(record, Leave):
            node.left_chain = True
            node.gone = gone | {author}
        elif isinstance(record, Endorsement):
            target = nodes[record.event.raw]
            if not isinstance(target.record, Event) or target.error is not None:
                raise InvalidData("bad_reference", "an endorsement names a contribution (a valid vf.event)")
            if target.agent == author:
                raise InvalidData("self_endorsement", "members cannot endorse their own contributions")
        elif isinstance(record, DistributionRecord):
            node.payout, node.reach = _recompute(record, nodes, ledger, node.rules or rules)
        elif isinstance(record, Event) and record.corrects is not None:
            target = nodes[record.corrects.raw]
            if not isinstance(target.record, Event) or target.error is not None or target.agent != author:
                raise InvalidData("bad_correction", "a correction names an earlier vf.event of its own author")
        elif isinstance(record, KeyEvent):
            _key_event(node, record, nodes, node.rules or rules)
        elif isinstance(record, Erase):
            _erase(node, record, nodes)
        _govern(node, nodes, book)
    except InvalidData as exc:
        node.error = exc


def _check_member(node: Prepared, nodes: dict[bytes, Prepared], ledger: CID, founders: frozenset[str]) -> None:
    entry = node.entry
    author = node.agent
    if node.left_chain or author in node.gone:
        raise InvalidData("not_member", f"{author} left this ledger earlier in their chain")
    record = node.record
    member = getattr(record, "member", None)
    if member is None:
        member = (entry.body or {}).get("member")
    assert isinstance(member, CID)
    proof = nodes[member.raw]
    if member == ledger:
        if author not in founders:
            raise InvalidData("not_member", f"{author} is not a founder; name the admission that made you a member")
        return
    admission = proof.record
    if not isinstance(admission, Admission) or proof.error is not None or admission.agent != author:
        raise InvalidData("not_member", "member must name an admission of the author (or the genesis, for founders)")
    if not proof.complete:
        raise InvalidData("not_member", "the named admission had not enough sponsors where it was made")


def _admit(node: Prepared, record: Admission, nodes: dict[bytes, Prepared], rules: Rules) -> None:
    author = node.agent
    current = node.known - node.gone
    if record.agent in current:
        raise InvalidData("already_member", f"{record.agent} is already a member")
    sponsors = {author}
    for cid in record.with_:
        other = nodes[cid.raw]
        if isinstance(other.record, Admission) and other.error is None and other.record.agent == record.agent:
            sponsors.add(other.agent)
    threshold = min(rules.validation.accept, len(current))
    if len(sponsors & current) >= threshold:
        node.complete = True
        node.known = node.known | {record.agent}


# ---- keys (SPEC.md §19; the payloads are in protocol/keys.py) ----


def _latest(node: Prepared) -> int:
    """Orders one identity's entries, latest last: by canonical position (§19.3), then seq. Within one
    chain both agree; protocol/fold.py leaves `pos` at 0 (it folds only ledgers of one key per
    identity), so there it is the seq."""
    return node.pos << 53 | node.entry.seq


def _authorize(node: Prepared, nodes: dict[bytes, Prepared], prev: Prepared | None) -> None:
    """May the entry's key write as its agent? Decided on a chain's first entry, inherited after."""
    entry = node.entry
    if prev is not None:
        node.key_ok, node.main, node.incepted = prev.key_ok, prev.main, prev.incepted
        if node.key_link is not None:
            raise InvalidData("bad_key_event", "only a key's first entry in a ledger names its authorization")
        if not prev.key_ok:
            raise InvalidData("key_not_authorized", f"{entry.author} is not a key of {node.agent}")
        return
    if node.agent == entry.author or entry.kind == GENESIS_KIND:
        # An identity's inception key; or the key its rules' `creator` log proves (§19.9: claimed_agents gives the
        # genesis another agent than its author only then).
        node.main = True
        if node.key_link is not None:
            raise InvalidData("key_not_authorized", "grant names no device grant or recovery of this key")
        return
    node.key_ok = False
    if isinstance(node.record, Rotate):
        return  # a rotation authorizes its own key once its checks pass (_key_event)
    grant = nodes[node.key_link.raw] if node.key_link is not None else None
    if grant is None or grant.error is not None or getattr(grant.record, "key", None) != entry.header.author:
        raise InvalidData("key_not_authorized", "a key's first entry names the key.device or key.recover "
                          "entry that authorizes it as key")
    if isinstance(grant.record, DeviceGrant) and grant.agent == node.agent:
        node.key_ok = True
    elif isinstance(grant.record, Recover) and grant.complete and grant.record.identity == node.agent:
        node.key_ok = node.main = True
    else:
        raise InvalidData("key_not_authorized", "key names no device grant or completed recovery of this key")


def _key_event(node: Prepared, record: KeyEvent, nodes: dict[bytes, Prepared], rules: Rules) -> None:
    entry, agent = node.entry, node.agent
    if isinstance(record, Incept):
        if not node.main or node.incepted:
            raise InvalidData("bad_key_event", "an identity incepts once per ledger, from its own or recovered key")
        node.incepted = True
    elif isinstance(record, Rotate):
        if entry.header.prev is not None:
            raise InvalidData("bad_key_event", "a rotation is the first entry of the new key in this ledger")
        prior, last = nodes[record.prior.raw], nodes[record.last.raw]
        if (not isinstance(prior.record, Incept | Rotate) or prior.error is not None
                or prior.agent != record.identity):
            raise InvalidData("bad_key_event", "prior names a valid key.incept or key.rotate of the identity")
        if next_digest(entry.header.author) != prior.record.next:
            raise InvalidData("bad_key_event", "this key is not the next key the identity committed to")
        if last.entry.header.author != prior.entry.header.author or last.entry.seq < prior.entry.seq:
            raise InvalidData("bad_key_event", "last names an entry of the retiring key, at or after prior")
        node.key_ok = node.main = node.incepted = True
    elif isinstance(record, DeviceGrant):
        if record.key == entry.header.author or did_from_public_key(record.key) == agent:
            raise InvalidData("bad_key_event", "a device is another key than the identity's own")
    elif isinstance(record, Revoke):
        device = nodes[record.device.raw]
        if not isinstance(device.record, DeviceGrant) or device.error is not None or device.agent != agent:
            raise InvalidData("bad_key_event", "device names a valid key.device of the same identity")
        if record.last is not None and nodes[record.last.raw].entry.header.author != device.record.key:
            raise InvalidData("bad_key_event", "last names an entry of the revoked device, or is null")
    elif isinstance(record, Recover):
        if record.identity == agent:
            raise InvalidData("self_recovery", "a member cannot approve the recovery of their own identity")
        current = node.known - node.gone
        if record.identity not in current:
            raise InvalidData("not_member", f"{record.identity} is not a member here")
        if record.last is not None and not _of_identity(nodes[record.last.raw], record.identity):
            raise InvalidData("bad_key_event", "last names an entry of the identity to recover (or the admission "
                              "of one who wrote nothing), or is null")
        approvers = {agent}
        for cid in record.with_:
            other = nodes[cid.raw]
            if (isinstance(other.record, Recover) and other.error is None
                    and (other.record.identity, other.record.key) == (record.identity, record.key)):
                approvers.add(other.agent)
        # Never fewer approvers than the quorum: a coop too small for it cannot recover anyone.
        node.complete = len((approvers & current) - {record.identity}) >= rules.recovery


def _of_identity(node: Prepared, identity: str) -> bool:
    """An entry a recovery may name as `last`: the identity's own, or its completing admission (§19.2)."""
    admitted = isinstance(node.record, Admission) and node.record.agent == identity and node.complete
    return node.agent == identity or (admitted and node.error is None)


def _keys(valid: list[Prepared], nodes: dict[bytes, Prepared], agents: Mapping[bytes, str]
          ) -> tuple[dict[str, IdentityKeys], dict[bytes, tuple[int, str]]]:
    """Each identity's keys from its valid key events in canonical order, and the keys cut off
    (public key -> (the last seq that counts, code))."""
    idents: dict[str, IdentityKeys] = {}
    cut: dict[bytes, tuple[int, str]] = {}
    founding = next((n for n in valid if n.entry.kind == GENESIS_KIND), None)
    if founding is not None and founding.agent != founding.entry.author:  # founded by a later key (§19.9)
        idents[founding.agent] = IdentityKeys(founding.agent, founding.entry.author, None, None)

    def stop(key: bytes, seq: int, code: str) -> None:
        if key not in cut or seq < cut[key][0]:
            cut[key] = (seq, code)

    for n in valid:
        record, agent, entry = n.record, n.agent, n.entry
        if not isinstance(record, KeyEvent):
            continue
        ident = idents.get(agent) or IdentityKeys(agent, agent, None, None)
        if isinstance(record, Incept):
            ident = replace(ident, key=entry.author, event=entry.id, next=record.next)
        elif isinstance(record, Rotate):
            ident = replace(ident, key=entry.author, event=entry.id, next=record.next, recovered=None)
            stop(nodes[record.prior.raw].entry.header.author, nodes[record.last.raw].entry.seq, ROTATED)
        elif isinstance(record, DeviceGrant):
            device = DeviceState(did_from_public_key(record.key), record.name, entry.id, entry.header.ts)
            ident = replace(ident, devices=(*(d for d in ident.devices if d.key != device.key), device))
        elif isinstance(record, Revoke):
            grant = nodes[record.device.raw].record
            assert isinstance(grant, DeviceGrant)
            stop(grant.key, 0 if record.last is None else nodes[record.last.raw].entry.seq, REVOKED)
            ident = replace(ident, devices=tuple(
                replace(d, revoked=entry.id, revoked_at=entry.header.ts) if d.grant == record.device else d
                for d in ident.devices))
        elif isinstance(record, Recover):
            if not n.complete:
                continue
            agent = record.identity
            # The recovered key replaces every other key of the identity here, devices included:
            # each counts up to its last entry this recovery knew of.
            reach = _reach(n, nodes)
            for key, claimed in agents.items():
                if claimed == agent and key != record.key:
                    stop(key, reach.get(key, 0), ROTATED)
            ident = IdentityKeys(agent, did_from_public_key(record.key), None, None, recovered=entry.id)
        idents[agent] = ident
    return dict(sorted(idents.items())), cut


def _reach(node: Prepared, nodes: dict[bytes, Prepared]) -> dict[bytes, int]:
    """Per key, the highest seq of its entries in the node's causal past."""
    seen: set[bytes] = set()
    stack = [node.entry.id.raw]
    reach: dict[bytes, int] = {}
    while stack:
        raw = stack.pop()
        if raw in seen or raw not in nodes:
            continue
        seen.add(raw)
        entry = nodes[raw].entry
        reach[entry.header.author] = max(reach.get(entry.header.author, 0), entry.seq)
        stack += [d.raw for d in nodes[raw].deps]
    return reach


def _recompute(record: DistributionRecord, nodes: dict[bytes, Prepared], ledger: CID,
               rules: Rules) -> tuple[Payout, dict[str, int]]:
    """A distribution's payout from exactly what it counts: each named chain up to its named head.

    Its contributions' statuses come from the endorsements and corrections in those
    chains only, and the earlier distributions that reduce debt and once claims are
    the valid ones among them; so entries that arrive later cannot change it.
    """
    counted: list[Prepared] = []
    authors: set[bytes] = set()
    reach: dict[str, int] = {}
    for head in record.counted:
        chain: list[Prepared] = []
        node: Prepared | None = nodes[head.raw]
        assert node is not None
        if node.entry.header.author in authors:
            raise InvalidData("bad_reference", "counted names two heads of one chain")
        authors.add(node.entry.header.author)
        reach[node.entry.author] = node.entry.seq
        while node is not None:
            if node.error is None and node.record is not None:
                chain.append(node)
            prev = node.entry.header.prev
            node = None if prev is None else nodes[prev.raw]
        counted += reversed(chain)  # each chain in seq order: a correction comes after what it corrects
    final = [c for c in contributions_of(counted, rules, {}) if c.status == FINAL]
    seen = [recorded_distribution(n) for n in counted if n.payout is not None]
    clashing = conflicting(seen) if rules.version > 1 else frozenset()  # as the state it counts saw them
    earlier = [d.payout for d in seen if d.id.raw not in clashing]
    payout = distribute(rules, ledger, record.amount, record.unit, final, earlier, record.since, record.until)
    check_lines(record, payout)
    return payout, reach


def _heads(nodes: dict[bytes, Prepared], order: list[bytes]) -> tuple[CID, ...]:
    latest: dict[bytes, Entry] = {}
    for raw in order:
        entry = nodes[raw].entry
        head = latest.get(entry.header.author)
        if head is None or entry.seq > head.seq:
            latest[entry.header.author] = entry
    return tuple(sorted((e.id for e in latest.values()), key=lambda c: c.raw))


class Voice(NamedTuple):
    """What the contributions read of a valid event or endorsement (`contributions`): a fold (protocol/fold.py)
    makes these from its columns, without the entry."""

    id: CID
    agent: str
    seq: int
    ts: int
    latest: int  # `_latest`: orders one identity's entries
    record: Event | Endorsement
    rules: Rules | None  # the rules in effect at it


def voice(n: Prepared) -> Voice:
    assert isinstance(n.record, Event | Endorsement)
    e = n.entry
    return Voice(e.id, n.agent, e.header.seq, e.header.ts, _latest(n), n.record, n.rules)


def contributions_of(valid: list[Prepared], rules: Rules, status: dict[bytes, str]) -> tuple[Contribution, ...]:
    """The contributions of the valid events among `valid` (in a topological order); each one's status put in
    `status` too."""
    result = contributions([voice(n) for n in valid if isinstance(n.record, Event | Endorsement)], rules)
    for c in result:
        status[c.id.raw] = c.status
    return result


def contributions(voices: list[Voice], rules: Rules,
                  claims: dict[tuple[Decimal, Decimal], Decimal] | None = None,
                  names: dict[tuple[str, ...], tuple[str, ...]] | None = None) -> tuple[Contribution, ...]:
    """The contributions of valid events from them and the valid endorsements (`voices`: an event after the
    event it corrects), by author then seq. `claims`: the claims made so far, by (quantity, rate); `names`: the
    lists of members made so far (protocol/fold.py keeps one of each alike, not one per contribution)."""
    events = {v.id.raw: v for v in voices if isinstance(v.record, Event)}
    # A correction belongs to the lineage of the original it corrects, directly or through other
    # corrections: all in one author's chain, so seq orders them. An event's target (a valid event)
    # comes before it.
    origin: dict[bytes, bytes] = {}
    lineages: dict[bytes, list[Voice]] = defaultdict(list)
    for raw, v in events.items():
        corrects = v.record.corrects  # type: ignore[union-attr]  # an Event: `events` holds no other
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
    latest: dict[tuple[str, bytes], tuple[int, Endorsement]] = {}
    for v in voices:
        if isinstance(v.record, Endorsement):
            key = (v.agent, v.record.event.raw)
            if key not in latest or v.latest > latest[key][0]:
                latest[key] = (v.latest, v.record)
    accepts: dict[bytes, list[str]] = defaultdict(list)
    rejects: dict[bytes, list[str]] = defaultdict(list)
    notes: dict[bytes, list[tuple[str, str]]] = defaultdict(list)
    for (who, target), (_, given) in latest.items():
        (accepts if given.accept else rejects)[target].append(who)
        if not given.accept and given.note:
            notes[target].append((who, given.note))
    result = []
    for raw, v in events.items():
        record = v.record
        assert isinstance(record, Event)
        yes, no = tuple(sorted(accepts[raw])), tuple(sorted(rejects[raw]))
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
        result.append(Contribution(
            id=v.id, author=v.agent, seq=v.seq, ts=v.ts, event=record,
            claim=_claim(record, in_effect, claims), status=verdict, accepts=yes, rejects=no,
            corrected_by=corrected_by.get(raw), origin=None if origin[raw] == raw else events[origin[raw]].id,
            reject_notes=tuple(sorted(notes[raw])),
        ))
    result.sort(key=lambda c: (c.author, c.seq, c.id.raw))
    return tuple(result)


def _voice_latest(v: Voice) -> int:
    return v.latest


def _claim(event: Event, rules: Rules,
           claims: dict[tuple[Decimal, Decimal], Decimal] | None = None) -> Decimal:
    """The claim value (§16.6); a pledge payment earns none unless the rules say `pledge_claims` (§18.5).
    `claims` (see `contributions`): a quantity and a rate are canonical decimals (rules.parse_decimal parses
    both), so equal ones are written alike and so is their product."""
    if event.fulfills is not None and not rules.pledge_claims:
        return _NO_CLAIM
    if claims is None:
        return claim_value(event, rules)
    rate = rules.rate(event.action, event.classification, event.quantity.unit)
    if rate is None:
        return _NO_CLAIM
    key = (event.quantity.value, rate)
    claim = claims.get(key)
    if claim is None:
        claim = claims[key] = claim_value(event, rules)
    return claim


def _erase(node: Prepared, record: Erase, nodes: dict[bytes, Prepared]) -> None:
    """A ledger.erase (SPEC.md §20): an earlier entry of its own chain, of an erasable kind, that no valid
    distribution in its causal past counted (that distribution would no longer recompute)."""
    target = nodes[record.entry.raw].entry
    why = erasable(target, node.entry.ledger_id, node.entry.header.author, node.entry.seq)
    if why is not None:
        raise InvalidData("not_erasable", why)
    seen: set[bytes] = set()
    stack = list(node.deps)
    while stack:
        raw = stack.pop().raw
        if raw in seen:
            continue
        seen.add(raw)
        past = nodes[raw]
        if past.payout is not None and past.error is None and (past.reach or {}).get(target.author, 0) >= target.seq:
            raise InvalidData("not_erasable", f"distribution {past.entry.id} counted it")
        stack.extend(past.deps)


def _with_digest(state: LedgerState) -> LedgerState:
    return replace(state, digest=state_digest(state))


def state_digest(state: LedgerState, *, in_order: bool = False) -> bytes:
    """The digest of a state from its fields (SPEC.md §16.7). `in_order`: its status map is in id order
    already (else it is sorted here)."""
    buckets: dict[int, list[bytes]] = {}  # only those holding ids: most of a small ledger's 256 are empty
    for raw in state.status if in_order else sorted(state.status):
        ids = buckets.get(raw[-1])
        if ids is None:
            buckets[raw[-1]] = [raw]
        else:
            ids.append(raw)
    get = state.status.__getitem__
    digests = [EMPTY_BUCKET_DIGEST] * DIGEST_BUCKETS
    for i, ids in buckets.items():
        digests[i] = bucket_digest(ids, list(map(get, ids)))
    return digest_of(state, digests)


def digest_of(state: LedgerState, buckets: list[bytes]) -> bytes:
    """sha2-256 of the DAG-CBOR map {v, ledger, members, left, …, entries: [bucket digest × 256]}."""
    summary = digest_summary(state)
    summary["entries"] = buckets
    return hashlib.sha256(dagcbor.encode(summary)).digest()


def bucket_digest(ids: Sequence[bytes], statuses: Sequence[str]) -> bytes:
    """sha2-256 of one bucket's DAG-CBOR array [[id, status], …] (`ids` sorted bytewise)."""
    if not ids:
        return EMPTY_BUCKET_DIGEST
    digest = hashlib.sha256(dagcbor.head(4, len(ids)))
    if set(map(len, ids)) <= {36}:  # every sha2-256 CID: each id put between two prefixes, in C
        tails = {status: dagcbor.text_string(status) for status in set(statuses)}
        pairs = zip(repeat(_PAIR_36), ids, map(tails.__getitem__, statuses), strict=False)  # repeat: endless
        digest.update(b"".join(map(b"".join, pairs)))
    else:
        digest.update(b"".join(_PAIR_HEAD + dagcbor.link(CID(raw)) + dagcbor.text_string(status)
                               for raw, status in zip(ids, statuses, strict=True)))
    return digest.digest()


def bucket_digest_coded(ids: Sequence[bytes], codes: bytes, names: Sequence[str]) -> bytes:
    """`bucket_digest` of 36-byte ids whose statuses are `names[code]` for each of `codes` (a snapshot's kept status,
    node/store/snapshots.py, checked as it is read back): no status string looked up per id."""
    if not ids:
        return EMPTY_BUCKET_DIGEST
    tails = [dagcbor.text_string(name) for name in names]
    digest = hashlib.sha256(dagcbor.head(4, len(ids)))
    digest.update(b"".join(map(b"".join, zip(repeat(_PAIR_36), ids, map(tails.__getitem__, codes), strict=False))))
    return digest.digest()


_PAIR_HEAD: Final = dagcbor.head(4, 2)  # [id, status]
#: An empty bucket's digest (most of a small ledger's 256): hashed once, not once per state.
EMPTY_BUCKET_DIGEST: Final = hashlib.sha256(dagcbor.head(4, 0)).digest()
_PAIR_36: Final = _PAIR_HEAD + dagcbor.link(CID.for_block(b""))[:-36]  # a pair's bytes before a 36-byte id


def digest_summary(state: LedgerState) -> dict[str, Any]:
    """What the digest summarizes, but `entries` (its bucket digests: `state_digest`, and protocol/fold.py's cache)."""
    summary: dict[str, Any] = {
        "v": STATE_VERSION,
        "ledger": state.ledger,
        "members": list(state.members),
        "left": list(state.left),
    }
    if state.amendments:  # governance (§18): only when there is some, so other digests stay as they were
        summary["rules"] = state.rules.to_body()
    if state.motions:
        summary["motions"] = [
            [m.id, m.closing, m.winner, [m.tally.totals[o] for o in m.motion.options]] for m in state.motions
        ]
    if state.identities:  # keys (§19): only when some identity has key events
        summary["keys"] = [[i.identity, i.key, sorted(i.writers()[1:])] for i in state.identities.values()]
    if state.pledges:
        summary["pledges"] = [[p.id, [pay.id for pay in p.payments]] for p in state.pledges]
    return summary


# ---- governance and pledges (SPEC.md §18; the logic is in protocol/governance.py and protocol/pledges.py) ----

_GOVERNANCE_KINDS: Final = frozenset({MOTION_KIND, VOTE_KIND, CLOSE_KIND, PLEDGE_KIND})


def _parse_governed(kind: str, body: dict[str, Any], author: str, ledger: CID) -> _Governed:
    if kind == MOTION_KIND:
        return parse_motion(body)
    if kind == VOTE_KIND:
        return parse_ballot(body)
    if kind == CLOSE_KIND:
        return parse_closing(body)
    return parse_pledge(body, author=author, ledger=ledger)


def _governance_deps(record: _Governed) -> list[CID]:
    if isinstance(record, Ballot):
        return [record.member, record.motion]
    if isinstance(record, Closing):
        return [record.member, record.motion, *record.ballots]
    return [record.member]


def _rules_in_effect(node: Prepared, nodes: dict[bytes, Prepared], ledger: CID, genesis: Rules,
                     book: RulesInEffect) -> None:
    """The closings in the entry's causal past and the rules they give it; an event is read again
    under amended rules (a unit they added, log_for_others)."""
    closings = _NO_CLOSINGS  # one shared empty set: most entries know no closing
    for dep in node.deps:
        closings = merge(closings, nodes[dep.raw].closings)
    node.closings = closings
    node.rules = book.rules(closings)
    entry = node.entry
    if node.rules is not genesis and entry.kind == EVENT_KIND and entry.body is not None:
        try:
            body, _ = split(entry.body)
            body, _ = take_key_link(body)
            node.record, node.error = parse_event(body, author=node.agent, ledger=ledger, rules=node.rules), None
        except InvalidData as exc:
            node.record, node.error = None, exc


def _govern(node: Prepared, nodes: dict[bytes, Prepared], book: RulesInEffect) -> None:
    """Checks of motions, ballots, closings, pledges and payments against what they name."""
    for link in node.refs.rules:
        if not isinstance(nodes[link.raw].record, Closing) or nodes[link.raw].error is not None:
            raise InvalidData("bad_reference", "rules names the closing entries (gov.close) of amendments")
    record, entry = node.record, node.entry
    rules = node.rules
    assert rules is not None
    if isinstance(record, Motion) and record.amend is not None:
        record.amend.apply(rules)
    elif isinstance(record, Ballot | Closing):
        target = nodes[record.motion.raw]
        motion = target.record
        if not isinstance(motion, Motion) or target.error is not None:
            raise InvalidData("bad_reference", "motion names a motion (a valid gov.motion)")
        if book.closes(node.closings, record.motion.raw):
            raise InvalidData("motion_closed", "this motion was closed before this entry was made")
        voting = (target.rules or rules).voting
        timed = book.genesis.version > 1  # the closing time binds everyone, ballots too (SPEC.md §18.1)
        if isinstance(record, Ballot):
            check_ballot(record, motion, voting, ts=entry.header.ts, timed=timed)
            return
        check_closer(motion, target.agent, node.agent, entry.header.ts, timed=timed)
        latest: dict[str, tuple[int, Ballot]] = {}
        for link in record.ballots:
            ballot = nodes[link.raw]
            if (not isinstance(ballot.record, Ballot) or ballot.error is not None
                    or ballot.record.motion != record.motion):
                raise InvalidData("bad_reference", "ballots names valid ballots (gov.vote) of this motion")
            voter, seq = ballot.agent, _latest(ballot)
            if voter not in latest or seq > latest[voter][0]:
                latest[voter] = (seq, ballot.record)
        tally = count(motion.options, voting, [latest[v][1].scores for v in sorted(latest)],
                      totals_first=book.genesis.version > 1)
        book.add(entry.id.raw, record.motion.raw, motion.amend if passed(motion, tally) else None)
        node.closings = node.closings | {entry.id.raw}
    elif isinstance(record, Pledge):
        check_pledge(record, rules)
    elif isinstance(record, Event) and record.fulfills is not None:
        target = nodes[record.fulfills.raw]
        if not isinstance(target.record, Pledge) or target.error is not None:
            raise InvalidData("unknown_pledge", "fulfills names no pledge (vf.commitment) of this ledger")
        check_payment(target.record, action=record.action, provider=record.provider, receiver=record.receiver,
                      unit=record.quantity.unit)


def governance_of(
    valid: list[Prepared], book: RulesInEffect, contributions: tuple[Contribution, ...]
) -> tuple[tuple[MotionState, ...], tuple[PledgeState, ...], tuple[CID, ...], tuple[CID, ...], frozenset[bytes]]:
    """Motions, pledges, the applied amendments, the rules heads, and every valid closing."""
    closings = [n for n in valid if isinstance(n.record, Closing)]
    everything = frozenset(n.entry.id.raw for n in closings)
    applied = book.applied(everything)
    motions = motion_states(
        [(n.entry.id, n.agent, n.entry.header.ts, n.record, (n.rules or book.genesis).voting)
         for n in valid if isinstance(n.record, Motion)],
        # A voter's latest ballot is their last in the canonical order, from whichever of their keys (§19.4).
        [(n.entry.id, n.agent, n.entry.seq, n.record) for n in valid if isinstance(n.record, Ballot)],
        [(n.entry.id, n.agent, n.entry.header.ts, n.record) for n in closings if isinstance(n.record, Closing)],
        frozenset(applied),
        book.genesis.version > 1,
    )
    amending = {m.id.raw for m in motions if m.motion.amend is not None}
    heads = rules_heads((n.entry.id, n.closings) for n in closings
                        if isinstance(n.record, Closing) and n.record.motion.raw in amending)
    paid: dict[bytes, list[Payment]] = defaultdict(list)
    for c in contributions:
        if c.event.fulfills is not None and c.status not in (REJECTED, CORRECTED):
            day = payment_day(c.event.point, c.ts, utc=book.genesis.version > 1)
            paid[c.event.fulfills.raw].append(Payment(c.id, day, c.event.quantity.value))
    pledges = tuple(
        PledgeState(n.entry.id, n.agent, n.entry.header.ts, n.record,
                    tuple(sorted(paid[n.entry.id.raw], key=lambda p: (p.day, p.id.raw))))
        for n in valid if isinstance(n.record, Pledge)
    )
    return motions, pledges, tuple(CID(raw) for raw in applied), heads, everything
