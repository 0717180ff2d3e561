"""The node's durable store: one SQLite file in WAL mode, synchronous=FULL.

Each entry's exact received bytes (header and payload) are kept; every other
column is an index derived from them and `verify` re-derives and compares it.
A transaction commits only after SQLite has fsync'ed the WAL, so an id the
node printed or returned survives kill -9 and power loss, and a crash mid-write
leaves nothing half-written.

Writes go through one plain sqlite3 connection owned by one writer thread,
so a whole transaction (a group of appends, a batch of ingested entries) is a
single hop to that thread and runs while the event loop goes on; reads use an
aiosqlite connection of their own. Local appends are group-committed: appends
that arrive while a commit is in flight are signed meanwhile and written
together in the next transaction, one fsync for all.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sqlite3
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import aiosqlite

from protocol import (
    CID,
    GENESIS_KIND,
    ChainHead,
    Entry,
    ForkProof,
    InvalidData,
    LocalError,
    SigningKey,
    TallyError,
    check_next,
    create_entry,
    decode_entry,
    decode_stored_entry,
)
from protocol.identity import did_from_public_key
from protocol.keys import founding_identity
from protocol.writes import AppendRequest

log = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 4
BUSY_TIMEOUT_MS: Final = 30_000
GROUP_MAX: Final = 1000  # appends per transaction
LOG_CHUNK_ROWS: Final = 512  # rows `log` fetches per hop to the reader thread (aiosqlite's default: 64)

# Each migration takes the schema from version i to i + 1. Never edit one that shipped.
MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE entries (
        idh      INTEGER NOT NULL,       -- first 8 bytes of the id's digest, signed: the id index
        id       BLOB NOT NULL,          -- CID of the header block (unique: it fixes ledger, author, seq)
        ledger   BLOB NOT NULL,          -- CID of the ledger (a genesis entry's own id)
        author   BLOB NOT NULL,          -- 32-byte Ed25519 public key
        seq      INTEGER NOT NULL,
        ts       INTEGER NOT NULL,
        kind     TEXT NOT NULL,
        header   BLOB NOT NULL,          -- exact header bytes
        payload  BLOB,                   -- exact payload bytes; NULL once erased
        received INTEGER NOT NULL,       -- local clock, ms, when stored
        UNIQUE (ledger, author, seq)
    );
    CREATE INDEX entries_idh ON entries (idh);
    CREATE INDEX entries_kind ON entries (kind, ledger);
    CREATE TABLE follows (
        ledger BLOB PRIMARY KEY,         -- a ledger this node replicates though it did not found it
        since  INTEGER NOT NULL
    );
    CREATE TABLE forks (
        ledger BLOB NOT NULL,
        author BLOB NOT NULL,
        seq    INTEGER NOT NULL,
        proof  BLOB NOT NULL,            -- encoded ForkProof
        found  INTEGER NOT NULL,
        PRIMARY KEY (ledger, author, seq)
    );
    """,
    """
    CREATE TABLE quarantine (            -- stored entries whose bytes were found damaged (SPEC.md §10)
        idh      INTEGER NOT NULL,       -- the columns of `entries`, as they were
        id       BLOB NOT NULL,
        ledger   BLOB NOT NULL,
        author   BLOB NOT NULL,
        seq      INTEGER NOT NULL,
        ts       INTEGER NOT NULL,
        kind     TEXT NOT NULL,
        header   BLOB NOT NULL,
        payload  BLOB,
        received INTEGER NOT NULL,
        found    INTEGER NOT NULL,       -- local clock, ms, when moved here
        UNIQUE (ledger, author, seq)
    );
    CREATE INDEX quarantine_idh ON quarantine (idh);
    """,
    """
    CREATE TABLE snapshots (
        ledger   BLOB PRIMARY KEY,       -- a ledger's state kept between runs (node/store/snapshots.py)
        format   TEXT NOT NULL,          -- the encoding and the Tally version that wrote it
        entries  INTEGER NOT NULL,       -- the ledger's rows it covers: their count,
        rowids   INTEGER NOT NULL,       -- the sum of their rowids,
        forks    BLOB NOT NULL,          -- and the fork points it was folded with
        ids      BLOB NOT NULL,          -- a fingerprint of the entry ids in the state
        digest   BLOB NOT NULL,          -- the state's digest
        checksum BLOB NOT NULL,          -- sha2-256 of `state`
        state    BLOB NOT NULL,
        made     INTEGER NOT NULL
    );
    """,
    """
    CREATE TABLE invitations (           -- invitations this node issued (README "Invite a member"): the secret's hash
        hash     BLOB PRIMARY KEY,       -- sha2-256 of the secret in the link; the secret itself is never stored
        ledger   BLOB NOT NULL,
        uses     INTEGER NOT NULL,       -- redemptions left
        expires  INTEGER NOT NULL,       -- ms since the epoch
        created  INTEGER NOT NULL,
        revoked  INTEGER                 -- ms, when revoked
    );
    CREATE TABLE redemptions (           -- who redeemed an invitation, and the sponsorship written for them
        hash     BLOB NOT NULL,
        agent    TEXT NOT NULL,
        entry    BLOB NOT NULL,
        at       INTEGER NOT NULL,
        PRIMARY KEY (hash, agent)
    );
    CREATE TABLE invited_peers (         -- the inviters' nodes this node joined ledgers through: dialed at start
        url      TEXT PRIMARY KEY,
        ledger   BLOB NOT NULL,
        since    INTEGER NOT NULL
    );
    """,
)


@dataclass(frozen=True, slots=True)
class Invitation:
    """An invitation this node issued: its secret's hash, the ledger, redemptions left, when it expires (ms)."""

    hash: bytes
    ledger: CID
    uses: int
    expires: int
    created: int
    revoked: int | None = None


