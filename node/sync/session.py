"""The loop that drives one link's sync engine (protocol/sync_engine.py) over a secure link.

Every decision of the conversation (SPEC.md §13) is the engine's; this module only
does the I/O it asks for. The Replicator (node/sync/replication.py) runs one `SyncSession`
per authenticated link, with these tasks:

- reader: frames in, facts read from the store, fed to the engine;
- writer: the engine's messages out, in the order it produced them;
- server: the store reads that answer the peer's wants and live-push tails;
- verifier and storer: `ents` decoded (a thread) and verified (worker processes for large
  batches, node/sync/ingest.py), several at once, while the previous ones are stored;
  consecutive stores go into one transaction (group commit: nothing is acknowledged
  before its commit);
- helper: fork-id checks, own-chain answers, fork proofs to keep;
- timer: the engine's want timeout.

Actions are handed to these tasks synchronously, in the engine's order, so no await can
reorder what the engine decided.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Final, Protocol

from node.store.rows import IngestResult
from node.store.store import Store as EntryStore
from node.sync.ingest import Verifier
from node.sync.links import LinkClosed, SecureLink
from node.sync.peers import MISBEHAVIOUR, PeerInfo, wall_ms
from protocol import CID, Entry, ForkProof, InvalidData, public_key_from_did
from protocol.sync import Ents, Message, encode_message
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

# Sessions log under the Replicator's name, as they did when they lived in its module.
log = logging.getLogger("node.sync.replication")

INBOX_MESSAGES: Final = 8  # ents messages received and not yet stored before the reader waits
GROUP_STORES: Final = 16  # ents messages stored in one transaction at most
KEEP_RECEIVED_S: Final = 30.0  # how long a link the peer ended may take to store what it had received
OUTBOX_HIGH: Final = 64  # messages queued for the link before the server waits for the writer
_END: Final = b""  # the writer's stop mark: every message before it is sent first


class SyncHost(Protocol):
    """What a session uses of the Replicator that runs it (node.sync.replication.Replicator)."""

    @property
    def catching_up(self) -> bool: ...

    @property
    def stopping(self) -> bool: ...

    async def may_share(self, ledger: CID, peer: str) -> bool: ...

    def restore_answered(self, did: str) -> None: ...

    def gossip_fork(self, proof: ForkProof, source: SyncSession | None) -> None: ...


class SyncSession:
    """One link's sync: an engine and the tasks that do its I/O. Created and run by the Replicator."""

    def __init__(
        self, rep: SyncHost, link: SecureLink, info: PeerInfo, *, store: EntryStore, verifier: Verifier, me: bytes,
        one_shot: bool, progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.rep = rep
        self.store = store
        self.verifier = verifier
        self.me = me
        self.link = link
        self.info = info
        self.peer_did = link.remote_did
        self.peer_key = public_key_from_did(link.remote_did)
        self.one_shot = one_shot
        self.progress = progress
        self.failure: InvalidData | None = None
        self.engine = SyncEngine(me, self.peer_key, one_shot=one_shot, catching_up=rep.catching_up)
        self.restoring_busy = rep.catching_up  # we asked for our own heads and wait for them
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._reads: asyncio.Queue[Serve | Tail] = asyncio.Queue()
        self._verifies: asyncio.Queue[Verify] = asyncio.Queue()
        self._stores: asyncio.Queue[Store] = asyncio.Queue()
        self._helps: asyncio.Queue[CheckIds | AnswerOwn | KeepFork] = asyncio.Queue()
        self._room = asyncio.Event()  # set while the inbox has room
        self._room.set()
        self._stored_all = asyncio.Event()
        self._ended = False
        self._close: Close | None = None

    # ---- running -----------------------------------------------------------------

    async def run(self) -> None:
        # The opening sub (and the facts the engine keeps) before the first frame is read.
        self._dispatch(self.engine.start(await self._facts(await self._replicated(), follow=False), _now()))
        workers = {
            "reader": self._reader(), "writer": self._writer(), "server": self._server(),
            "verifier": self._verifier(), "storer": self._storer(), "helper": self._helper(), "timer": self._timer(),
        }
        tasks = {name: asyncio.create_task(coro, name=f"sync-{name}") for name, coro in workers.items()}
        try:
            await asyncio.wait([tasks["reader"], tasks["writer"]], return_when=asyncio.FIRST_COMPLETED)
            await self._keep_received(tasks["reader"])
        except (LinkClosed, ConnectionError):
            pass
        finally:
            for task in tasks.values():
                task.cancel()
            results = await asyncio.gather(*tasks.values(), return_exceptions=True)
            for result in results:
                if (isinstance(result, LinkClosed) and not result.by_peer and result.code in MISBEHAVIOUR
                        and self.failure is None):
                    # The link layer refused what the peer sent (bad_frame, frame_too_large) and closed.
                    self.failure = InvalidData(result.code, result.reason)
                elif isinstance(result, Exception) and not isinstance(result, (LinkClosed, ConnectionError)):
                    log.error("sync task failed peer=%s error=%r", self.peer_did, result)
            if self.failure is not None:
                self.info.note_error(self.failure.code, self.failure.message)
                log.warning("peer misbehaved peer=%s code=%s message=%s", self.peer_did, self.failure.code,
                            self.failure.message)
                await self.link.close(self.failure.code, self.failure.message)
            else:
                await self.link.close(None, "done" if self.one_shot else "closing")
            self._account_io()
            self.restoring_busy = False

    async def _keep_received(self, reader: asyncio.Task[None]) -> None:
        """The peer or the network ended the link: store the entries already received (they
        verify on their own) before letting go, so the next link does not fetch them again."""
        if not reader.done() or self.rep.stopping or self.engine.pending_jobs == 0:
            return
        ended = reader.exception()
        if not isinstance(ended, LinkClosed) or not ended.by_peer:
            return
        self._stored_all.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(KEEP_RECEIVED_S):
                while self.engine.pending_jobs:
                    await self._stored_all.wait()
                    self._stored_all.clear()

    # ---- handing out the engine's actions ---------------------------------------------

    def _dispatch(self, actions: Sequence[Action]) -> None:
        """Queue each action for the task that performs it, in order; nothing awaits here."""
        for action in actions:
            if isinstance(action, Send):
                self._send(action.message)
            elif isinstance(action, (Serve, Tail)):
                self._reads.put_nowait(action)
            elif isinstance(action, Verify):
                self._verifies.put_nowait(action)
            elif isinstance(action, Store):
                self._stores.put_nowait(action)
            elif isinstance(action, (CheckIds, AnswerOwn, KeepFork)):
                self._helps.put_nowait(action)
            elif isinstance(action, Report):
                self._report(action)
            elif isinstance(action, Close):
                self._end(action)

    def _send(self, message: Message) -> None:
        if self._ended:
            return
        log.debug("send peer=%s %s", self.peer_did[-6:], message.T)
        if isinstance(message, Ents):
            self.info.entries_out += len(message.entries)
        self._outbox.put_nowait(encode_message(message))

    def _end(self, close: Close) -> None:
        if self._ended:
            return
        self._ended = True
        self._close = close
        if close.code is not None:
            self.failure = InvalidData(close.code, close.message)
        self._outbox.put_nowait(_END)  # the err before it still goes out

    def _report(self, report: Report) -> None:
        if report.what == "synced":
            self.info.last_sync = wall_ms()
            self.info.entries_behind = 0
        elif report.what == "behind":
            self.info.entries_behind = report.value
        elif report.what == "restored":
            self.restoring_busy = False
            self.rep.restore_answered(self.peer_did)
        elif report.what == "peer_err":
            log.warning("peer reported error peer=%s %s", self.peer_did, report.text)

    # ---- the tasks ----------------------------------------------------------------

    async def _writer(self) -> None:
        while True:
            data = await self._outbox.get()
            try:
                if data is _END:
                    return
                await self.link.send(data)
            finally:
                self._outbox.task_done()

    async def _reader(self) -> None:
        engine = self.engine
        while not self._ended:
            await self._room.wait()  # back-pressure: at most INBOX_MESSAGES ents waiting to be stored
            frame = await self.link.receive()
            self.info.last_seen = wall_ms()
            message, actions = engine.parse(frame, _now())
            self._dispatch(actions)
            if message is None:
                continue
            log.debug("recv peer=%s %s", self.peer_did[-6:], message.T)
            ledgers, follow = engine.lookup(message)
            facts = await self._facts(ledgers, follow=follow) if ledgers else []
            self._dispatch(engine.receive(message, _now(), facts))
            if engine.pending_jobs >= INBOX_MESSAGES:
                self._room.clear()
            self._account_io()

    async def _server(self) -> None:
        while True:
            action = await self._reads.get()
            if isinstance(action, Serve):
                w = action.want
                rows = await self.store.raw_range(w.ledger, w.author, w.start, w.limit)
                self._dispatch(self.engine.served(w, rows, _now()))
            else:
                rows = await self.store.raw_range(action.ledger, action.author, action.start, 1024)
                self._dispatch(self.engine.tail_read(action.ledger, action.author, rows, _now()))
            if self._outbox.qsize() > OUTBOX_HIGH:
                await self._outbox.join()  # a large answer goes out before the next is read

    async def _verifier(self) -> None:
        # Several messages are checked at once (at most INBOX_MESSAGES: the reader waits beyond),
        # so one decodes while the signatures of another are checked in the worker processes.
        # The engine stores them in arrival order whatever order their checks end in.
        checking: set[asyncio.Task[None]] = set()
        try:
            while True:
                action = await self._verifies.get()
                task = asyncio.create_task(self._verify(action))
                checking.add(task)
                task.add_done_callback(checking.discard)
        finally:
            for task in checking:
                task.cancel()

    async def _verify(self, action: Verify) -> None:
        try:
            checked = await self.verifier.check(action.ents.entries)
        except Exception as exc:  # never leave a job unanswered: the link would wait forever
            log.error("verifying entries failed peer=%s error=%r", self.peer_did, exc)
            self._end(Close(None, "closing"))
            return
        error = checked.refused[0][1] if checked.refused else None
        self._dispatch(self.engine.verified(action.job, checked.entries, error, _now()))

    async def _storer(self) -> None:
        while True:
            batch = [await self._stores.get()]
            while not self._stores.empty() and len(batch) < GROUP_STORES:
                batch.append(self._stores.get_nowait())
            result = await self.store.ingest([e for s in batch for e in s.entries])
            # By identity: the store hands back the very Entry objects it was given, and an id() costs no lookup.
            stored = set(map(id, result.stored))
            self.info.entries_in += len(stored)
            for proof in result.forks:
                log.warning("fork detected peer=%s author=%s seq=%d", self.peer_did, proof.author, proof.seq)
                self.rep.gossip_fork(proof, None)
            refused = [(entry, error) for entry, error in result.refused if error.code != "bad_prev"]
            if refused:  # one line per stored group, however many entries a peer makes us refuse
                entry, error = refused[0]
                log.warning("entries refused by chain rules peer=%s count=%d first=%s code=%s", self.peer_did,
                            len(refused), entry.id, error.code)
            for s in batch:
                self._dispatch(self.engine.stored(s.job, await self._outcome(s.entries, stored, result), _now()))
            if self.progress is not None:
                self.progress(self.engine.received, max(self.engine.expected, self.engine.received))
            if self.engine.pending_jobs < INBOX_MESSAGES:
                self._room.set()
            self._stored_all.set()

    async def _outcome(self, entries: Sequence[Entry], stored: set[int], result: IngestResult) -> StoreResult:
        """One Store's share of a group's IngestResult (`stored`: the id() of each entry stored)."""
        ids = set(map(id, entries)) if result.gaps or result.refused else set()
        gaps = [e.seq for e in result.gaps if id(e) in ids]
        bad_prev = tuple(e.seq for e, err in result.refused if id(e) in ids and err.code == "bad_prev")
        mine = [e for e in entries if id(e) in stored]
        first = entries[0]
        if mine and not gaps:
            head: tuple[int, CID] | None = (mine[-1].seq, mine[-1].id)
        else:
            h = await self.store.head(first.ledger_id, first.header.author)
            head = None if h is None else (h.seq, h.id)
        return StoreResult(head, len(mine), max(gaps) if gaps else None, bad_prev)

    async def _helper(self) -> None:
        while True:
            action = await self._helps.get()
            if isinstance(action, CheckIds):
                forked = []
                for author, seq, their_id in action.suspects:
                    if await self.store.id_at(action.ledger, author, seq) not in (None, their_id):
                        forked.append((author, seq))
                self._dispatch(self.engine.ids_checked(action.ledger, forked, _now()))
            elif isinstance(action, AnswerOwn):
                heads = await self.store.heads_of(self.peer_key)
                self._dispatch(self.engine.own_heads([(h.ledger, h.seq, h.id) for h in heads], _now()))
            else:
                proof = action.proof
                # Only an author with a chain in the ledger: proofs of made-up keys are never stored.
                if await self.store.head(proof.a.ledger_id, proof.a.header.author) is not None and (
                    await self.store.add_fork_proof(proof)
                ):
                    log.warning("fork learned from peer peer=%s author=%s seq=%d", self.peer_did, proof.author,
                                proof.seq)
                    self.rep.gossip_fork(proof, self)

    async def _timer(self) -> None:
        while True:
            deadline = self.engine.next_timer()
            await asyncio.sleep(5.0 if deadline is None else max(0.05, deadline - _now()))
            self._dispatch(self.engine.handle_timer(_now()))

    # ---- facts from the store -------------------------------------------------------

    async def _replicated(self) -> list[CID]:
        return await self.store.replicated(self.me)

    async def _facts(self, ledgers: Sequence[CID], *, follow: bool) -> list[LedgerFacts]:
        if follow:
            for ledger in ledgers:
                if await self.store.follow(ledger):
                    log.info("safe restore: following ledger=%s where we have a chain", ledger)
        replicated = {c.raw for c in await self._replicated()}
        out = []
        for ledger in ledgers:
            genesis = await self.store.genesis(ledger) is not None
            visible = genesis and await self.rep.may_share(ledger, self.peer_did)
            heads = {a: (h.seq, h.id) for a, h in (await self.store.frontier(ledger)).items()}
            out.append(LedgerFacts(ledger, ledger.raw in replicated, genesis, visible, heads))
        return out

    # ---- what the Replicator calls ------------------------------------------------

    def offer(self, entries: Sequence[Entry]) -> None:
        """Entries just stored (by anyone): the engine pushes what the peer lacks."""
        self._dispatch(self.engine.offer(entries, _now()))

    def gossip(self, proof: ForkProof) -> None:
        self._dispatch(self.engine.gossip(proof))

    def refetch(self, ledger: CID, author: bytes, seq: int) -> bool:
        """Ask the peer for an entry found damaged here, if the ledger is shared on this link; whether this call
        asked it (the engine asks once per link: later calls say False)."""
        key = (ledger.raw, author, seq)
        before = key in self.engine.refetched
        self._dispatch(self.engine.refetch(ledger, author, seq, _now()))
        return not before and key in self.engine.refetched

    async def reconsider(self, ledgers: Sequence[CID]) -> None:
        """Who may see `ledgers` changed (a member admitted, a genesis stored, a ledger followed)."""
        facts = await self._facts(ledgers, follow=False)
        self._dispatch(self.engine.reconsider(facts, _now()))

    def _account_io(self) -> None:
        self.info.bytes_in = self.link.bytes_in
        self.info.bytes_out = self.link.bytes_out


def _now() -> float:
    return time.monotonic()
