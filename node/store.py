"""The node's durable store: one SQLite file in WAL mode, synchronous=FULL.

Each entry's exact received bytes (header and payload) are kept; every other
column is an index derived from them and `verify` re-derives and compares it.
A transaction commits only after SQLite has fsync'ed the WAL, so an id the
node printed or returned survives kill -9 and power loss, and a crash mid-write
leaves nothing half-written.

Local appends are group-committed: appends that arrive while a commit is in
flight are written together in the next transaction, one fsync for all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
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
)
from protocol.identity import did_from_public_key

log = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1
BUSY_TIMEOUT_MS: Final = 30_000

# Each migration takes the schema from version i to i + 1. Never edit one that shipped.
MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE entries (
        id       BLOB NOT NULL UNIQUE,   -- CID of the header block
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
    CREATE INDEX entries_kind ON entries (ledger, kind);
    CREATE TABLE forks (
        ledger BLOB NOT NULL,
        author BLOB NOT NULL,
        seq    INTEGER NOT NULL,
        proof  BLOB NOT NULL,            -- encoded ForkProof
        found  INTEGER NOT NULL,
        PRIMARY KEY (ledger, author, seq)
    );
    """,
)

_INSERT: Final = (
    "INSERT INTO entries (id, ledger, author, seq, ts, kind, header, payload, received)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_HEAD: Final = (
    "SELECT seq, id, ts FROM entries WHERE ledger = ? AND author = ? ORDER BY seq DESC LIMIT 1"
)


@dataclass(frozen=True, slots=True)
class AppendRequest:
    """A local append: the store picks seq and prev, and keeps ts monotonic."""

    ledger: CID | None
    kind: str
    body: dict[str, Any]
    ts: int


@dataclass(frozen=True, slots=True)
class LedgerInfo:
    id: CID
    name: str
    visibility: str
    founder: str
    created: int
    entries: int


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


@dataclass(slots=True)
class _Pending:
    request: AppendRequest
    future: asyncio.Future[Entry] = field(repr=False)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _head_key(ledger: CID, author: bytes) -> tuple[bytes, bytes]:
    return (ledger.raw, author)