_INSERT: Final = (
    "INSERT INTO entries (idh, id, ledger, author, seq, ts, kind, header, payload, received)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# A chain's head counts a quarantined entry (its id and ts are kept): the next local entry links it, never forks it.
_HEAD: Final = (
    "SELECT seq, id, ts FROM (SELECT seq, id, ts FROM entries WHERE ledger = ?1 AND author = ?2"
    " UNION ALL SELECT seq, id, ts FROM quarantine WHERE ledger = ?1 AND author = ?2) ORDER BY seq DESC LIMIT 1"
)
_COLUMNS: Final = "idh, id, ledger, author, seq, ts, kind, header, payload, received"


@dataclass(frozen=True, slots=True)
class LedgerInfo:
    id: CID
    name: str
    visibility: str
    founder: str
    created: int
    entries: int

    @classmethod
    def of(cls, genesis: Entry, entries: int) -> LedgerInfo:
        """A ledger as its genesis describes it, holding `entries` entries here."""
        body = genesis.body or {}
        return cls(id=genesis.id, name=str(body.get("name", "")), visibility=str(body.get("visibility", "members")),
                   # the identity a later key of it founded the ledger as (SPEC.md §19.9), else the genesis's author
                   founder=founding_identity(body, genesis.header.author) or genesis.author,
                   created=genesis.header.ts, entries=entries)


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What became of a batch of verified entries offered to the store."""

    stored: tuple[Entry, ...] = ()
    duplicates: int = 0
    forks: tuple[ForkProof, ...] = ()
    gaps: tuple[Entry, ...] = ()  # later than the chain's next seq: wait for the gap
    refused: tuple[tuple[Entry, InvalidData], ...] = ()


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding of `Store.verify`."""

    entry_id: str
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A stored entry whose bytes were found damaged, moved out of its ledger until a good copy comes."""

    id: CID
    ledger: CID
    author: bytes
    seq: int
    found: int


@dataclass(frozen=True, slots=True)
class Coverage:
    """What of a ledger's stored rows a snapshot covers. Rows are only ever added (a repair drops the
    ledger's snapshot), so any addition changes their count and rowid sum; fork points change what counts."""

    entries: int
    rowids: int
    forks: bytes  # each forked author's key and lowest forked seq (`fork_points`)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A row of the snapshots table (node/store/snapshots.py makes and checks them)."""

    format: str
    coverage: Coverage
    ids: bytes
    digest: bytes
    checksum: bytes
    state: bytes = field(repr=False)


def fork_points(forks: dict[bytes, int]) -> bytes:
    return b"".join(author + seq.to_bytes(8, "big") for author, seq in sorted(forks.items()))


@dataclass(slots=True)
class _Pending:
    request: AppendRequest
    future: asyncio.Future[Entry] = field(repr=False)


def _fail(p: _Pending, exc: Exception) -> None:
    if not p.future.done():
        log.error("append failed: %s", exc)
        p.future.set_exception(exc)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Store:
    """Async access to one store file. Open with `await Store.open(path)`.

    Two connections: one writes (appends, ingest), one reads, so a read never
    sees a transaction in flight nor waits behind one (WAL allows both).
    """

    def __init__(
        self, writer: sqlite3.Connection, reader: aiosqlite.Connection, path: Path, key: SigningKey | None,
        clock_ms: Callable[[], int], write_thread: ThreadPoolExecutor,
    ) -> None:
        self._wdb = writer  # used only on write_thread
        self._wx = write_thread
        self._read = reader
        self.path = path
        self.damaged: set[bytes] = set()  # ids of stored entries whose bytes were found damaged on reading
        self._key = key
        self._clock_ms = clock_ms
        self._queue: deque[_Pending] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[Sequence[Entry]], None]] = []
        self._damage_listeners: list[Callable[[bytes], None]] = []
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

    def on_damaged(self, listener: Callable[[bytes], None]) -> Callable[[], None]:
        """Call `listener` with the id of each stored entry found damaged on reading (its bytes no longer hash to
        its id, or its payload differs from its header), on the event loop. Returns an unsubscribe function."""
        self._damage_listeners.append(listener)
        return lambda: self._damage_listeners.remove(listener)

    def _found_damaged(self, rid: bytes, detail: str) -> None:
        if rid in self.damaged:
            return
        self.damaged.add(rid)
        log.error("damaged entry left out", extra={"entry": _label(rid), "detail": detail, "store": str(self.path)})
        for listener in list(self._damage_listeners):
            try:
                listener(rid)
            except Exception:  # a listener's bug must not fail the read that found the damage
                log.exception("damaged-entry listener failed")

    @classmethod
    async def open(
        cls, path: Path, *, key: SigningKey | None = None, clock_ms: Callable[[], int] | None = None
    ) -> Store:
        """Open (creating and migrating if needed). `key` signs local appends;
        `clock_ms` gives the wall clock in ms (the node's)."""
        loop = asyncio.get_running_loop()
        wx = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        try:
            writer = await loop.run_in_executor(wx, _open_writer, path)
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
        return cls(writer, reader, path, key, clock_ms or wall_clock_ms, wx)

    async def close(self) -> None:
        if self._writer is not None:
            await asyncio.shield(self._writer)
        await self._read.close()
        await asyncio.get_running_loop().run_in_executor(self._wx, self._wdb.close)
        self._wx.shutdown(wait=True)

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
        pendings = [_Pending(r, loop.create_future()) for r in requests]
        self._queue.extend(pendings)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return [await p.future for p in pendings]

    async def _granted(self, request: AppendRequest) -> AppendRequest:
        """`request` naming its key's authorization, when it is the key's first entry in the ledger."""
        assert self.grant_for is not None and self._key is not None
        if request.ledger is None or await self.head(request.ledger, self._key.public_key) is not None:
            return request
        grant = await self.grant_for(request.ledger)
        return request if grant is None else replace(request, body={**request.body, "grant": grant})

    async def _drain(self) -> None:
        """Commit queued appends, up to GROUP_MAX per transaction, until none are left.

        Each group is built, signed and inserted in the writer thread under one
        write transaction: heads are read under the lock, so no other process
        can take a seq meanwhile, and the event loop stays free (libsodium and
        SQLite release the GIL). Appends that arrive meanwhile form the next group.
        """
        while self._queue:
            group = [self._queue.popleft() for _ in range(min(GROUP_MAX, len(self._queue)))]
            if self._key is None:
                for p in group:
                    _fail(p, LocalError("no_identity", "this store was opened without a signing key"))
                continue
            await self._append_locked(self._key, group)

    async def _append_locked(self, key: SigningKey, group: list[_Pending]) -> None:
        """Read heads, sign and insert in one write transaction, in the writer thread."""
        live = [p for p in group if not p.future.done()]
        try:
            results = await self._in_writer(
                _append_in_transaction, self._wdb, key, [p.request for p in live], self._clock_ms()
            )
        except Exception as exc:
            for p in live:
                _fail(p, exc)
            return
        for p, result in zip(live, results, strict=True):
            if p.future.done():
                continue  # its caller was cancelled while the group committed: the entry stands
            if isinstance(result, Entry):
                p.future.set_result(result)
            else:
                p.future.set_exception(result)
        self._announce([r for r in results if isinstance(r, Entry)])

    # ---- entries from elsewhere ------------------------------------------

    async def ingest(self, entries: Sequence[Entry]) -> IngestResult:
        """Store verified entries (signatures already checked) that extend their chains.

        Entries must come in seq order per chain. Each is a duplicate, the next
        link (stored), a fork (proof stored, entry not), a gap (returned, not
        stored) or refused by the chain rules. One transaction, in the writer thread.
        """
        result: IngestResult = await self._in_writer(_ingest, self._wdb, list(entries), self._clock_ms())
        self._announce(result.stored)
        return result

    async def add_fork_proof(self, proof: ForkProof) -> bool:
        """Keep a (verified) fork proof learned from a peer; False if one was known for that seq."""
        added: bool = await self._in_writer(_add_fork, self._wdb, proof, self._clock_ms())
        return added

    async def erase_payloads(self, ids: Sequence[CID]) -> int:
        """Drop the payload bytes of entries a valid ledger.erase erased (SPEC.md §20); how many were still held.

        The writer connection runs with `secure_delete`, so SQLite overwrites the freed cell and overflow pages
        with zeros; the WAL is then checkpointed and truncated, so no older copy of those pages stays in it."""
        dropped: int = await self._in_writer(_erase_payloads, self._wdb, [c for c in ids])
        return dropped

    # ---- invitations (node/http/invites.py) ---------------------------------

    async def add_invitation(self, invitation: Invitation) -> None:
        await self._in_writer(_add_invitation, self._wdb, invitation)

    async def invitations(self) -> list[Invitation]:
        rows = await self._rows("SELECT hash, ledger, uses, expires, created, revoked FROM invitations "
                                "ORDER BY created, hash")
        return [Invitation(h, CID(ledger), uses, expires, created, revoked) for h, ledger, uses, expires, created,
                revoked in rows]

    async def take_invitation(self, digest: bytes, now: int) -> Invitation | None:
        """Use up one redemption of a live invitation; None when it is unknown, revoked, expired or used up."""
        taken: Invitation | None = await self._in_writer(_take_invitation, self._wdb, digest, now)
        return taken

    async def give_back_invitation(self, digest: bytes) -> None:
        """A redemption that wrote nothing (the state refused it) does not count."""
        await self._in_writer(_write, self._wdb, "UPDATE invitations SET uses = uses + 1 WHERE hash = ?", (digest,))

    async def redeemed(self, digest: bytes, agent: str) -> CID | None:
        """The sponsorship written when `agent` redeemed the invitation, if they did."""
        row = await self._row("SELECT entry FROM redemptions WHERE hash = ? AND agent = ?", (digest, agent))
        return None if row is None else CID(row[0])

    async def add_redemption(self, digest: bytes, agent: str, entry: CID) -> None:
        await self._in_writer(_write, self._wdb, "INSERT OR IGNORE INTO redemptions (hash, agent, entry, at) "
                              "VALUES (?, ?, ?, ?)", (digest, agent, entry.raw, self._clock_ms()))

    async def revoke_invitation(self, prefix: str) -> Invitation | None:
        """Revoke the live invitation whose id (the hex of its hash) starts with `prefix`; None if none or several."""
        live = [i for i in await self.invitations() if i.hash.hex().startswith(prefix.lower()) and i.revoked is None]
        if len(live) != 1:
            return None
        await self._in_writer(_write, self._wdb, "UPDATE invitations SET revoked = ? WHERE hash = ?",
                              (self._clock_ms(), live[0].hash))
        return live[0]

    async def add_invited_peer(self, url: str, ledger: CID) -> None:
        await self._in_writer(_write, self._wdb, "INSERT OR REPLACE INTO invited_peers (url, ledger, since) "
                              "VALUES (?, ?, ?)", (url, ledger.raw, self._clock_ms()))

    async def invited_peers(self) -> list[str]:
        return [url for (url,) in await self._rows("SELECT url FROM invited_peers ORDER BY since, url")]

    async def follow(self, ledger: CID) -> bool:
        """Replicate `ledger` from now on; False if it was followed already."""
        added: bool = await self._in_writer(_follow, self._wdb, ledger, self._clock_ms())
        return added

    async def repair(self, entry: Entry) -> bool:
        """Put back a good copy of a stored entry whose bytes were damaged (in place, or quarantined): `entry` must
        be fully verified by the caller (its id is the hash of its header, so any peer's copy can be checked).
        False if no entry with its id is stored or quarantined here."""
        repaired: bool = await self._in_writer(_repair, self._wdb, entry)
        if repaired:
            self.damaged.discard(entry.id.raw)
            self._announce([entry])
        return repaired

    async def quarantine(self, entry_id: bytes) -> Quarantined | None:
        """Move a stored entry whose bytes are damaged to the quarantine table (kept for inspection, not read as
        part of its ledger) until a good copy comes (`ingest`, `repair`). None if its bytes are sound after all
        (repaired meanwhile) or it is not stored."""
        moved: Quarantined | None = await self._in_writer(_quarantine, self._wdb, entry_id, self._clock_ms())
        if moved is not None:
            log.warning("damaged entry quarantined", extra={"entry": str(moved.id), "ledger": str(moved.ledger),
                                                            "seq": moved.seq, "store": str(self.path)})
        return moved

    async def quarantined(self) -> list[Quarantined]:
        rows = await self._rows("SELECT id, ledger, author, seq, found FROM quarantine ORDER BY found, id")
        return [Quarantined(CID(i), CID(led), bytes(a), int(seq), int(f)) for i, led, a, seq, f in rows]

    async def scrub(self, chunk: int = LOG_CHUNK_ROWS, pause_s: float = 0.0) -> AsyncGenerator[bytes, None]:
        """Check every stored entry's bytes against its id, `chunk` rows per read; yields (and reports to
        `on_damaged`) the id of each damaged one. Two hashes per entry (`_sound`): ~5 µs, a ninth of a decode.
        `pause_s` between reads keeps it in the background (the whole file is read)."""
        after = 0
        while True:
            rows = await self._rows(
                "SELECT rowid, id, header, payload FROM entries WHERE rowid > ? ORDER BY rowid LIMIT ?", (after, chunk))
            if not rows:
                return
            if after and pause_s:
                await asyncio.sleep(pause_s)
            for rowid, rid, header, payload in rows:
                after = rowid
                if _sound(rid, header, payload):
                    continue
                try:
                    decode_stored_entry(rid, header, payload)
                    continue  # sound after all (an id of another hash, should one ever be stored)
                except InvalidData as exc:
                    self._found_damaged(bytes(rid), exc.message)
                    yield bytes(rid)

    # ---- snapshots (node/store/snapshots.py) ------------------------------

    async def coverage(self, ledger: CID) -> Coverage:
        """The ledger's stored rows as a snapshot records them (an index range scan: no row is read)."""
        rows = await self._rows(_COVERAGE_SQL, (ledger.raw,))
        forks = await self._rows(_FORK_POINTS_SQL, (ledger.raw,))
        return Coverage(int(rows[0][0]), int(rows[0][1]), fork_points({bytes(a): int(s) for a, s in forks}))

    async def snapshot(self, ledger: CID) -> Snapshot | None:
        row = await self._row("SELECT format, entries, rowids, forks, ids, digest, checksum, state FROM snapshots"
                              " WHERE ledger = ?", (ledger.raw,))
        if row is None:
            return None
        fmt, entries, rowids, forks, ids, digest, checksum, state = row
        return Snapshot(str(fmt), Coverage(int(entries), int(rowids), bytes(forks)), bytes(ids), bytes(digest),
                        bytes(checksum), bytes(state))

    async def keep_snapshot(self, ledger: CID, snapshot: Snapshot) -> bool:
        """Keep `snapshot` (its coverage's rowids aside) if it covers exactly the ledger's rows stored now; False
        if not. Checked in the writing transaction, so no entry committed meanwhile slips past it."""
        kept: bool = await self._in_writer(_keep_snapshot, self._wdb, ledger.raw, snapshot, self._clock_ms())
        return kept

    # ---- queries ---------------------------------------------------------

    async def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """Every row of one read, fetched in one hop to the reader thread, which finishes the
        statement there. A caller cancelled while it waits (a peer left mid-query) thus leaves
        no statement open: one would hold the connection's read snapshot, and the next read,
        whoever makes it, would miss everything committed since."""
        return list(await self._read.execute_fetchall(sql, args))

    async def _row(self, sql: str, args: Sequence[Any] = ()) -> Any:
        rows = await self._rows(sql, args)
        return rows[0] if rows else None

    async def head(self, ledger: CID, author: bytes) -> ChainHead | None:
        """The latest committed entry of a chain, or None."""
        row = await self._row(_HEAD, (ledger.raw, author))
        return None if row is None else ChainHead(author, ledger, row[0], CID(row[1]), row[2])

    async def has_ledger(self, ledger: CID) -> bool:
        row = await self._row("SELECT kind FROM entries WHERE idh = ? AND id = ?", (_idh(ledger), ledger.raw))
        return row is not None and row[0] == GENESIS_KIND

    async def get(self, entry_id: CID) -> Entry | None:
        row = await self._row(
            "SELECT header, payload FROM entries WHERE idh = ? AND id = ?", (_idh(entry_id), entry_id.raw)
        )
        if row is None:
            if await self._row("SELECT 1 FROM quarantine WHERE idh = ? AND id = ?", (_idh(entry_id), entry_id.raw)):
                raise InvalidData("store_corrupt", f"stored entry {entry_id} was damaged and is quarantined until a "
                                  "peer gives a good copy (`tally verify --repair` asks now)")
            return None
        # store_corrupt (not a caller's payload_mismatch) when the stored bytes no longer hash to their id
        try:
            return decode_stored_entry(entry_id.raw, row[0], row[1])
        except InvalidData as exc:
            self._found_damaged(entry_id.raw, exc.message)
            raise

    async def ledgers(self) -> list[LedgerInfo]:
        result = []
        async with self._read.execute(
            "SELECT g.id, g.header, g.payload, (SELECT count(*) FROM entries e WHERE e.ledger = g.id)"
            " FROM entries g WHERE g.kind = ? AND g.ledger = g.id ORDER BY g.ts, g.id",
            (GENESIS_KIND,),
        ) as cur:
            async for rid, header, payload, count in cur:
                try:
                    result.append(LedgerInfo.of(decode_stored_entry(rid, header, payload), count))
                except InvalidData as exc:  # a damaged genesis: left out until a good copy comes
                    self._found_damaged(bytes(rid), exc.message)
        return result

    async def log(self, ledger: CID, author: bytes | None = None) -> AsyncGenerator[Entry, None]:
        """A ledger's entries ordered by author then seq (one chain with `author`).

        Rows decode as stored entries: their bytes hash to what was checked when they
        were stored, so only the hashes are checked again (`decode_stored_entry`).
        """
        args: tuple[bytes, ...]
        if author is None:
            sql, args = _LOG_SQL, (ledger.raw,)
        else:
            sql = "SELECT id, header, payload FROM entries WHERE ledger = ? AND author = ? ORDER BY seq"
            args = (ledger.raw, author)
        async with self._read.execute(sql, args) as cur:
            cur.iter_chunk_size = LOG_CHUNK_ROWS
            async for rid, header, payload in cur:
                try:
                    yield decode_stored_entry(rid, header, payload)
                except InvalidData as exc:  # damaged bytes: left out, so the rest of the ledger stays readable
                    self._found_damaged(bytes(rid), exc.message)

    async def log_page(
        self, ledger: CID, limit: int, *, author: bytes | None = None, after: CID | None = None
    ) -> list[Entry]:
        """Up to `limit` of `log`'s entries, those after the entry `after` (of `ledger`, and of `author` if given).

        A range scan of the (ledger, author, seq) index, so a page costs the
        same at any depth of a big ledger. `unknown_entry` if `after` is not here.
        """
        where = "ledger = ?" if author is None else "ledger = ? AND author = ?"
        args: list[Any] = [ledger.raw] if author is None else [ledger.raw, author]
        if after is not None:
            async with self._read.execute(
                f"SELECT author, seq FROM entries WHERE idh = ? AND id = ? AND {where}", (_idh(after), after.raw, *args)
            ) as cur:
                row = await cur.fetchone()
            if row is None:
                chain = "" if author is None else f" by {did_from_public_key(author)}"
                raise LocalError("unknown_entry", f"no entry {after} of ledger {ledger}{chain} is stored here")
            where += " AND (author, seq) > (?, ?)" if author is None else " AND seq > ?"
            args += [row[0], row[1]] if author is None else [row[1]]
        async with self._read.execute(
            f"SELECT id, header, payload FROM entries WHERE {where} ORDER BY author, seq LIMIT ?", (*args, limit)
        ) as cur:
            rows = await cur.fetchall()
        page = []
        for rid, header, payload in rows:
            try:
                page.append(decode_stored_entry(rid, header, payload))
            except InvalidData as exc:  # damaged: left out, as `log` does
                self._found_damaged(bytes(rid), exc.message)
        return page

    async def forks(self) -> list[ForkProof]:
        rows = await self._rows(_FORKS_SQL)
        return [ForkProof.decode(row[0]) for row in rows]

    async def replicated(self, founder: bytes | None = None) -> list[CID]:
        """Ledgers this node replicates: those it follows, and those `founder` founded."""
        ids: set[bytes] = set()
        ids.update(bytes(row[0]) for row in await self._rows("SELECT ledger FROM follows"))
        if founder is not None:
            ids.update(bytes(row[0]) for row in await self._rows(
                "SELECT id FROM entries WHERE kind = ? AND ledger = id AND author = ?", (GENESIS_KIND, founder)))
        return [CID(raw) for raw in sorted(ids)]

    async def frontier(self, ledger: CID) -> dict[bytes, ChainHead]:
        """The head of every chain in `ledger`, by author public key."""
        rows = await self._rows(
            "SELECT author, seq, id, ts FROM entries e WHERE ledger = ? AND seq ="
            " (SELECT max(seq) FROM entries WHERE ledger = e.ledger AND author = e.author)",
            (ledger.raw,),
        )
        return {bytes(author): ChainHead(bytes(author), ledger, seq, CID(rid), ts) for author, seq, rid, ts in rows}

    async def heads_of(self, author: bytes) -> list[ChainHead]:
        """The head of `author`'s chain in every ledger stored here."""
        rows = await self._rows("SELECT ledger, max(seq) FROM entries WHERE author = ? GROUP BY ledger", (author,))
        heads = []
        for ledger, _ in rows:
            head = await self.head(CID(ledger), author)
            if head is not None:
                heads.append(head)
        return heads

    async def raw_range(
        self, ledger: CID, author: bytes, from_seq: int, limit: int
    ) -> list[tuple[int, bytes, bytes | None]]:
        """Up to `limit` entries of a chain from `from_seq` on, in seq order: (seq, header, payload). The bytes
        are checked against their id on the way out: the run stops before a damaged entry (reported to
        `on_damaged`), which a peer would refuse, and blame us for."""
        rows = await self._rows(
            "SELECT seq, id, header, payload FROM entries WHERE ledger = ? AND author = ? AND seq >= ?"
            " ORDER BY seq LIMIT ?",
            (ledger.raw, author, from_seq, limit),
        )
        out: list[tuple[int, bytes, bytes | None]] = []
        for seq, rid, h, p in rows:
            if not _sound(rid, h, p):
                try:
                    decode_stored_entry(rid, h, p)
                except InvalidData as exc:
                    self._found_damaged(bytes(rid), exc.message)
                    break
            out.append((int(seq), bytes(h), None if p is None else bytes(p)))
        return out

    async def id_at(self, ledger: CID, author: bytes, seq: int) -> CID | None:
        row = await self._row(
            "SELECT id FROM entries WHERE ledger = ? AND author = ? AND seq = ?", (ledger.raw, author, seq)
        )
        return None if row is None else CID(row[0])

    async def genesis(self, ledger: CID) -> Entry | None:
        """The ledger's genesis; None when it is not stored, or damaged (then it is as if not stored: sync
        treats the ledger as one whose genesis it lacks, and fetches it again)."""
        try:
            entry = await self.get(ledger)
        except InvalidData:
            return None
        return entry if entry is not None and entry.is_genesis else None

    async def ledger_size(self, ledger: CID) -> int:
        """How many entries of `ledger` are stored (an index range count)."""
        row = await self._row("SELECT count(*) FROM entries WHERE ledger = ?", (ledger.raw,))
        return int(row[0]) if row else 0

    async def count(self) -> int:
        row = await self._row("SELECT count(*) FROM entries")
        return int(row[0]) if row else 0

    # ---- verification ----------------------------------------------------

    async def verify(self) -> AsyncGenerator[Problem, None]:
        """Re-verify every stored entry from its raw bytes: encoding, signature,
        payload hash, derived columns and chain links; and every fork proof."""
        async with self._read.execute("PRAGMA quick_check") as cur:
            rows = await cur.fetchall()
        if [tuple(r) for r in rows] != [("ok",)]:
            for r in rows:
                yield Problem("-", "store_corrupt", f"sqlite: {r[0]}")
        heads: dict[tuple[bytes, bytes], ChainHead] = {}
        # Quarantined entries are listed, and their chains checked across the hole they leave.
        holes: dict[tuple[bytes, bytes, int], ChainHead] = {}
        for rid, ledger, author, seq, ts in await self._rows("SELECT id, ledger, author, seq, ts FROM quarantine"):
            holes[(bytes(ledger), bytes(author), int(seq))] = ChainHead(bytes(author), CID(ledger), seq, CID(rid), ts)
            yield Problem(_label(rid), "store_corrupt", "damaged: quarantined until a peer gives a good copy")
        async with self._read.execute(
            "SELECT idh, id, ledger, author, seq, ts, kind, header, payload FROM entries ORDER BY ledger, author, seq"
        ) as cur:
            async for row in cur:
                problem, entry = _verify_row(row)
                if problem is not None:
                    yield problem
                    continue
                assert entry is not None
                hk = (entry.ledger_id.raw, entry.header.author)
                prev = heads.get(hk)
                hole = holes.get((*hk, entry.seq - 1))
                if hole is not None and (prev is None or prev.seq < hole.seq):
                    prev = hole
                try:
                    check_next(prev, entry)
                except InvalidData as exc:
                    yield Problem(str(entry.id), exc.code, exc.message)
                heads[hk] = ChainHead.of(entry)
        async with self._read.execute("SELECT ledger, author, seq, proof FROM forks") as cur:
            async for ledger, author, seq, proof in cur:
                try:
                    fp = ForkProof.decode(proof)
                except InvalidData as exc:
                    yield Problem(f"fork:{did_from_public_key(author)}:{seq}", "store_corrupt", exc.message)
                    continue
                if (fp.a.ledger_id.raw, fp.a.header.author, fp.seq) != (ledger, author, seq):
                    yield Problem(f"fork:{fp.author}:{seq}", "store_corrupt", "fork row differs from its proof")


