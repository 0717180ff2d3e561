"""The node's durable store: one SQLite file in WAL mode, synchronous=FULL.

Each entry's exact received bytes (header and payload) are kept; every other
column is an index derived from them and `verify` re-derives and compares it.
A transaction commits only after SQLite has fsync'ed the WAL, so an id the
node printed or returned survives kill -9 and power loss, and a crash mid-write
leaves nothing half-written.

Writes go through one plain sqlite3 connection owned by one writer thread,
so a whole transaction (a group of appends, a batch of ingested entries) is a
single hop to that thread and runs while the event loop goes on; reads use an
aiosqlite connection of their own. Local appends are group-committed and
pipelined: while one group commits, the next is signed (on a signer thread)
and the one after has its payloads encoded, and appends that arrive meanwhile
are written together in a later transaction, one fsync for each group.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, NamedTuple

import aiosqlite

from node.store import transactions as tx
from node.store.reads import StoreReader
from node.store.rows import IngestResult, Invitation, Quarantined, Snapshot
from node.store.schema import BUSY_TIMEOUT_MS, open_writer
from protocol import CID, ChainHead, Entry, ForkProof, LocalError, Payload, SigningKey, TallyError
from protocol.writes import AppendRequest

log = logging.getLogger(__name__)

GROUP_MAX: Final = 1000  # appends per transaction
#: A group this small with nothing in flight goes to the writer in one hop (a lone append: no hops to add to its
#: fsync); a larger one starts the pipeline, so the group after it is signed while it commits.
DIRECT_MAX: Final = 64


@dataclass(slots=True)
class _Pending:
    """One caller's batch of appends (at most GROUP_MAX): its results come together, each an entry or an error."""

    requests: list[AppendRequest]
    future: asyncio.Future[list[Entry | TallyError]] = field(repr=False)


class _Staged(NamedTuple):
    """A group taken from the queue, its payloads being made on a pool thread."""

    group: list[_Pending]
    requests: list[AppendRequest]
    payloads: asyncio.Future[list[Payload | TallyError]]


@dataclass(slots=True)
class _Commit:
    """A signed group in (or queued for) its transaction on the writer thread."""

    number: int
    group: list[_Pending]
    requests: list[AppendRequest]
    future: asyncio.Future[tx.Committed] = field(repr=False)
    direct: bool = False  # built and signed in its transaction: the heads it leaves are known once it commits


