"""A deterministic network of sync engines: seeded, simulated clock, in-memory links and stores.

Every node runs real `protocol.sync_engine.SyncEngine`s, one per link, and a small driver that
does what node/ does (read the store, verify and store entries, gossip fork proofs), but
synchronously and in memory. Messages go through the real encoder and decoder, so `bytes`
counts what would cross the wire. Links deliver in order after a latency; a message the
network drops breaks its link (as a missing Noise frame does on a real one) and the nodes
redial after a delay. Partitions cut links until healed. All randomness comes from one
`random.Random(seed)`: a seed reproduces a run exactly.

Time is in rounds: one round is the mean one-way latency.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from protocol import CID, Entry, ForkProof, InvalidData, SigningKey, create_entry, decode_entry
from protocol.chain import ChainHead, check_next
from protocol.entry import GENESIS_KIND
from protocol.sync import Message, encode_message
from protocol.sync_engine import (
    Action,
    AnswerOwn,
    CheckIds,
    Close,
    KeepFork,
    LedgerFacts,
    Report,
    Send,
    Serve,
    Store,
    StoreResult,
    SyncEngine,
    Tail,
    Verify,
)

_DECODED: dict[tuple[bytes, bytes | None], Entry] = {}  # verified once per distinct entry: the sim's speed-up


def decode_cached(header: bytes, payload: bytes | None) -> Entry:
    key = (header, payload)
    entry = _DECODED.get(key)
    if entry is None:
        entry = decode_entry(header, payload)  # raises InvalidData: bad input is never cached
        if len(_DECODED) < 200_000:
            _DECODED[key] = entry
    return entry


class SimStore:
    """What a node stores: chains, follows, fork proofs. Same rules as node/store/transactions.py's ingest."""

    def __init__(self) -> None:
        self.chains: dict[tuple[bytes, bytes], list[Entry]] = {}
        self.follows: set[bytes] = set()
        self.genesis: dict[bytes, Entry] = {}
        self.forks: dict[tuple[bytes, bytes, int], ForkProof] = {}
        self.ledgers: dict[bytes, CID] = {}

    def heads(self, ledger: bytes) -> dict[bytes, tuple[int, CID]]:
        return {a: (c[-1].seq, c[-1].id) for (lr, a), c in self.chains.items() if lr == ledger and c}

    def count(self, ledger: bytes) -> int:
        return sum(len(c) for (lr, _), c in self.chains.items() if lr == ledger)

    def rows(self, ledger: bytes, author: bytes, start: int, limit: int) -> list[tuple[int, bytes, bytes | None]]:
        chain = self.chains.get((ledger, author), [])
        return [(e.seq, e.header_raw, e.payload_raw) for e in chain[start - 1 : start - 1 + limit]]

    def ingest(self, entries: Iterable[Entry]) -> tuple[list[Entry], list[ForkProof], int | None, list[int]]:
        """(stored, forks, last gap seq, seqs refused with bad_prev)."""
        stored: list[Entry] = []
        forks: list[ForkProof] = []
        gap_last: int | None = None
        bad_prev: list[int] = []
        for e in entries:
            key = (e.ledger_id.raw, e.header.author)
            chain = self.chains.setdefault(key, [])
            if e.seq <= len(chain):
                other = chain[e.seq - 1]
                if other.id != e.id:
                    proof = ForkProof.of(other, e)
                    if (*key, e.seq) not in self.forks:
                        self.forks[(*key, e.seq)] = proof
                        forks.append(proof)
                continue
            if e.seq > len(chain) + 1:
                gap_last = e.seq
                continue
            try:
                check_next(ChainHead.of(chain[-1]) if chain else None, e)
            except InvalidData as exc:
                if exc.code == "bad_prev":
                    bad_prev.append(e.seq)
                continue
            chain.append(e)
            self.ledgers[e.ledger_id.raw] = e.ledger_id
            if e.is_genesis:
                self.genesis[e.id.raw] = e
            stored.append(e)
        return stored, forks, gap_last, bad_prev


@dataclass
class LinkEnd:
    node: SimNode
    engine: SyncEngine
    link: SimLink
    peer: SimNode