def _verify_row(row: Any) -> tuple[Problem | None, Entry | None]:
    idh, rid, ledger, author, seq, ts, kind, header, payload = row
    label = _label(rid)
    try:
        entry = decode_entry(header, payload)
    except InvalidData as exc:
        return Problem(label, exc.code, exc.message), None
    expected = (
        _idh(entry.id), entry.id.raw, entry.ledger_id.raw, entry.header.author, entry.seq, entry.header.ts, entry.kind
    )
    if (idh, rid, ledger, author, seq, ts, kind) != expected:
        return Problem(label, "store_corrupt", "stored index columns differ from the entry's bytes"), None
    return None, entry


_DAG_CBOR_SHA256: Final = bytes([0x01, 0x71, 0x12, 0x20])  # CIDv1, dag-cbor, sha2-256, 32 bytes (SPEC.md §3)


def _sound(rid: bytes, header: bytes, payload: bytes | None) -> bool:
    """The scrub's cheap check: the header hashes to the id, and the payload's digest is among the header's bytes
    (the header holds the payload's CID, and no other 32 bytes of an intact header can equal the digest of other
    bytes than the payload's). False may still be sound (another CID form): `decode_stored_entry` decides."""
    return (rid == _DAG_CBOR_SHA256 + hashlib.sha256(header).digest()
            and (payload is None or hashlib.sha256(payload).digest() in header))