def _fail(p: _Pending, exc: Exception) -> None:
    if not p.future.done():
        log.error("append failed: %s", exc)
        p.future.set_exception(exc)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Store(StoreReader):
    """Async access to one store file. Open with `await Store.open(path)`.

    Two connections: one writes (appends, ingest; each write transaction is in node/store/tx.py),
    one reads (`StoreReader`, node/store/reads.py), so a read never sees a transaction in flight nor waits
    behind one (WAL allows both).
    """

    def __init__(
        self, writer: sqlite3.Connection, reader: aiosqlite.Connection, path: Path, key: SigningKey | None,
        clock_ms: Callable[[], int], write_thread: ThreadPoolExecutor, sign_thread: ThreadPoolExecutor,
    ) -> None:
        super().__init__(reader, path)
        self._wdb = writer  # used only on write_thread
        self._wx = write_thread
        self._key = key
        self._clock_ms = clock_ms
        self._sx = sign_thread
        self._queue: deque[_Pending] = deque()
        self._writer: asyncio.Task[None] | None = None
        #: The head each of this key's chains (by ledger) will have once every group signed so far commits: the
        #: next group is signed on it, ahead of its transaction (which checks it). Absent: read under the lock.
        self._heads: dict[bytes, ChainHead] = {}
        self._signed_by: dict[bytes, int] = {}  # the latest group signed on each chain, by number
        self._number = 0  # groups signed so far
        self._listeners: list[Callable[[Sequence[Entry]], None]] = []
        #: For a key that writes as another identity (a device, a recovered key; SPEC.md §19): the entry its
        #: first entry in a ledger names as `grant` (node/store/grants.py sets it)
        self.grant_for: Callable[[CID], Awaitable[CID | None]] | None = None

    @property
    def public_key(self) -> bytes | None:
        """The public key of the key that signs this store's appends (None: a read-only store)."""
        return None if self._key is None else self._key.public_key

    def on_new_entries(self, listener: Callable[[Sequence[Entry]], None]) -> Callable[[], None]:
        """Call `listener` with every batch of newly committed entries (local or
        ingested), on the event loop, in commit order. Returns an unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _announce(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        for listener in list(self._listeners):
            try:
                listener(entries)
            except Exception:  # a listener's bug must not fail a commit already made
                log.exception("new-entries listener failed")

    @classmethod
    async def open(
        cls, path: Path, *, key: SigningKey | None = None, clock_ms: Callable[[], int] | None = None
    ) -> Store:
        """Open (creating and migrating if needed). `key` signs local appends;
        `clock_ms` gives the wall clock in ms (the node's)."""
        loop = asyncio.get_running_loop()
        wx = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        try:
            writer = await loop.run_in_executor(wx, open_writer, path)
        except BaseException:
            wx.shutdown(wait=False)
            raise
        try:
            reader = await aiosqlite.connect(path, isolation_level=None)
            await reader.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await reader.execute("PRAGMA query_only = ON")
        except BaseException:
            await loop.run_in_executor(wx, writer.close)
            wx.shutdown(wait=False)
            raise
        sx = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-signer")
        return cls(writer, reader, path, key, clock_ms or wall_clock_ms, wx, sx)

    async def close(self) -> None:
        if self._writer is not None:
            await asyncio.shield(self._writer)
        await self._read.close()
        await asyncio.get_running_loop().run_in_executor(self._wx, self._wdb.close)
        self._wx.shutdown(wait=True)
        self._sx.shutdown(wait=True)

    async def _in_writer(self, func: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._wx, func, *args)

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # ---- local appends -------------------------------------------------

    async def append(self, request: AppendRequest) -> Entry:
        """Append one local entry; returns once it is durably committed."""
        return (await self.append_batch([request]))[0]

    async def append_batch(self, requests: Sequence[AppendRequest]) -> list[Entry]:
        """Append local entries in order; returns once all are durably committed.

        Requests are group-committed with whatever else is queued, at most
        GROUP_MAX to a transaction. A failed request raises; those before it
        in the list that succeeded stay committed.
        """
        if self.grant_for is not None and self._key is not None:
            requests = [await self._granted(r) for r in requests]
        loop = asyncio.get_running_loop()
        # One future per GROUP_MAX requests, not one per request: a bulk import makes few.
        pendings = [_Pending(list(requests[i : i + GROUP_MAX]), loop.create_future())
                    for i in range(0, len(requests), GROUP_MAX)]
        self._queue.extend(pendings)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        made: list[Entry] = []
        for p in pendings:
            for result in await p.future:
                if not isinstance(result, Entry):
                    raise result
                made.append(result)
        return made

    async def _granted(self, request: AppendRequest) -> AppendRequest:
        """`request` naming its key's authorization, when it is the key's first entry in the ledger."""
        assert self.grant_for is not None and self._key is not None
        if request.ledger is None or await self.head(request.ledger, self._key.public_key) is not None:
            return request
        grant = await self.grant_for(request.ledger)
        return request if grant is None else replace(request, body={**request.body, "grant": grant})

    def _take_group(self) -> list[_Pending]:
        """Queued appends for one transaction: whole batches, at most GROUP_MAX requests (at least one batch)."""
        group: list[_Pending] = []
        size = 0
        while self._queue and (not group or size + len(self._queue[0].requests) <= GROUP_MAX):
            p = self._queue.popleft()
            if not p.future.done():  # its caller left before it was signed: nothing of it is made
                group.append(p)
                size += len(p.requests)
        return group

    async def _drain(self) -> None:
        """Commit queued appends, up to GROUP_MAX per transaction, until none are left.

        A pipeline of three threads: while the writer commits group N, the signer builds and signs group N+1 on
        the chain heads group N will leave, and a pool thread encodes group N+2's payloads (libsodium, hashing and
        SQLite's fsync release the GIL, so they overlap). Each group's transaction reads its chains' heads under
        the write lock and builds again what was signed on a head that turned out otherwise, so no other process
        can take a seq meanwhile. A small group that finds nothing in flight to overlap with (a lone append) is
        built, signed and committed in one hop to the writer, under the write lock, and the groups after it are
        signed once it has committed. A group's callers hear of it only once it is committed
        (one future per batch); the event loop stays free throughout.
        """
        loop = asyncio.get_running_loop()
        staged: deque[_Staged] = deque()  # groups taken, their payloads being made
        commits: deque[_Commit] = deque()
        while True:
            while commits and commits[0].future.done():
                self._settle(commits.popleft())
            while self._queue and len(staged) + len(commits) < 3:
                group = self._take_group()
                if not group:
                    continue
                if self._key is None:
                    for p in group:
                        _fail(p, LocalError("no_identity", "this store was opened without a signing key"))
                    continue
                requests = [r for p in group for r in p.requests]
                if not staged and not commits and len(requests) <= DIRECT_MAX:
                    number = self._signing(requests)
                    unsigned = tx.Signed([None] * len(requests), {}, {})
                    commits.append(_Commit(number, group, requests, loop.run_in_executor(
                        self._wx, tx.commit_group, self._wdb, self._key, requests, unsigned, self._clock_ms()), True))
                    continue
                staged.append(_Staged(group, requests, loop.run_in_executor(None, tx.payloads_of, requests)))
            # sign the next group while at most one commits, once the heads the groups before leave are known
            if staged and len(commits) < 2 and not any(c.direct for c in commits):
                assert self._key is not None
                group, requests, payloads = staged.popleft()
                try:
                    signed = await loop.run_in_executor(self._sx, tx.sign_ahead, self._key, requests,
                                                        await payloads, dict(self._heads))
                except Exception as exc:  # not a TallyError (those are per request): a bug, or memory
                    for p in group:
                        _fail(p, exc)
                    continue
                number = self._signing(requests)
                self._heads.update(signed.after)  # what the next group is built on
                commits.append(_Commit(number, group, requests, loop.run_in_executor(
                    self._wx, tx.commit_group, self._wdb, self._key, requests, signed, self._clock_ms())))
                continue
            if not commits:
                return
            await asyncio.wait([commits[0].future])

    def _signing(self, requests: list[AppendRequest]) -> int:
        """Number the next group to be signed, as the latest signed on each chain it writes to."""
        self._number += 1
        for lk in {r.ledger.raw for r in requests if r.ledger is not None}:
            self._signed_by[lk] = self._number
        return self._number

    def _settle(self, commit: _Commit) -> None:
        """Hand a committed (or failed) group's results to its callers, and learn its chains' heads."""
        touched = {r.ledger.raw for r in commit.requests if r.ledger is not None}
        try:
            done: tx.Committed = commit.future.result()
        except Exception as exc:
            for lk in touched:  # what was signed on this group's heads is built again under the lock
                self._heads.pop(lk, None)
            for p in commit.group:
                _fail(p, exc)
            return
        for lk in touched | done.heads.keys():
            if lk in done.stale:
                self._heads.pop(lk, None)
            if self._signed_by.get(lk, commit.number) == commit.number:  # no later group signed on it yet
                head = done.heads.get(lk)
                if head is None:
                    self._heads.pop(lk, None)
                else:
                    self._heads[lk] = head
        at = 0
        for p in commit.group:
            results = done.results[at : at + len(p.requests)]
            at += len(p.requests)
            if not p.future.done():  # else its caller was cancelled while the group committed: the entries stand
                p.future.set_result(results)
        self._announce([r for r in done.results if isinstance(r, Entry)])

    # ---- entries from elsewhere ------------------------------------------

    async def ingest(self, entries: Sequence[Entry]) -> IngestResult:
        """Store verified entries (signatures already checked) that extend their chains.

        Entries must come in seq order per chain. Each is a duplicate, the next
        link (stored), a fork (proof stored, entry not), a gap (returned, not
        stored) or refused by the chain rules. One transaction, in the writer thread.
        """
        result: IngestResult = await self._in_writer(tx.ingest, self._wdb, list(entries), self._clock_ms())
        self._announce(result.stored)
        return result

    async def add_fork_proof(self, proof: ForkProof) -> bool:
        """Keep a (verified) fork proof learned from a peer; False if one was known for that seq."""
        added: bool = await self._in_writer(tx.add_fork, self._wdb, proof, self._clock_ms())
        return added

    async def erase_payloads(self, ids: Sequence[CID]) -> int:
        """Drop the payload bytes of entries a valid ledger.erase erased (SPEC.md §20); how many were still held.

        The writer connection runs with `secure_delete`, so SQLite overwrites the freed cell and overflow pages
        with zeros; the WAL is then checkpointed and truncated, so no older copy of those pages stays in it."""
        dropped: int = await self._in_writer(tx.erase_payloads, self._wdb, [c for c in ids])
        return dropped

    # ---- invitations (node/http/invites.py) ---------------------------------

    async def add_invitation(self, invitation: Invitation) -> None:
        await self._in_writer(tx.add_invitation, self._wdb, invitation)

    async def take_invitation(self, digest: bytes, now: int) -> Invitation | None:
        """Use up one redemption of a live invitation; None when it is unknown, revoked, expired or used up."""
        taken: Invitation | None = await self._in_writer(tx.take_invitation, self._wdb, digest, now)
        return taken

    async def give_back_invitation(self, digest: bytes) -> None:
        """A redemption that wrote nothing (the state refused it) does not count."""
        await self._in_writer(tx.write, self._wdb, "UPDATE invitations SET uses = uses + 1 WHERE hash = ?", (digest,))

    async def add_redemption(self, digest: bytes, agent: str, entry: CID) -> None:
        await self._in_writer(tx.write, self._wdb, "INSERT OR IGNORE INTO redemptions (hash, agent, entry, at) "
                              "VALUES (?, ?, ?, ?)", (digest, agent, entry.raw, self._clock_ms()))

    async def revoke_invitation(self, prefix: str) -> Invitation | None:
        """Revoke the live invitation whose id (the hex of its hash) starts with `prefix`; None if none or several."""
        live = [i for i in await self.invitations() if i.hash.hex().startswith(prefix.lower()) and i.revoked is None]
        if len(live) != 1:
            return None
        await self._in_writer(tx.write, self._wdb, "UPDATE invitations SET revoked = ? WHERE hash = ?",
                              (self._clock_ms(), live[0].hash))
        return live[0]

    async def add_invited_peer(self, url: str, ledger: CID) -> None:
        await self._in_writer(tx.write, self._wdb, "INSERT OR REPLACE INTO invited_peers (url, ledger, since) "
                              "VALUES (?, ?, ?)", (url, ledger.raw, self._clock_ms()))

    # ---- follows, repairs, snapshots ---------------------------------------

    async def follow(self, ledger: CID) -> bool:
        """Replicate `ledger` from now on; False if it was followed already."""
        added: bool = await self._in_writer(tx.follow, self._wdb, ledger, self._clock_ms())
        return added

    async def repair(self, entry: Entry) -> bool:
        """Put back a good copy of a stored entry whose bytes were damaged (in place, or quarantined): `entry` must
        be fully verified by the caller (its id is the hash of its header, so any peer's copy can be checked).
        False if no entry with its id is stored or quarantined here."""
        repaired: bool = await self._in_writer(tx.repair, self._wdb, entry)
        if repaired:
            self.damaged.discard(entry.id.raw)
            self._announce([entry])
        return repaired

    async def quarantine(self, entry_id: bytes) -> Quarantined | None:
        """Move a stored entry whose bytes are damaged to the quarantine table (kept for inspection, not read as
        part of its ledger) until a good copy comes (`ingest`, `repair`). None if its bytes are sound after all
        (repaired meanwhile) or it is not stored."""
        moved: Quarantined | None = await self._in_writer(tx.quarantine, self._wdb, entry_id, self._clock_ms())
        if moved is not None:
            log.warning("damaged entry quarantined", extra={"entry": str(moved.id), "ledger": str(moved.ledger),
                                                            "seq": moved.seq, "store": str(self.path)})
        return moved

    async def keep_snapshot(self, ledger: CID, snapshot: Snapshot) -> bool:
        """Keep `snapshot` (its coverage's rowids aside) if it covers exactly the ledger's rows stored now; False
        if not. Checked in the writing transaction, so no entry committed meanwhile slips past it."""
        kept: bool = await self._in_writer(tx.keep_snapshot, self._wdb, ledger.raw, snapshot, self._clock_ms())
        return kept

    async def keep_fold_part(self, ledger: CID, token: bytes, part: int, data: bytes) -> None:
        """Keep one part of a snapshot's fold being saved (`keep_snapshot` then names them all, by `token`)."""
        await self._in_writer(tx.keep_fold_part, self._wdb, ledger.raw, token, part, data)

