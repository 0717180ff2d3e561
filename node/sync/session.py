"""The sync conversation of SPEC.md §13 over one secure link.

The Replicator (node/sync/replication.py) runs one `SyncSession` per authenticated link:
a reader task that handles messages as they come, a server task that answers
wants (so a large answer never blocks reading, and two peers streaming at
each other cannot deadlock on full buffers), a processor task that verifies
and stores incoming entries while the reader goes on reading, and a control
task that sends live pushes and fork proofs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from typing import Final, Protocol

from node.store.store import Store
from node.sync.ingest import Verifier
from node.sync.links import LinkClosed, SecureLink
from node.sync.peers import MISBEHAVIOUR, PeerInfo, PeerMisbehaved, wall_ms
from protocol import CID, Entry, ForkProof, InvalidData, public_key_from_did
from protocol.sync import (
    MAX_WANTS_IN_FLIGHT,
    WANT_MAX,
    Ents,
    Err,
    Fork,
    Front,
    Level,
    Message,
    Own,
    Plan,
    RateLimit,
    Sent,
    Sub,
    Want,
    check_ents,
    decode_message,
    encode_message,
    ents_messages,
    front_messages,
    frontier_digest,
    plan,
)

# Sessions log under the Replicator's name, as they did when they lived in its module.
log = logging.getLogger("node.sync.replication")

REQUEST_RATE: Final = 200.0  # requests (sub, want, own, front) a peer may make per second …
REQUEST_BURST: Final = 400.0  # … in bursts of this many
INBOX_MESSAGES: Final = 8  # ents messages queued for verification before the reader waits
KEEP_RECEIVED_S: Final = 30.0  # how long a link the peer ended may take to store what it had received
SUB_CHUNK: Final = 500  # ledgers per sub message, and heads per own answer: each fits one frame
MAX_NAMED_LEDGERS: Final = 10_000  # ledgers a peer named that a link remembers, in case we follow them later
MAX_FRONT_HEADS: Final = 100_000  # heads a peer may send for one ledger before it is cut off


class SyncHost(Protocol):
    """What a session uses of the Replicator that runs it (node.sync.replication.Replicator)."""

    @property
    def catching_up(self) -> bool: ...

    @property
    def stopping(self) -> bool: ...

    async def shared_ledgers(self, peer: str) -> list[CID]: ...

    async def may_share(self, ledger: CID, peer: str) -> bool: ...

    def restore_answered(self, did: str) -> None: ...

    def gossip_fork(self, proof: ForkProof, source: SyncSession | None) -> None: ...


class SyncSession:
    """One link's sync state. Created and run by the Replicator."""

    def __init__(
        self, rep: SyncHost, link: SecureLink, info: PeerInfo, *, store: Store, verifier: Verifier, me: bytes,
        one_shot: bool, progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.rep = rep
        self.store = store
        self.verifier = verifier
        self.me = me  # our own public key
        self.link = link
        self.info = info
        self.peer_did = link.remote_did
        self.url = info.address if link.initiator else None
        self.one_shot = one_shot
        self.progress = progress
        self.failure: InvalidData | None = None
        self.limit = RateLimit(REQUEST_RATE, REQUEST_BURST)
        self.shared: set[bytes] = set()  # ledgers both sides replicate and the peer may see
        self.my_sub: dict[bytes, bytes] = {}  # ledger -> digest we advertised
        # ledger -> digest the peer advertised, shared or not, replicated here or not (yet: we may follow it)
        self.their_sub: dict[bytes, bytes] = {}
        self.known: dict[bytes, dict[bytes, int]] = defaultdict(dict)  # ledger -> author -> seq the peer has
        self.fronts: dict[bytes, dict[bytes, tuple[int, CID]]] = {}  # partial fronts being received
        self.fronts_sent: set[bytes] = set()
        # ledger -> author -> the seq our frontier told the peer about: below it, the peer
        # fetches by want; pushing there too would send entries twice.
        self.advertised: dict[bytes, dict[bytes, int]] = defaultdict(dict)
        self.outstanding: dict[tuple[bytes, bytes], Want] = {}  # our wants not yet answered
        self.queued_wants: deque[Want] = deque()
        self.level_mine: set[bytes] = set()  # ledgers where we fetched all the peer advertised
        self.level_theirs: set[bytes] = set()  # ledgers where the peer said it is level
        self.probed: set[tuple[bytes, bytes]] = set()  # chains whose fork probe we sent
        self.wants_in: asyncio.Queue[Want | None] = asyncio.Queue()
        self.inbox: asyncio.Queue[Ents | Sent | None] = asyncio.Queue(maxsize=INBOX_MESSAGES)
        self.control: asyncio.Queue[bytes] = asyncio.Queue()
        self.restoring_busy = rep.catching_up  # we asked for our own heads and wait for them
        self.own_pending: set[bytes] = set()  # ledgers of our own chains still being fetched
        self.received = 0
        self.expected = 0
        self.sub_received = False
        self.sub_sent = False
        self.done = asyncio.Event()

    # ---- running -----------------------------------------------------------------

    async def run(self) -> None:
        tasks = [
            asyncio.create_task(self._reader(), name="sync-reader"),
            asyncio.create_task(self._server(), name="sync-server"),
            asyncio.create_task(self._processor(), name="sync-processor"),
            asyncio.create_task(self._controller(), name="sync-control"),
        ]
        try:
            await self._start()
            if self.one_shot:
                await asyncio.wait([asyncio.create_task(self.done.wait()), tasks[0]],
                                   return_when=asyncio.FIRST_COMPLETED)
            else:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            await self._keep_received(tasks[0], tasks[2])
        except PeerMisbehaved as exc:
            self.failure = exc.error
        except (LinkClosed, ConnectionError):
            pass
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for result in results:
                if isinstance(result, PeerMisbehaved) and self.failure is None:
                    self.failure = result.error
                elif (isinstance(result, LinkClosed) and not result.by_peer and result.code in MISBEHAVIOUR
                      and self.failure is None):
                    # The link layer refused what the peer sent (bad_frame, frame_too_large) and closed.
                    self.failure = InvalidData(result.code, result.reason)
            if self.failure is not None:
                self.info.note_error(self.failure.code, self.failure.message)
                log.warning("peer misbehaved peer=%s code=%s message=%s", self.peer_did, self.failure.code,
                            self.failure.message)
                with contextlib.suppress(Exception):
                    await self.link.send(encode_message(Err(self.failure.code, self.failure.message[:200])))
                await self.link.close(self.failure.code, self.failure.message)
            else:
                await self.link.close(None, "done" if self.one_shot else "closing")
            self._account_io()
            self.restoring_busy = False

    async def _keep_received(self, reader: asyncio.Task[None], processor: asyncio.Task[None]) -> None:
        """The peer or the network ended the link: store the entries already received (they
        verify on their own) before letting go, so the next link does not fetch them again.
        Nothing more is sent."""
        if not reader.done() or processor.done() or self.rep.stopping:
            return
        ended = reader.exception()
        if not isinstance(ended, LinkClosed) or not ended.by_peer:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(KEEP_RECEIVED_S):
                await self.inbox.put(None)
                await asyncio.wait([processor])

    async def _start(self) -> None:
        ledgers = await self.rep.shared_ledgers(self.peer_did)
        await self.send_sub(ledgers)
        if self.rep.catching_up:
            await self._send(Own(None))

    async def send_sub(self, ledgers: Sequence[CID], *, announced: bool = False) -> None:
        """Advertise ledgers to the peer: only those it may see. `announced`: the peer named
        them first, so a ledger whose genesis we lack (visibility unknown) reveals nothing."""
        items = []
        for ledger in ledgers:
            if ledger.raw in self.my_sub:
                continue
            # A followed ledger whose genesis we lack (visibility unknown) is advertised with
            # an empty frontier: it reveals nothing of ours and lets the peer serve it.
            if await self.store.genesis(ledger) is None:
                items.append((ledger, frontier_digest({})))
            elif await self.rep.may_share(ledger, self.peer_did):
                items.append((ledger, frontier_digest(await self._heads(ledger))))
        # Marked only now, with no await until the send: a front can never overtake its sub.
        items = [(ledger, digest) for ledger, digest in items if ledger.raw not in self.my_sub]
        for ledger, digest in items:
            self.my_sub[ledger.raw] = digest
        if not items and self.sub_sent:
            return
        self.sub_sent = True
        for i in range(0, max(len(items), 1), SUB_CHUNK):
            await self._send(Sub(tuple(items[i : i + SUB_CHUNK])))

    async def _send(self, message: Message) -> None:
        log.debug("send peer=%s %s", self.peer_did[-6:], message.T)
        await self.link.send(encode_message(message))

    def queue_control(self, data: bytes) -> None:
        self.control.put_nowait(data)

    async def _controller(self) -> None:
        while True:
            data = await self.control.get()
            await self.link.send(data)

    def _account_io(self) -> None:
        self.info.bytes_in = self.link.bytes_in
        self.info.bytes_out = self.link.bytes_out

    async def _heads(self, ledger: CID) -> dict[bytes, tuple[int, CID]]:
        """Our frontier of `ledger` as we show it: empty while we lack its genesis (we cannot
        tell who may see what we hold of it)."""
        if await self.store.genesis(ledger) is None:
            return {}
        return {a: (h.seq, h.id) for a, h in (await self.store.frontier(ledger)).items()}

    # ---- reading ---------------------------------------------------------------------

    async def _reader(self) -> None:
        while True:
            frame = await self.link.receive()
            self.info.last_seen = wall_ms()
            try:
                message = decode_message(frame)
            except InvalidData as exc:
                if exc.code == "unknown_message":
                    # A newer peer's message type: ignored (but charged), so versions can mix.
                    self._charge()
                    log.info("ignored unknown message peer=%s %s", self.peer_did, exc.message)
                    continue
                raise PeerMisbehaved(exc) from None
            log.debug("recv peer=%s %s", self.peer_did[-6:], message.T)
            await self._handle(message)
            self._account_io()

    def _charge(self) -> None:
        if not self.limit.allow(time.monotonic()):
            raise PeerMisbehaved(InvalidData("rate_limited", f"more than {REQUEST_RATE:.0f} requests per second"))

    async def _handle(self, m: Message) -> None:
        if isinstance(m, (Ents, Sent)):
            # In order with the entries before it: `sent` must not overtake their storing.
            await self.inbox.put(m)
        elif isinstance(m, Want):
            self._charge()
            if self.wants_in.qsize() >= MAX_WANTS_IN_FLIGHT:
                raise PeerMisbehaved(InvalidData("rate_limited", f"more than {MAX_WANTS_IN_FLIGHT} wants in flight"))
            self.wants_in.put_nowait(m)
        elif isinstance(m, Sub):
            self._charge()
            await self._on_sub(m)
        elif isinstance(m, Front):
            self._charge()
            await self._on_front(m)
        elif isinstance(m, Level):
            self.level_theirs.add(m.ledger.raw)
            self._check_done()
        elif isinstance(m, Fork):
            try:
                proof = ForkProof.decode(m.proof)
            except InvalidData as exc:
                raise PeerMisbehaved(exc) from None
            if await self.store.add_fork_proof(proof):
                log.warning("fork learned from peer peer=%s author=%s seq=%d", self.peer_did, proof.author,
                            proof.seq)
                self.rep.gossip_fork(proof, self)
        elif isinstance(m, Own):
            self._charge()
            await self._on_own(m)
        elif isinstance(m, Err):
            log.warning("peer reported error peer=%s code=%s message=%s", self.peer_did, m.code, m.message)

    async def reconsider(self, ledgers: Sequence[CID]) -> None:
        """Membership of `ledgers` changed: advertise those the peer may now see, and share those it
        already named in its `sub` (refused then, when it was not a member yet)."""
        await self.send_sub(ledgers)
        named = [(c, self.their_sub[c.raw]) for c in ledgers if c.raw in self.their_sub and c.raw not in self.shared]
        if named:
            await self._on_sub(Sub(tuple(named)))

    async def _on_sub(self, m: Sub) -> None:
        mine = {c.raw for c in await self.store.replicated(self.me)}
        for ledger, digest in m.ledgers:
            if ledger.raw in self.their_sub or len(self.their_sub) < MAX_NAMED_LEDGERS:
                self.their_sub[ledger.raw] = digest
            if ledger.raw not in mine:
                continue
            # A ledger we follow but whose genesis we lack yet (so we cannot tell who may see it)
            # has nothing of ours to reveal: answer with our frontier, empty or not, and fetch.
            if await self.store.genesis(ledger) is not None and not await self.rep.may_share(ledger, self.peer_did):
                continue
            if ledger.raw not in self.my_sub:
                await self.send_sub([ledger], announced=True)
            self.shared.add(ledger.raw)
            heads = await self._heads(ledger)
            if frontier_digest(heads) == digest:
                self.known[ledger.raw] = {a: seq for a, (seq, _) in heads.items()}
                self.level_mine.add(ledger.raw)
                self.level_theirs.add(ledger.raw)
                self._mark_synced()
            else:
                await self._send_front(ledger, heads)
        self.sub_received = True
        self._check_done()

    async def _send_front(self, ledger: CID, heads: dict[bytes, tuple[int, CID]] | None = None) -> None:
        if ledger.raw in self.fronts_sent:
            return
        self.fronts_sent.add(ledger.raw)
        heads = heads if heads is not None else await self._heads(ledger)
        self.advertised[ledger.raw] = {a: seq for a, (seq, _) in heads.items()}
        for front in front_messages(ledger, heads):
            await self._send(front)

    async def _on_front(self, m: Front) -> None:
        if m.ledger.raw not in self.shared:
            if m.ledger.raw not in self.my_sub:
                return  # a ledger we do not share with this peer: ignore, reveal nothing
            # It answers the `sub` we sent for it (we followed it after its own `sub` named it,
            # or while that `sub` was being handled): it shares the ledger with us.
            self.shared.add(m.ledger.raw)
        part = self.fronts.setdefault(m.ledger.raw, {})
        part.update({author: (seq, cid) for author, seq, cid in m.heads})
        if len(part) > MAX_FRONT_HEADS:
            raise PeerMisbehaved(InvalidData("protocol_error", f"a frontier of more than {MAX_FRONT_HEADS} heads"))
        if not m.done:
            return
        await self._send_front(m.ledger)  # fronts go both ways, whoever saw a difference first
        theirs = self.fronts.pop(m.ledger.raw)
        self.known[m.ledger.raw].update({a: s for a, (s, _) in theirs.items()})
        mine = {a: (h.seq, h.id) for a, h in (await self.store.frontier(m.ledger)).items()}
        p: Plan = plan(m.ledger, mine, theirs)
        self.info.entries_behind = p.behind
        self.expected += p.behind
        for author, seq, their_id in p.suspects:
            if await self.store.id_at(m.ledger, author, seq) not in (None, their_id):
                await self._probe(m.ledger, author, seq)
        for want in p.wants:
            self._want(want)
        await self._pump_wants()
        await self._maybe_level(m.ledger)

    async def _probe(self, ledger: CID, author: bytes, seq: int) -> None:
        """Ask for the peer's entry at `seq`, which differs from ours: storing it proves the fork."""
        key = (ledger.raw, author)
        if key in self.probed:
            return
        self.probed.add(key)
        self._want(Want(ledger, author, seq, 1))
        await self._pump_wants()

    def _want(self, want: Want) -> None:
        self.queued_wants.append(want)

    async def _pump_wants(self) -> None:
        """Send queued wants, one per chain at a time, at most MAX_WANTS_IN_FLIGHT at once."""
        if self.link.closed:
            return  # storing what came before the link ended (_keep_received)
        held: list[Want] = []
        while self.queued_wants and len(self.outstanding) < MAX_WANTS_IN_FLIGHT:
            want = self.queued_wants.popleft()
            key = (want.ledger.raw, want.author)
            if key in self.outstanding:
                held.append(want)  # that chain is busy; other chains go ahead
                continue
            self.outstanding[key] = want
            await self._send(want)
        self.queued_wants.extendleft(reversed(held))

    async def _on_sent(self, m: Sent) -> None:
        key = (m.ledger.raw, m.author)
        want = self.outstanding.pop(key, None)
        if want is None:
            raise InvalidData("protocol_error", "sent for a want we did not make")
        have = self.known[m.ledger.raw].get(m.author, 0)
        if m.upto >= want.start and have > m.upto:
            # More to fetch on this chain: ask for the next window right away.
            self._want(Want(m.ledger, m.author, m.upto + 1, min(WANT_MAX, have - m.upto)))
        await self._pump_wants()
        await self._maybe_level(m.ledger)

    async def _maybe_level(self, ledger: CID) -> None:
        raw = ledger.raw
        if raw in self.fronts or any(k[0] == raw for k in self.outstanding) or any(
            w.ledger.raw == raw for w in self.queued_wants
        ):
            return
        if raw not in self.level_mine:
            self.level_mine.add(raw)
            await self._send(Level(ledger, frontier_digest(await self._heads(ledger))))
            self._mark_synced()
        self._own_progress(ledger)
        self._check_done()

    def _mark_synced(self) -> None:
        if self.shared and self.shared <= self.level_mine:
            self.info.last_sync = wall_ms()
            self.info.entries_behind = 0

    def _check_done(self) -> None:
        """A one-shot sync is done when every shared ledger is level both ways."""
        if not self.one_shot or not self.sub_received or self.outstanding or self.queued_wants or self.fronts:
            return
        if all(raw in self.level_mine and raw in self.level_theirs for raw in self.shared):
            self.done.set()
    # ---- safe restore --------------------------------------------------------------

    async def _on_own(self, m: Own) -> None:
        peer_key = self._peer_key()
        if m.heads is None:
            heads = await self.store.heads_of(peer_key)
            # At most SUB_CHUNK heads fit one answer; a node in more ledgers than that catches up
            # the rest through ordinary sync once it follows them.
            await self._send(Own(tuple((h.ledger, h.seq, h.id) for h in heads[:SUB_CHUNK])))
            return
        if not self.restoring_busy:
            return  # an answer we no longer wait for
        me = self.me
        for ledger, seq, their_id in m.heads:
            mine = await self.store.head(ledger, me)
            if await self.store.follow(ledger):
                log.info("safe restore: following ledger=%s where we have a chain", ledger)
            if mine is None or seq > mine.seq:
                self.known[ledger.raw][me] = seq
                self.own_pending.add(ledger.raw)
                self.shared.add(ledger.raw)
                start = 1 if mine is None else mine.seq + 1
                self._want(Want(ledger, me, start, min(WANT_MAX, seq - start + 1)))
            elif seq == mine.seq and their_id != mine.id:
                await self._probe(ledger, me, seq)
        await self._pump_wants()
        for ledger, _, _ in m.heads:
            await self.send_sub([ledger])
        self._own_progress(None)

    def _own_progress(self, ledger: CID | None) -> None:
        if ledger is not None and ledger.raw in self.own_pending:
            me = self.me
            if not any(k == (ledger.raw, me) for k in self.outstanding) and not any(
                w.ledger.raw == ledger.raw and w.author == me for w in self.queued_wants
            ):
                self.own_pending.discard(ledger.raw)
        if self.restoring_busy and not self.own_pending:
            self.restoring_busy = False
            self.rep.restore_answered(self.peer_did)

    def _peer_key(self) -> bytes:
        return public_key_from_did(self.peer_did)

    # ---- serving wants -------------------------------------------------------------

    async def _server(self) -> None:
        while True:
            want = await self.wants_in.get()
            if want is None:
                return
            upto = want.start - 1
            if await self.rep.may_share(want.ledger, self.peer_did) or await self._may_serve(want):
                rows = await self.store.raw_range(want.ledger, want.author, want.start, want.limit)
                contiguous = []
                for seq, header, payload in rows:
                    if seq != upto + 1:
                        break
                    contiguous.append((header, payload))
                    upto = seq
                for message in ents_messages(want.ledger, want.author, contiguous):
                    await self._send(message)
                self.info.entries_out += len(contiguous)
                if contiguous:
                    chain = self.known[want.ledger.raw]
                    chain[want.author] = max(chain.get(want.author, 0), upto)
            await self._send(Sent(want.ledger, want.author, upto))
            self._account_io()
            if want.ledger.raw in self.shared:
                await self._push_tail(want.ledger, want.author)

    async def _may_serve(self, want: Want) -> bool:
        # Safe restore asks for our own chains before any sub: the author may always fetch its own chain.
        return want.author == self._peer_key() and await self.store.head(want.ledger, want.author) is not None

    def _still_fetching(self, ledger_raw: bytes, author: bytes) -> bool:
        return self.known[ledger_raw].get(author, 0) < self.advertised[ledger_raw].get(author, 0)

    async def _push_tail(self, ledger: CID, author: bytes) -> None:
        """Send what we stored on this chain beyond our frontier while the peer fetched it."""
        if self._still_fetching(ledger.raw, author):
            return
        have = self.known[ledger.raw].get(author, 0)
        rows = await self.store.raw_range(ledger, author, have + 1, WANT_MAX)
        tail = []
        for seq, header, payload in rows:
            if seq != have + 1:
                break
            tail.append((header, payload))
            have = seq
        if tail:
            for message in ents_messages(ledger, author, tail):
                await self._send(message)
            chain = self.known[ledger.raw]
            chain[author] = max(chain.get(author, 0), have)
            self.info.entries_out += len(tail)

    def offer(self, entries: Sequence[Entry]) -> None:
        """Live push: send new entries the peer is known to lack, right after its latest."""
        runs: dict[tuple[bytes, bytes], list[Entry]] = defaultdict(list)
        for entry in entries:
            runs[(entry.ledger_id.raw, entry.header.author)].append(entry)
        for (ledger_raw, author), run in runs.items():
            if ledger_raw not in self.shared or self._still_fetching(ledger_raw, author):
                continue
            chain = self.known[ledger_raw]
            have = chain.get(author, 0)
            fresh = [e for e in run if e.seq > have]
            if not fresh or fresh[0].seq != have + 1:
                continue  # it lacks earlier entries too: it will ask for them
            chain[author] = fresh[-1].seq
            ledger = fresh[0].ledger_id
            for message in ents_messages(ledger, author, [(e.header_raw, e.payload_raw) for e in fresh]):
                self.queue_control(encode_message(message))
            self.info.entries_out += len(fresh)

    # ---- taking in entries ----------------------------------------------------------

    async def _processor(self) -> None:
        """Verify each `ents` message while the one before it is being stored."""
        storing: asyncio.Task[None] | None = None
        try:
            while True:
                m = await self.inbox.get()
                if m is None:  # the link is over: finish storing, then stop
                    if storing is not None:
                        await storing
                    return
                if isinstance(m, Ents):
                    entries = await self._check(m)
                    if storing is not None:
                        await storing
                    storing = asyncio.create_task(self._store(m, entries))
                    continue
                if storing is not None:
                    await storing  # `sent` comes after the entries it closes are stored
                    storing = None
                if self.link.closed:
                    continue  # nothing to ask for on a link that is over; only entries are kept
                try:
                    await self._on_sent(m)
                except InvalidData as exc:
                    raise PeerMisbehaved(exc) from None
        finally:
            if storing is not None and not storing.done():
                storing.cancel()

    async def _check(self, m: Ents) -> list[Entry]:
        checked = await self.verifier.check(m.entries)
        if checked.refused:
            _, error = checked.refused[0]
            raise PeerMisbehaved(error)
        try:
            check_ents(m, checked.entries)
        except InvalidData as exc:
            raise PeerMisbehaved(exc) from None
        if m.ledger.raw not in self.shared and m.ledger.raw not in self.my_sub and m.ledger.raw not in self.own_pending:
            raise PeerMisbehaved(InvalidData("protocol_error", "entries of a ledger we did not ask for"))
        return checked.entries

    async def _store(self, m: Ents, entries: list[Entry]) -> None:
        # The peer has what it sent: noted before storing, so live push does not echo it back.
        chain = self.known[m.ledger.raw]
        chain[m.author] = max(chain.get(m.author, 0), entries[-1].seq)
        result = await self.store.ingest(entries)
        self.received += len(entries)
        self.info.entries_in += len(result.stored)
        if self.progress is not None:
            self.progress(self.received, max(self.expected, self.received))
        for proof in result.forks:
            log.warning("fork detected peer=%s author=%s seq=%d", self.peer_did, proof.author, proof.seq)
            self.rep.gossip_fork(proof, None)
        if result.gaps:
            head = await self.store.head(m.ledger, m.author)
            start = 1 if head is None else head.seq + 1
            if (m.ledger.raw, m.author) not in self.outstanding:
                self._want(Want(m.ledger, m.author, start, min(WANT_MAX, result.gaps[-1].seq - start + 1)))
                await self._pump_wants()
        for entry, error in result.refused:
            if error.code == "bad_prev":
                # Same seq as our next, another history: fetch their entry at our head's seq to prove the fork.
                await self._probe(m.ledger, m.author, entry.seq - 1)
            else:
                log.warning("entry refused by chain rules peer=%s entry=%s code=%s", self.peer_did, entry.id,
                            error.code)