def _label(rid: Any) -> str:
    try:
        return str(CID(rid))
    except (InvalidData, TypeError):
        return f"row-id:{rid!r:.80}"


def _idh(cid: CID) -> int:
    # A short integer key indexes far cheaper than the 36-byte id: random 8-byte
    # keys dirty fewer index pages per commit. Lookups compare the full id too.
    return int.from_bytes(cid.digest[:8], "big", signed=True)


def _row(entry: Entry, now: int) -> tuple[Any, ...]:
    return (
        _idh(entry.id),
        entry.id.raw,
        entry.ledger_id.raw,
        entry.header.author,
        entry.seq,
        entry.header.ts,
        entry.kind,
        entry.header_raw,
        entry.payload_raw,
        now,
    )


_COVERAGE_SQL: Final = "SELECT count(*), coalesce(sum(rowid), 0) FROM entries WHERE ledger = ?"
_FORK_POINTS_SQL: Final = "SELECT author, min(seq) FROM forks WHERE ledger = ? GROUP BY author"
_LOG_SQL: Final = "SELECT id, header, payload FROM entries WHERE ledger = ? ORDER BY author, seq"
_FORKS_SQL: Final = "SELECT proof FROM forks ORDER BY ledger, author, seq"


# ---- the writer thread's side -------------------------------------------------


