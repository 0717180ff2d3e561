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

import heapq
from collections import defaultdict
from collections.abc import Iterable, Mapping

from .authorization import identity_keys
from .cid import CID
from .contributions import (
    CORRECTED,
    FINAL,
    PENDING,
    REJECTED,
    Contribution,
    Voice,
    contributions,
    contributions_of,
    voice,
)
from .digest import (
    DIGEST_BUCKETS,
    EMPTY_BUCKET_DIGEST,
    bucket_digest,
    bucket_digest_coded,
    digest_of,
    state_digest,
    with_digest,
)
from .distribution import conflicting
from .entry import Entry
from .erasure import Erase
from .errors import InvalidData
from .governance import RulesInEffect
from .governing import governance_of
from .identity import did_from_public_key
from .keys import MAX_KEY_ROUNDS, REVOKED, Recover, claimed_agents
from .ledger_state import (
    CONFLICTING,
    ERASED,
    IGNORED,
    INVALID,
    QUARANTINED,
    VALID,
    WAITING,
    Erased,
    LedgerState,
    Problem,
)
from .prepared import Prepared, is_ignored, prepare
from .rules import Rules
from .validity import apply_node, recorded_distribution
from .valueflows import About, Admission, Leave

# What node/, tests and protocol/fold.py import from here; most are defined in the modules state.py was split into.
__all__ = [
    "CONFLICTING", "CORRECTED", "DIGEST_BUCKETS", "EMPTY_BUCKET_DIGEST", "ERASED", "FINAL", "IGNORED", "INVALID",
    "PENDING", "QUARANTINED", "REJECTED", "VALID", "WAITING", "Contribution", "Erased", "LedgerState", "Prepared",
    "Problem", "Settled", "Voice", "apply_node", "bucket_digest", "bucket_digest_coded", "compute_state",
    "contributions", "digest_of", "governance_of", "is_ignored", "prepare", "recorded_distribution", "state_digest",
    "voice",
]


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
    identities, found = identity_keys(valid, nodes, agents)
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
    return with_digest(state), (found, erasures)


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


def _heads(nodes: dict[bytes, Prepared], order: list[bytes]) -> tuple[CID, ...]:
    latest: dict[bytes, Entry] = {}
    for raw in order:
        entry = nodes[raw].entry
        head = latest.get(entry.header.author)
        if head is None or entry.seq > head.seq:
            latest[entry.header.author] = entry
    return tuple(sorted((e.id for e in latest.values()), key=lambda c: c.raw))