class Store:
    """Async access to one store file. Open with `await Store.open(path)`."""

    def __init__(self, db: aiosqlite.Connection, path: Path, key: SigningKey | None, clock_ms: Any) -> None:
        self._db = db
        self.path = path
        self._key = key
        self._clock_ms = clock_ms
        self._write_lock = asyncio.Lock()
        self._queue: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, path: Path, *, key: SigningKey | None = None, clock_ms: Any = None) -> Store:
        """Open (creating and migrating if needed). `key` signs local appends;
        `clock_ms` is a callable giving the wall clock in ms (the node's)."""
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await db.execute("PRAGMA journal_mode = WAL")
            # FULL: the WAL is fsync'ed at every commit, so a commit survives power loss.
            await db.execute("PRAGMA synchronous = FULL")
            await db.execute("PRAGMA foreign_keys = ON")
            await _migrate(db)
        except BaseException:
            await db.close()
            raise
        return cls(db, path, key, clock_ms or wall_clock_ms)

    async def close(self) -> None:
        if self._writer is not None:
            await asyncio.shield(self._writer)
        await self._db.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # ---- local appends -------------------------------------------------

    async def append(self, request: AppendRequest) -> Entry:
        """Append one local entry; returns once it is durably committed."""
        loop = asyncio.get_running_loop()
        pending = _Pending(request, loop.create_future())
        self._queue.append(pending)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return await pending.future

    async def append_batch(self, requests: Sequence[AppendRequest]) -> list[Entry]:
        """Append many local entries in one transaction (bulk import)."""
        loop = asyncio.get_running_loop()
        pendings = [_Pending(r, loop.create_future()) for r in requests]
        async with self._write_lock:
            await self._commit_appends(pendings)
        return [p.future.result() for p in pendings]

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            async with self._write_lock:
                await self._commit_appends(batch)

    async def _commit_appends(self, batch: list[_Pending]) -> None:
        key = self._key
        if key is None:
            err = LocalError("no_identity", "this store was opened without a signing key")
            for p in batch:
                p.future.set_exception(err)
            return
        rows: list[tuple[Any, ...]] = []
        made: list[tuple[_Pending, Entry]] = []
        heads: dict[tuple[bytes, bytes], ChainHead | None] = {}
        known: dict[bytes, bool] = {}
        try:
            await self._db.execute("BEGIN IMMEDIATE")
            now = self._clock_ms()
            for p in batch:
                try:
                    entry = await self._build(key, p.request, heads, known)
                except TallyError as exc:
                    p.future.set_exception(exc)
                    continue
                heads[_head_key(entry.ledger_id, entry.header.author)] = ChainHead.of(entry)
                rows.append(_row(entry, now))
                made.append((p, entry))
            await self._db.executemany(_INSERT, rows)
            await self._db.commit()
        except BaseException as exc:
            await _rollback(self._db)
            for p, _ in made:
                if not p.future.done():
                    p.future.set_exception(exc if isinstance(exc, Exception) else RuntimeError("cancelled"))
            if not isinstance(exc, Exception):
                raise
            log.error("append batch failed: %s", exc)
            return
        for p, entry in made:
            p.future.set_result(entry)

    async def _build(
        self,
        key: SigningKey,
        req: AppendRequest,
        heads: dict[tuple[bytes, bytes], ChainHead | None],
        known: dict[bytes, bool],
    ) -> Entry:
        # `heads` and `known` cache lookups for the batch: each query is a thread hop.
        if req.ledger is None:
            return create_entry(key, ledger=None, seq=1, prev=None, ts=req.ts, kind=req.kind, body=req.body)
        if req.ledger.raw not in known:
            known[req.ledger.raw] = await self.has_ledger(req.ledger)
        if not known[req.ledger.raw]:
            raise LocalError("unknown_ledger", f"no ledger {req.ledger} is stored here")
        hk = _head_key(req.ledger, key.public_key)
        if hk not in heads:
            heads[hk] = await self._head(req.ledger, key.public_key)
        head = heads[hk]
        if head is None:
            return create_entry(key, ledger=req.ledger, seq=1, prev=None, ts=req.ts, kind=req.kind, body=req.body)
        # ts never goes below prev's: a clock stepped back must not make an invalid entry.
        return create_entry(
            key, ledger=req.ledger, seq=head.seq + 1, prev=head.id, ts=max(req.ts, head.ts),
            kind=req.kind, body=req.body,
        )

    # ---- entries from elsewhere ------------------------------------------

    async def ingest(self, entries: Sequence[Entry]) -> IngestResult:
        """Store verified entries (signatures already checked) that extend their chains.

        Entries must come in seq order per chain. Each is a duplicate, the next
        link (stored), a fork (proof stored, entry not), a gap (returned, not
        stored) or refused by the chain rules.
        """
        stored: list[Entry] = []
        forks: list[ForkProof] = []
        gaps: list[Entry] = []
        refused: list[tuple[Entry, InvalidData]] = []
        duplicates = 0
        heads: dict[tuple[bytes, bytes], ChainHead | None] = {}
        fresh: dict[tuple[bytes, bytes, int], Entry] = {}
        rows: list[tuple[Any, ...]] = []
        async with self._write_lock:
            try:
                await self._db.execute("BEGIN IMMEDIATE")
                now = self._clock_ms()
                for entry in entries:
                    hk = _head_key(entry.ledger_id, entry.header.author)
                    if hk not in heads:
                        heads[hk] = await self._head(entry.ledger_id, entry.header.author)
                    head = heads[hk]
                    if head is not None and entry.seq <= head.seq:
                        other = fresh.get((*hk, entry.seq)) or await self._entry_at(hk, entry.seq)
                        if other is None or other.id == entry.id:
                            duplicates += 1
                            continue
                        proof = ForkProof.of(other, entry)
                        await self._db.execute(
                            "INSERT OR IGNORE INTO forks (ledger, author, seq, proof, found) VALUES (?,?,?,?,?)",
                            (hk[0], hk[1], entry.seq, proof.encode(), now),
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
                    heads[hk] = ChainHead.of(entry)
                    fresh[(*hk, entry.seq)] = entry
                    stored.append(entry)
                await self._db.executemany(_INSERT, rows)
                await self._db.commit()
            except BaseException:
                await _rollback(self._db)
                raise
        return IngestResult(tuple(stored), duplicates, tuple(forks), tuple(gaps), tuple(refused))

    # ---- queries ---------------------------------------------------------

    async def _head(self, ledger: CID, author: bytes) -> ChainHead | None:
        async with self._db.execute(_HEAD, (ledger.raw, author)) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return ChainHead(author, ledger, row[0], CID(row[1]), row[2])

    async def head(self, ledger: CID, author: bytes) -> ChainHead | None:
        return await self._head(ledger, author)

    async def _entry_at(self, hk: tuple[bytes, bytes], seq: int) -> Entry | None:
        async with self._db.execute(
            "SELECT header, payload FROM entries WHERE ledger = ? AND author = ? AND seq = ?", (*hk, seq)
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else decode_entry(row[0], row[1], check_signature=False)

    async def has_ledger(self, ledger: CID) -> bool:
        async with self._db.execute(
            "SELECT 1 FROM entries WHERE id = ? AND kind = ?", (ledger.raw, GENESIS_KIND)
        ) as cur:
            return await cur.fetchone() is not None

    async def get(self, entry_id: CID) -> Entry | None:
        async with self._db.execute("SELECT header, payload FROM entries WHERE id = ?", (entry_id.raw,)) as cur:
            row = await cur.fetchone()
        return None if row is None else decode_entry(row[0], row[1], check_signature=False)

    async def ledgers(self) -> list[LedgerInfo]:
        result = []
        async with self._db.execute(
            "SELECT g.header, g.payload, (SELECT count(*) FROM entries e WHERE e.ledger = g.id)"
            " FROM entries g WHERE g.kind = ? AND g.ledger = g.id ORDER BY g.ts, g.id",
            (GENESIS_KIND,),
        ) as cur:
            async for header, payload, count in cur:
                g = decode_entry(header, payload, check_signature=False)
                body = g.body or {}
                result.append(
                    LedgerInfo(
                        id=g.id,
                        name=str(body.get("name", "")),
                        visibility=str(body.get("visibility", "members")),
                        founder=g.author,
                        created=g.header.ts,
                        entries=count,
                    )
                )
        return result

    async def log(self, ledger: CID, author: bytes | None = None) -> AsyncGenerator[Entry, None]:
        """A ledger's entries ordered by author then seq (one chain with `author`)."""
        args: tuple[bytes, ...]
        if author is None:
            sql, args = "SELECT header, payload FROM entries WHERE ledger = ? ORDER BY author, seq", (ledger.raw,)
        else:
            sql = "SELECT header, payload FROM entries WHERE ledger = ? AND author = ? ORDER BY seq"
            args = (ledger.raw, author)
        async with self._db.execute(sql, args) as cur:
            async for header, payload in cur:
                yield decode_entry(header, payload, check_signature=False)

    async def forks(self) -> list[ForkProof]:
        async with self._db.execute("SELECT proof FROM forks ORDER BY ledger, author, seq") as cur:
            return [ForkProof.decode(row[0]) async for row in cur]

    async def count(self) -> int:
        async with self._db.execute("SELECT count(*) FROM entries") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    # ---- verification ----------------------------------------------------

    async def verify(self) -> AsyncGenerator[Problem, None]:
        """Re-verify every stored entry from its raw bytes: encoding, signature,
        payload hash, derived columns and chain links; and every fork proof."""
        async with self._db.execute("PRAGMA quick_check") as cur:
            rows = await cur.fetchall()
        if [tuple(r) for r in rows] != [("ok",)]:
            for r in rows:
                yield Problem("-", "store_corrupt", f"sqlite: {r[0]}")
        heads: dict[tuple[bytes, bytes], ChainHead] = {}
        async with self._db.execute(
            "SELECT id, ledger, author, seq, ts, kind, header, payload FROM entries ORDER BY ledger, author, seq"
        ) as cur:
            async for row in cur:
                problem, entry = _verify_row(row)
                if problem is not None:
                    yield problem
                    continue
                assert entry is not None
                hk = _head_key(entry.ledger_id, entry.header.author)
                try:
                    check_next(heads.get(hk), entry)
                except InvalidData as exc:
                    yield Problem(str(entry.id), exc.code, exc.message)
                heads[hk] = ChainHead.of(entry)
        async with self._db.execute("SELECT ledger, author, seq, proof FROM forks") as cur:
            async for ledger, author, seq, proof in cur:
                try:
                    fp = ForkProof.decode(proof)
                except InvalidData as exc:
                    yield Problem(f"fork:{did_from_public_key(author)}:{seq}", "store_corrupt", exc.message)
                    continue
                if (fp.a.ledger_id.raw, fp.a.header.author, fp.seq) != (ledger, author, seq):
                    yield Problem(f"fork:{fp.author}:{seq}", "store_corrupt", "fork row differs from its proof")


def _verify_row(row: Any) -> tuple[Problem | None, Entry | None]:
    rid, ledger, author, seq, ts, kind, header, payload = row
    label = _label(rid)
    try:
        entry = decode_entry(header, payload)
    except InvalidData as exc:
        return Problem(label, exc.code, exc.message), None
    expected = (entry.id.raw, entry.ledger_id.raw, entry.header.author, entry.seq, entry.header.ts, entry.kind)
    if (rid, ledger, author, seq, ts, kind) != expected:
        return Problem(label, "store_corrupt", "stored index columns differ from the entry's bytes"), None
    return None, entry


def _label(rid: Any) -> str:
    try:
        return str(CID(rid))
    except (InvalidData, TypeError):
        return f"row-id:{rid!r:.80}"


def _row(entry: Entry, now: int) -> tuple[Any, ...]:
    return (
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


async def _rollback(db: aiosqlite.Connection) -> None:
    if db.in_transaction:
        await db.rollback()


async def _migrate(db: aiosqlite.Connection) -> None:
    async with db.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    version = int(row[0]) if row else 0
    if version > SCHEMA_VERSION:
        raise LocalError("schema_too_new", f"store schema {version} is newer than this Tally's {SCHEMA_VERSION}")
    for target in range(version + 1, SCHEMA_VERSION + 1):
        await db.execute("BEGIN IMMEDIATE")
        try:
            # Re-read inside the lock: another process may have migrated meanwhile.
            async with db.execute("PRAGMA user_version") as cur:
                row = await cur.fetchone()
            if row and int(row[0]) >= target:
                await db.rollback()
                continue
            for statement in _statements(MIGRATIONS[target - 1]):
                await db.execute(statement)
            await db.execute(f"PRAGMA user_version = {target}")
            await db.commit()
        except BaseException:
            await _rollback(db)
            raise


def _statements(script: str) -> list[str]:
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