def _open_writer(path: Path) -> sqlite3.Connection:
    # Members-only ledgers are in here: a new store is the owner's alone (0600), and SQLite gives its -wal
    # and -shm files the database file's mode.
    if not os.path.exists(path):
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_mode = WAL")
        # FULL: the WAL is fsync'ed at every commit, so a commit survives power loss.
        db.execute("PRAGMA synchronous = FULL")
        # Freed space is overwritten with zeros: an erased payload (SPEC.md §20) does not linger in free pages.
        db.execute("PRAGMA secure_delete = ON")
        _migrate(db)
    except BaseException:
        db.close()
        raise
    return db


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.db.execute("COMMIT")
        elif self.db.in_transaction:
            self.db.execute("ROLLBACK")


def _append_in_transaction(
    db: sqlite3.Connection, key: SigningKey, requests: list[AppendRequest], now: int
) -> list[Entry | TallyError]:
    results: list[Entry | TallyError] = []
    rows = []
    heads: dict[tuple[bytes, bytes], ChainHead | None] = {}
    with _Transaction(db):
        for req in requests:
            try:
                if req.ledger is None:
                    head = None
                else:
                    found = db.execute(
                        "SELECT kind FROM entries WHERE idh = ? AND id = ?", (_idh(req.ledger), req.ledger.raw)
                    ).fetchone()
                    if found is None or found[0] != GENESIS_KIND:
                        raise LocalError("unknown_ledger", f"no ledger {req.ledger} is stored here")
                    hk = (req.ledger.raw, key.public_key)
                    if hk not in heads:
                        heads[hk] = _head_in(db, req.ledger, key.public_key)
                    head = heads[hk]
                entry = _next_entry(key, req, head)
            except TallyError as exc:
                results.append(exc)
                continue
            heads[(entry.ledger_id.raw, key.public_key)] = ChainHead.of(entry)
            rows.append(_row(entry, now))
            results.append(entry)
        db.executemany(_INSERT, rows)
    return results


