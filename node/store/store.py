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
are written together in a later transaction, one fsync for each group
(node/store/appends.py).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiosqlite

from node.store import transactions as tx
from node.store.appends import AppendPipeline
from node.store.checks import StoreChecks
from node.store.rows import IngestResult, Invitation, Quarantined, Snapshot
from node.store.schema import BUSY_TIMEOUT_MS, open_writer
from protocol import CID, Entry, ForkProof, SigningKey
from protocol.writes import AppendRequest

log = logging.getLogger(__name__)

def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Store(StoreChecks):
    """Async access to one store file. Open with `await Store.open(path)`.

    Two connections: one writes (local appends: node/store/appends.py; each other write transaction is in
    node/store/transactions.py), one reads (`StoreReader`, node/store/reads.py; the checks of the stored bytes,
    `StoreChecks`, node/store/checks.py), so a read never sees a transaction in flight nor waits behind one (WAL
    allows both).
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
        self._appends = AppendPipeline(writer, key, clock_ms, write_thread, sign_thread, self._announce)
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
        await self._appends.finish()
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
        return await self._appends.append(requests)

    async def _granted(self, request: AppendRequest) -> AppendRequest:
        """`request` naming its key's authorization, when it is the key's first entry in the ledger."""
        assert self.grant_for is not None and self._key is not None
        if request.ledger is None or await self.head(request.ledger, self._key.public_key) is not None:
            return request
        grant = await self.grant_for(request.ledger)
        return request if grant is None else replace(request, body={**request.body, "grant": grant})

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