@dataclass
class SimLink:
    a: SimNode
    b: SimNode
    alive: bool = True
    latency: float | None = None  # this link's own one-way latency (default: the network's)
    ends: list[LinkEnd] = field(default_factory=list)
    last_delivery: dict[int, float] = field(default_factory=dict)  # per direction: keeps order


class SimNode:
    def __init__(self, net: Network, index: int, key: SigningKey) -> None:
        self.net = net
        self.index = index
        self.key = key
        self.public = key.public_key
        self.store = SimStore()
        self.ends: list[LinkEnd] = []
        self.members: dict[bytes, set[bytes]] = {}  # members-only ledger -> member keys (public: absent)
        self.catching_up = False
        self.reports: list[tuple[str, int, str]] = []
        self.violations: list[str] = []  # codes of peers this node disconnected
        self.up = True

    # ---- what the driver reads of the store ---------------------------------------

    def facts(self, ledger: CID, peer: bytes) -> LedgerFacts:
        raw = ledger.raw
        genesis = self.store.genesis.get(raw)
        visible = False
        if genesis is not None and genesis.body is not None:
            visible = genesis.body.get("visibility") == "public" or peer in self.members.get(raw, set())
        return LedgerFacts(ledger, raw in self.store.follows, genesis is not None, visible, self.store.heads(raw))

    def follow(self, ledger: CID) -> None:
        self.store.follows.add(ledger.raw)
        self.store.ledgers[ledger.raw] = ledger

    def append(self, ledger: CID, count: int, ts: int = 1000) -> list[Entry]:
        """Sign `count` new entries on this node's chain in `ledger` and store them."""
        chain = self.store.chains.get((ledger.raw, self.public), [])
        head = chain[-1] if chain else None
        made = []
        for _ in range(count):
            head = create_entry(
                self.key,
                ledger=ledger,
                seq=1 if head is None else head.seq + 1,
                prev=None if head is None else head.id,
                ts=ts,
                kind="vf.event",
                body={"n": 0 if head is None else head.seq},
            )
            made.append(head)
        self.stored(made)
        return made

    def stored(self, entries: Sequence[Entry]) -> None:
        stored, _, _, _ = self.store.ingest(entries)
        self.announce(stored)

    def announce(self, stored: Sequence[Entry]) -> None:
        """New entries (from anywhere): offer them to every link; a genesis changes who may see."""
        if not stored:
            return
        for end in list(self.ends):
            self.net.run(end, end.engine.offer(stored, self.net.now))
        for e in stored:
            if e.is_genesis and e.id.raw in self.store.follows:
                for end in list(self.ends):
                    self.net.run(end, end.engine.reconsider([self.facts(e.id, end.peer.public)], self.net.now))