def _next_entry(key: SigningKey, req: AppendRequest, head: ChainHead | None) -> Entry:
    if head is None:
        return create_entry(key, ledger=req.ledger, seq=1, prev=None, ts=req.ts, kind=req.kind, body=req.body)
    # ts never goes below prev's: a clock stepped back must not make an invalid entry.
    return create_entry(
        key, ledger=req.ledger, seq=head.seq + 1, prev=head.id, ts=max(req.ts, head.ts), kind=req.kind, body=req.body
    )


def _head_in(db: sqlite3.Connection, ledger: CID, author: bytes) -> ChainHead | None:
    row = db.execute(_HEAD, (ledger.raw, author)).fetchone()
    return None if row is None else ChainHead(author, ledger, row[0], CID(row[1]), row[2])


def _ingest(db: sqlite3.Connection, entries: list[Entry], now: int) -> IngestResult:
    stored: list[Entry] = []
    forks: list[ForkProof] = []
    gaps: list[Entry] = []
    refused: list[tuple[Entry, InvalidData]] = []
    duplicates = 0
    heads: dict[tuple[bytes, bytes], ChainHead | None] = {}
    fresh: dict[tuple[bytes, bytes, int], Entry] = {}
    rows: list[tuple[Any, ...]] = []
    with _Transaction(db):
        for entry in entries:
            ledger = entry.ledger_id
            hk = (ledger.raw, entry.header.author)
            if hk not in heads:
                heads[hk] = _head_in(db, ledger, entry.header.author)
            head = heads[hk]
            if head is not None and entry.seq <= head.seq:
                other = fresh.get((*hk, entry.seq)) or _entry_at(db, hk, entry.seq, entry)
                if other is None and _restore(db, entry):
                    stored.append(entry)  # a good copy of an entry damaged here: back in its chain
                    continue
                if other is None or other.id == entry.id:
                    duplicates += 1
                    continue
                proof = ForkProof.of(other, entry)
                db.execute(
                    "INSERT OR IGNORE INTO forks (ledger, author, seq, proof, found) VALUES (?, ?, ?, ?, ?)",
                    (*hk, entry.seq, proof.encode(), now),
                )
                forks.append(proof)
                continue
            if entry.seq > (head.seq if head else 0) + 1:
                gaps.append(entry)
                continue
            try:
                check_next(head, entry)
            except InvalidData as exc:
                refused.append((entry, exc))
                continue
            rows.append(_row(entry, now))
            heads[hk] = ChainHead(entry.header.author, ledger, entry.seq, entry.id, entry.header.ts)
            fresh[(*hk, entry.seq)] = entry
            stored.append(entry)
        db.executemany(_INSERT, rows)
    return IngestResult(tuple(stored), duplicates, tuple(forks), tuple(gaps), tuple(refused))


def _add_fork(db: sqlite3.Connection, proof: ForkProof, now: int) -> bool:
    with _Transaction(db):
        cur = db.execute(
            "INSERT OR IGNORE INTO forks (ledger, author, seq, proof, found) VALUES (?, ?, ?, ?, ?)",
            (proof.a.ledger_id.raw, proof.a.header.author, proof.seq, proof.encode(), now),
        )
        return cur.rowcount > 0


def _repair(db: sqlite3.Connection, entry: Entry) -> bool:
    with _Transaction(db):
        # An erased payload (NULL, SPEC.md §20) stays erased: a repair puts back only what was damaged.
        cur = db.execute("UPDATE entries SET header = ?, payload = CASE WHEN payload IS NULL THEN NULL ELSE ? END "
                         "WHERE idh = ? AND id = ?",
                         (entry.header_raw, entry.payload_raw, _idh(entry.id), entry.id.raw))
        # The state of its ledger was folded without the damaged entry: its snapshot is stale now.
        db.execute("DELETE FROM snapshots WHERE ledger = ?", (entry.ledger_id.raw,))
        return cur.rowcount > 0 or _unquarantine(db, entry)


def _restore(db: sqlite3.Connection, entry: Entry) -> bool:
    """Put a good copy (verified, so its bytes hash to its id) of an entry stored here with damaged bytes back,
    in place or from quarantine, in the caller's transaction. False if no such entry is here, or ours is sound:
    equal bytes are compared, not hashed, so a duplicate costs little."""
    row = db.execute("SELECT header, payload FROM entries WHERE idh = ? AND id = ?",
                     (_idh(entry.id), entry.id.raw)).fetchone()
    if row is not None:
        ours = (bytes(row[0]), None if row[1] is None else bytes(row[1]))
        # an erased payload stays erased, and a copy without its payload leaves ours as it is
        good = (entry.header_raw, ours[1] if entry.payload_raw is None or ours[1] is None else entry.payload_raw)
        if good == ours:
            return False  # the same bytes: a plain duplicate
        db.execute("UPDATE entries SET header = ?, payload = ? WHERE idh = ? AND id = ?",
                   (*good, _idh(entry.id), entry.id.raw))
        return True
    return _unquarantine(db, entry)