class Network:
    """N nodes, links between them, a clock and an event queue. See the module docstring."""

    def __init__(
        self,
        seed: int,
        *,
        latency: float = 1.0,
        jitter: float = 0.0,
        loss: float = 0.0,
        redial: float = 2.0,
    ) -> None:
        self.rng = random.Random(seed)
        self.now = 0.0
        self.latency = latency
        self.jitter = jitter
        self.loss = loss
        self.redial = redial
        self.nodes: list[SimNode] = []
        self.links: list[SimLink] = []
        self.queue: list[tuple[float, int, Callable[[], None]]] = []
        self.counter = 0
        self.messages = 0
        self.bytes = 0
        self.cut: set[int] | None = None  # nodes on one side of a partition
        self.broken = 0
        self.tamper: Callable[[SimNode, SimNode, bytes], bytes | None] | None = None  # hostile wire, for tests

    # ---- building ----------------------------------------------------------

    def add_node(self, key: SigningKey | None = None) -> SimNode:
        index = len(self.nodes)
        node = SimNode(self, index, key or SigningKey(self.rng.randbytes(32)))
        self.nodes.append(node)
        return node

    def at(self, when: float, fn: Callable[[], None]) -> None:
        self.counter += 1
        heapq.heappush(self.queue, (when, self.counter, fn))

    def connect(self, a: SimNode, b: SimNode, *, one_shot: bool = False, latency: float | None = None) -> SimLink:
        link = SimLink(a, b, latency=latency)
        self.links.append(link)
        self._open(link, one_shot=one_shot)
        return link

    def _open(self, link: SimLink, *, one_shot: bool = False) -> None:
        link.alive = True
        link.last_delivery = {}
        a, b = link.a, link.b
        ea = LinkEnd(a, SyncEngine(a.public, b.public, one_shot=one_shot, catching_up=a.catching_up), link, b)
        eb = LinkEnd(b, SyncEngine(b.public, a.public, catching_up=b.catching_up), link, a)
        link.ends = [ea, eb]
        a.ends.append(ea)
        b.ends.append(eb)
        for end in (ea, eb):
            facts = [
                end.node.facts(end.node.store.ledgers[raw], end.peer.public) for raw in sorted(end.node.store.follows)
            ]
            self.run(end, end.engine.start(facts, self.now))

    def _separated(self, link: SimLink) -> bool:
        return self.cut is not None and ((link.a.index in self.cut) != (link.b.index in self.cut))

    def break_link(self, link: SimLink, *, redial: bool = True) -> None:
        if not link.alive:
            return
        link.alive = False
        self.broken += 1
        for end in link.ends:
            if end in end.node.ends:
                end.node.ends.remove(end)
        if redial:
            self.at(self.now + self.redial, lambda: self._redial(link))

    def _redial(self, link: SimLink) -> None:
        if link.alive or not (link.a.up and link.b.up):
            return
        if self._separated(link):
            self.at(self.now + self.redial, lambda: self._redial(link))
            return
        self._open(link)

    def partition(self, side: set[int]) -> None:
        self.cut = side
        for link in self.links:
            if link.alive and self._separated(link):
                self.break_link(link)

    def heal(self) -> None:
        self.cut = None

    # ---- the driver: what node/ does with an engine's actions ---------------------------

    def run(self, end: LinkEnd, actions: list[Action]) -> None:
        work = list(actions)
        while work:
            action = work.pop(0)
            more = self._perform(end, action)
            if more:
                work[0:0] = more  # an action's consequences come before what followed it

    def _perform(self, end: LinkEnd, action: Action) -> list[Action]:
        node, engine, now = end.node, end.engine, self.now
        if isinstance(action, Send):
            self._send(end, action.message)
        elif isinstance(action, Serve):
            w = action.want
            return engine.served(w, node.store.rows(w.ledger.raw, w.author, w.start, w.limit), now)
        elif isinstance(action, Tail):
            rows = node.store.rows(action.ledger.raw, action.author, action.start, 1024)
            return engine.tail_read(action.ledger, action.author, rows, now)
        elif isinstance(action, Verify):
            try:
                entries = [decode_cached(h, p) for h, p in action.ents.entries]
            except InvalidData as exc:
                return engine.verified(action.job, [], exc, now)
            return engine.verified(action.job, entries, None, now)
        elif isinstance(action, Store):
            stored, forks, gap_last, bad_prev = node.store.ingest(action.entries)
            last = action.entries[-1]
            chain = node.store.chains.get((last.ledger_id.raw, last.header.author), [])
            node.announce(stored)
            for proof in forks:
                self._gossip(node, proof, source=None)
            head = (chain[-1].seq, chain[-1].id) if chain else None
            return engine.stored(action.job, StoreResult(head, len(stored), gap_last, tuple(bad_prev)), now)
        elif isinstance(action, CheckIds):
            forked = []
            for author, seq, their_id in action.suspects:
                chain = node.store.chains.get((action.ledger.raw, author), [])
                if len(chain) >= seq and chain[seq - 1].id != their_id:
                    forked.append((author, seq))
            return engine.ids_checked(action.ledger, forked, now)
        elif isinstance(action, AnswerOwn):
            heads = [
                (node.store.ledgers[lr], c[-1].seq, c[-1].id)
                for (lr, a), c in sorted(node.store.chains.items())
                if a == end.peer.public and c
            ]
            return engine.own_heads(heads, now)
        elif isinstance(action, KeepFork):
            p = action.proof
            key = (p.a.ledger_id.raw, p.a.header.author, p.seq)
            if (p.a.ledger_id.raw, p.a.header.author) in node.store.chains and key not in node.store.forks:
                node.store.forks[key] = p
                self._gossip(node, p, source=end)
        elif isinstance(action, Report):
            node.reports.append((action.what, action.value, action.text))
            if action.what == "restored":
                node.catching_up = False
        elif isinstance(action, Close):
            if action.code is not None:
                node.violations.append(action.code)
            link = end.link
            self.at(now + self.latency, lambda: self.break_link(link, redial=False))  # ended: no redial
        return []

    def _gossip(self, node: SimNode, proof: ForkProof, source: LinkEnd | None) -> None:
        for other in list(node.ends):
            if other is not source:
                self.run(other, other.engine.gossip(proof))

    def _send(self, end: LinkEnd, message: Message) -> None:
        link = end.link
        if not link.alive:
            return
        data = encode_message(message)
        if self.tamper is not None:
            tampered = self.tamper(end.node, end.peer, data)
            if tampered is None:
                return
            data = tampered
        self.messages += 1
        self.bytes += len(data)
        if self.loss and self.rng.random() < self.loss:
            self.at(self.now + self.latency, lambda: self.break_link(link))  # a lost frame ends the link
            return
        direction = 0 if end is link.ends[0] else 1
        delay = (link.latency or self.latency) + (self.rng.uniform(-self.jitter, self.jitter) if self.jitter else 0.0)
        when = max(self.now + delay, link.last_delivery.get(direction, 0.0))
        link.last_delivery[direction] = when
        receiver = link.ends[1 - direction]
        self.at(when, lambda: self._deliver(receiver, data))

    def _deliver(self, end: LinkEnd, data: bytes) -> None:
        if not end.link.alive or end.engine.closed:
            return
        node, engine, now = end.node, end.engine, self.now
        message, actions = engine.parse(data, now)
        self.run(end, actions)
        if message is None:
            return
        ledgers, follow = engine.lookup(message)
        if follow:
            for ledger in ledgers:
                node.follow(ledger)
        facts = [node.facts(ledger, end.peer.public) for ledger in ledgers]
        self.run(end, engine.receive(message, now, facts))

    # ---- running ------------------------------------------------------------

    def step_until(self, until: float, done: Callable[[], bool] | None = None) -> bool:
        """Run events up to time `until`; stop early (True) once `done()` holds after an event time."""
        while self.queue and self.queue[0][0] <= until:
            when = self.queue[0][0]
            self.now = when
            while self.queue and self.queue[0][0] == when:
                _, _, fn = heapq.heappop(self.queue)
                fn()
            if done is not None and done():
                return True
        self.now = max(self.now, until)
        return done() if done is not None else not self.queue

    def quiet(self, limit: float = 1000.0) -> bool:
        """Run until nothing is scheduled (True) or `limit` rounds pass."""
        return self.step_until(self.now + limit) and not self.queue