def _unquarantine(db: sqlite3.Connection, entry: Entry) -> bool:
    """Put a good copy of a quarantined entry back in its chain (in the caller's transaction). Its id is the
    one stored when it was first checked, so it links its chain as before."""
    row = db.execute("SELECT received FROM quarantine WHERE idh = ? AND id = ?",
                     (_idh(entry.id), entry.id.raw)).fetchone()
    if row is None:
        return False
    db.execute("DELETE FROM quarantine WHERE idh = ? AND id = ?", (_idh(entry.id), entry.id.raw))
    db.execute(_INSERT, _row(entry, int(row[0])))
    return True


def _quarantine(db: sqlite3.Connection, entry_id: bytes, now: int) -> Quarantined | None:
    with _Transaction(db):
        row = db.execute(f"SELECT {_COLUMNS} FROM entries WHERE idh = ? AND id = ?",
                         (_idh(CID(entry_id)), entry_id)).fetchone()
        if row is None:
            return None
        try:  # checked again under the lock: a good copy may have come meanwhile
            decode_stored_entry(entry_id, row[7], row[8])
            return None
        except InvalidData:
            pass
        db.execute(f"INSERT OR REPLACE INTO quarantine ({_COLUMNS}, found) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (*row, now))
        db.execute("DELETE FROM entries WHERE idh = ? AND id = ?", (row[0], entry_id))
        db.execute("DELETE FROM snapshots WHERE ledger = ?", (row[2],))
        return Quarantined(CID(entry_id), CID(row[2]), bytes(row[3]), int(row[4]), now)


def _erase_payloads(db: sqlite3.Connection, ids: list[CID]) -> int:
    with _Transaction(db):
        dropped = sum(db.execute("UPDATE entries SET payload = NULL WHERE idh = ? AND id = ? AND payload IS NOT NULL",
                                 (_idh(cid), cid.raw)).rowcount for cid in ids)
        for cid in ids:  # an erased payload changes its ledger's state: the snapshot of it is stale
            db.execute("DELETE FROM snapshots WHERE ledger = (SELECT ledger FROM entries WHERE idh = ? AND id = ?)",
                       (_idh(cid), cid.raw))
    if dropped:
        # A reader's snapshot may keep the checkpoint from finishing; the next erasure or start retries it.
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return dropped


def _keep_snapshot(db: sqlite3.Connection, ledger: bytes, snapshot: Snapshot, now: int) -> bool:
    with _Transaction(db):
        entries, rowids = db.execute(_COVERAGE_SQL, (ledger,)).fetchone()
        forks = fork_points({bytes(a): int(s) for a, s in db.execute(_FORK_POINTS_SQL, (ledger,))})
        if (entries, forks) != (snapshot.coverage.entries, snapshot.coverage.forks):
            return False
        db.execute(
            "INSERT OR REPLACE INTO snapshots (ledger, format, entries, rowids, forks, ids, digest, checksum, state,"
            " made) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (ledger, snapshot.format, entries, rowids, forks, snapshot.ids, snapshot.digest, snapshot.checksum,
             snapshot.state, now),
        )
        return True
    """,
    """
def _add_invitation(db: sqlite3.Connection, i: Invitation) -> None:
    with _Transaction(db):
        db.execute("INSERT INTO invitations (hash, ledger, uses, expires, created, revoked) VALUES (?, ?, ?, ?, ?, ?)",
                   (i.hash, i.ledger.raw, i.uses, i.expires, i.created, i.revoked))


def _take_invitation(db: sqlite3.Connection, digest: bytes, now: int) -> Invitation | None:
    with _Transaction(db):
        cur = db.execute("UPDATE invitations SET uses = uses - 1 WHERE hash = ? AND uses > 0 AND revoked IS NULL "
                         "AND expires > ?", (digest, now))
        if cur.rowcount != 1:
            return None
        h, ledger, uses, expires, created, revoked = db.execute(
            "SELECT hash, ledger, uses, expires, created, revoked FROM invitations WHERE hash = ?", (digest,)
        ).fetchone()
        return Invitation(h, CID(ledger), uses, expires, created, revoked)


def _write(db: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> None:
    with _Transaction(db):
        db.execute(sql, args)


def _follow(db: sqlite3.Connection, ledger: CID, now: int) -> bool:
    with _Transaction(db):
        cur = db.execute("INSERT OR IGNORE INTO follows (ledger, since) VALUES (?, ?)", (ledger.raw, now))
        return cur.rowcount > 0


def _entry_at(db: sqlite3.Connection, hk: tuple[bytes, bytes], seq: int, offered: Entry) -> Entry | None:
    """The stored entry at `seq` of a chain, to tell a duplicate of `offered` from a fork; None when none is
    stored, or ours has `offered`'s id, or ours is damaged (no fork can be proven with it; healing replaces it)."""
    row = db.execute(
        "SELECT id, header, payload FROM entries WHERE ledger = ? AND author = ? AND seq = ?", (*hk, seq)
    ).fetchone()
    if row is None or bytes(row[0]) == offered.id.raw:
        return None
    try:
        return decode_stored_entry(row[0], row[1], row[2])
    except InvalidData:
        return None


def _migrate(db: sqlite3.Connection) -> None:
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise LocalError("schema_too_new", f"store schema {version} is newer than this Tally's {SCHEMA_VERSION}")
    for target in range(version + 1, SCHEMA_VERSION + 1):
        with _Transaction(db):
            # Re-read inside the lock: another process may have migrated meanwhile.
            if int(db.execute("PRAGMA user_version").fetchone()[0]) >= target:
                continue
            for statement in _statements(MIGRATIONS[target - 1]):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {target}")


def _statements(script: str) -> list[str]:
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