def public_genesis(founder: SimNode, name: str = "Coop", visibility: str = "public") -> Entry:
    g = create_entry(
        founder.key,
        ledger=None,
        seq=1,
        prev=None,
        ts=1000,
        kind=GENESIS_KIND,
        body={"name": name, "visibility": visibility},
    )
    founder.follow(g.id)
    founder.stored([g])
    return g


def random_topology(net: Network, degree: int, rng: random.Random) -> None:
    """Each node links to `degree` distinct random earlier-or-later nodes (a connected random graph:
    node i also links to a random node before it)."""
    n = len(net.nodes)
    pairs: set[tuple[int, int]] = set()
    for i in range(1, n):
        j = rng.randrange(i)
        pairs.add((j, i))
    for i in range(n):
        for _ in range(degree - 1):
            j = rng.randrange(n)
            if j != i:
                pairs.add((min(i, j), max(i, j)))
    for i, j in sorted(pairs):
        net.connect(net.nodes[i], net.nodes[j])


def holds_all(net: Network, ledger: CID, total: int) -> bool:
    return all(node.store.count(ledger.raw) >= total for node in net.nodes if node.up)


def summary(net: Network, **extra: Any) -> dict[str, Any]:
    return {"messages": net.messages, "bytes": net.bytes, "broken_links": net.broken, **extra}
