"""The store's reading side: every query, over a read-only connection of its own (aiosqlite, so reads run off
the event loop). A read never sees a write transaction in flight nor waits behind one (WAL allows both). Bytes
found damaged on the way out are left out and reported (`on_damaged`), so the rest of a ledger stays readable."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable, Sequence
from pathlib import Path
from typing import Any, Final, cast

import aiosqlite

from node.store.rows import (
    AFTER_IN_CHAIN_SQL,
    AFTER_IN_LEDGER_SQL,
    BY_ID,
    COVERAGE_SQL,
    COVERAGE_UPTO_SQL,
    FORK_POINTS_SQL,
    GENESIS_WHERE,
    HEAD_SQL,
    Coverage,
    FoldRef,
    Invitation,
    LedgerInfo,
    Snapshot,
    fork_points,
    idh,
    label,
    sound,
)
from protocol import (
    CID,
    GENESIS_KIND,
    ChainHead,
    Entry,
    ForkProof,
    InvalidData,
    LocalError,
    decode_stored_entries,
    decode_stored_entry,
)
from protocol.identity import did_from_public_key

log = logging.getLogger(__name__)

LOG_CHUNK_ROWS: Final = 512  # rows `log` fetches per hop to the reader thread (aiosqlite's default: 64)
_LOG_SQL: Final = "SELECT id, header, payload FROM entries WHERE ledger = ? ORDER BY author, seq"
_LOG_BY_TIME_SQL: Final = "SELECT id, header, payload FROM entries WHERE ledger = ? ORDER BY ts, id"
#: a fold's read (`fold_rows`): the (ledger, ts) index's own order, ties (one ms) as stored; ordering them by id, as
#: `_LOG_BY_TIME_SQL` does, sorts each ms's rows, bytes and all, in a temporary b-tree (a fifth of the SQL's time)
_FOLD_SQL: Final = "SELECT id, header, payload FROM entries WHERE ledger = ? ORDER BY ts, rowid"
_CHAIN_SQL: Final = "SELECT id, header, payload FROM entries WHERE ledger = ? AND author = ? ORDER BY seq"
#: an entry's row as `log_rows` reads it: (id, header, payload), the bytes as stored
StoredRow = tuple[bytes, bytes, bytes | None]
#: a stored entry found damaged: its id and what is wrong
Damage = tuple[bytes, str]


def decode_rows(rows: Sequence[StoredRow]) -> tuple[list[Entry], list[Damage]]:
    """Stored rows decoded (`decode_stored_entries`: their hashes checked, nothing else) and the damaged ones, left
    out, so the rest of the ledger stays readable: thread-safe, so a worker thread may decode what it then folds;
    `StoreReader.report_damaged` the rest."""
    entries, damaged = decode_stored_entries(rows)
    return entries, [(rid, exc.message) for rid, exc in damaged]
#: each chain's head: its seq found in the (ledger, author, seq) index alone, then its row (a row per chain read, not
#: a row per entry with a search of its chain's max each: 20 ms at 100,000 entries, not 80 to 150 ms)
_FRONTIER_SQL: Final = (
    "SELECT e.author, e.seq, e.id, e.ts FROM (SELECT author, max(seq) AS seq FROM entries WHERE ledger = ?1"
    " GROUP BY author) AS h JOIN entries e ON e.ledger = ?1 AND e.author = h.author AND e.seq = h.seq"
)
_FORKS_SQL: Final = "SELECT proof FROM forks ORDER BY ledger, author, seq"


class StoreReader:
    """Read access to one store file; `Store` (node/store/store.py) adds the writing side."""

    def __init__(self, reader: aiosqlite.Connection, path: Path) -> None:
        self._read = reader
        self.path = path
        self.damaged: set[bytes] = set()  # ids of stored entries whose bytes were found damaged on reading
        self._damage_listeners: list[Callable[[bytes], None]] = []

    def on_damaged(self, listener: Callable[[bytes], None]) -> Callable[[], None]:
        """Call `listener` with the id of each stored entry found damaged on reading (its bytes no longer hash to
        its id, or its payload differs from its header), on the event loop. Returns an unsubscribe function."""
        self._damage_listeners.append(listener)
        return lambda: self._damage_listeners.remove(listener)

    def report_damaged(self, damaged: Sequence[Damage]) -> None:
        """Report what `decode_rows` found damaged (on the event loop, as `on_damaged` promises)."""
        for rid, detail in damaged:
            self._found_damaged(rid, detail)

    def _found_damaged(self, rid: bytes, detail: str) -> None:
        if rid in self.damaged:
            return
        self.damaged.add(rid)
        log.error("damaged entry left out", extra={"entry": label(rid), "detail": detail, "store": str(self.path)})
        for listener in list(self._damage_listeners):
            try:
                listener(rid)
            except Exception:  # a listener's bug must not fail the read that found the damage
                log.exception("damaged-entry listener failed")

    # ---- invitations (node/http/invites.py) ---------------------------------

    async def invitations(self) -> list[Invitation]:
        rows = await self._rows("SELECT hash, ledger, uses, expires, created, revoked FROM invitations "
                                "ORDER BY created, hash")
        return [Invitation(h, CID(ledger), uses, expires, created, revoked) for h, ledger, uses, expires, created,
                revoked in rows]

    async def redeemed(self, digest: bytes, agent: str) -> CID | None:
        """The sponsorship written when `agent` redeemed the invitation, if they did."""
        row = await self._row("SELECT entry FROM redemptions WHERE hash = ? AND agent = ?", (digest, agent))
        return None if row is None else CID(row[0])

    async def invited_peers(self) -> list[str]:
        return [url for (url,) in await self._rows("SELECT url FROM invited_peers ORDER BY since, url")]

    # ---- snapshots (node/store/snapshots.py) ------------------------------

    async def coverage(self, ledger: CID) -> Coverage:
        """The ledger's stored rows as a snapshot records them (an index range scan: no row is read)."""
        rows = await self._rows(COVERAGE_SQL, (ledger.raw,))
        forks = await self._rows(FORK_POINTS_SQL, (ledger.raw,))
        return Coverage(int(rows[0][0]), int(rows[0][1]), fork_points({bytes(a): int(s) for a, s in forks}))

    async def snapshot(self, ledger: CID) -> Snapshot | None:
        row = await self._row("SELECT format, entries, rowids, forks, ids, digest, checksum, state, fold, fold_token,"
                              " fold_parts, fold_checksum, fold_entries, fold_digest, fold_rowids, fold_last"
                              " FROM snapshots WHERE ledger = ?", (ledger.raw,))
        if row is None:
            return None
        fmt, entries, rowids, forks, ids, digest, checksum, state, fold, *more = row
        ref = None if fold is None else FoldRef(str(fold), bytes(more[0] or b""), int(more[1] or 0),
                                                bytes(more[2] or b""), int(more[3] or 0), bytes(more[4] or b""),
                                                int(more[5] or 0), int(more[6] or 0))
        return Snapshot(str(fmt), Coverage(int(entries), int(rowids), bytes(forks)), bytes(ids), bytes(digest),
                        bytes(checksum), bytes(state), ref)

    async def coverage_upto(self, ledger: CID, last: int) -> tuple[int, int]:
        """The count and rowid sum of the ledger's rows up to rowid `last` (what a kept fold covers)."""
        row = await self._row(COVERAGE_UPTO_SQL, (ledger.raw, last))
        return int(row[0]), int(row[1])

    async def log_after(self, ledger: CID, last: int) -> list[Entry]:
        """The ledger's entries stored after rowid `last` (what arrived after a kept fold), damaged ones left out."""
        found = []
        for rid, header, payload in await self._rows(
                # the rowid range, not the ledger's index: that would walk every row of a big ledger (0.2 s at 1M)
                "SELECT id, header, payload FROM entries NOT INDEXED WHERE rowid > ?2 AND ledger = ?1 ORDER BY rowid",
                (ledger.raw, last)):
            try:
                found.append(decode_stored_entry(rid, header, payload))
            except InvalidData as exc:
                self._found_damaged(bytes(rid), exc.message)
        return found

    async def log_last(self, ledger: CID, count: int) -> list[tuple[int, Entry]]:
        """The ledger's last `count` stored rows (by rowid), oldest first, each with its rowid, damaged ones left
        out: what was stored after a kept state that covers the rows before them (node/store/keeping.py)."""
        found = []
        for rowid, rid, header, payload in reversed(await self._rows(
                # back from the table's end: a few rows stored lately, not a walk of the ledger's index
                "SELECT rowid, id, header, payload FROM entries NOT INDEXED WHERE ledger = ?1 ORDER BY rowid DESC"
                " LIMIT ?2", (ledger.raw, count))):
            try:
                found.append((int(rowid), decode_stored_entry(rid, header, payload)))
            except InvalidData as exc:
                self._found_damaged(bytes(rid), exc.message)
        return found

    async def fold_part(self, ledger: CID, token: bytes, part: int) -> bytes | None:
        """One part of a snapshot's fold (`Snapshot.fold`), or None if it is not stored."""
        row = await self._row("SELECT bytes FROM fold_parts WHERE ledger = ? AND token = ? AND part = ?",
                              (ledger.raw, token, part))
        return None if row is None else bytes(row[0])

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
        row = await self._row(HEAD_SQL, (ledger.raw, author))
        return None if row is None else ChainHead(author, ledger, row[0], CID(row[1]), row[2])

    async def has_ledger(self, ledger: CID) -> bool:
        row = await self._row(f"SELECT kind FROM entries WHERE {BY_ID}", (idh(ledger), ledger.raw))
        return row is not None and row[0] == GENESIS_KIND

    async def get(self, entry_id: CID) -> Entry | None:
        row = await self._row(
            f"SELECT header, payload FROM entries WHERE {BY_ID}", (idh(entry_id), entry_id.raw)
        )
        if row is None:
            if await self._row("SELECT 1 FROM quarantine WHERE idh = ? AND id = ?", (idh(entry_id), entry_id.raw)):
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
            f" FROM entries g WHERE g.{GENESIS_WHERE} AND g.ledger = g.id ORDER BY g.ts, g.id",
        ) as cur:
            async for rid, header, payload, count in cur:
                try:
                    result.append(LedgerInfo.of(decode_stored_entry(rid, header, payload), count))
                except InvalidData as exc:  # a damaged genesis: left out until a good copy comes
                    self._found_damaged(bytes(rid), exc.message)
        return result

    async def log(self, ledger: CID, author: bytes | None = None, *, by_time: bool = False
                  ) -> AsyncGenerator[Entry, None]:
        """A ledger's entries ordered by author then seq (one chain with `author`); `by_time`: by ts then id, so
        that most come after what they name (a fold takes them in a few at a time: node/store/ledgers.py).

        Rows decode as stored entries: their bytes hash to what was checked when they
        were stored, so only the hashes are checked again (`decode_stored_entry`).
        """
        async for rows in self.log_rows(ledger, author, by_time=by_time):
            entries, damaged = decode_rows(rows)
            self.report_damaged(damaged)
            for entry in entries:
                yield entry

    async def log_rows(self, ledger: CID, author: bytes | None = None, *, by_time: bool = False,
                       size: int = LOG_CHUNK_ROWS) -> AsyncGenerator[list[StoredRow], None]:
        """`log`'s rows as stored, `size` at a time, each batch fetched in one hop to the reader thread: for a
        reader that decodes them elsewhere (`decode_rows`), e.g. in the worker thread that folds them."""
        args: tuple[bytes, ...] = (ledger.raw,) if author is None else (ledger.raw, author)
        sql = _CHAIN_SQL if author is not None else _LOG_BY_TIME_SQL if by_time else _LOG_SQL
        async with self._read.execute(sql, args) as cur:
            while rows := await cur.fetchmany(size):
                yield cast("list[StoredRow]", rows)  # fetchmany's list, rows typed as what they hold

    async def fold_rows(self, ledger: CID, size: int = LOG_CHUNK_ROWS) -> AsyncGenerator[list[StoredRow], None]:
        """A ledger's rows as stored, in time order but for entries of the same ms (in the order stored), `size` at
        a time, each batch in one hop to the reader thread: what a fold reads (node/store/ledgers.py), whose state
        does not depend on the order its entries come in, and which sorts each batch itself."""
        async with self._read.execute(_FOLD_SQL, (ledger.raw,)) as cur:
            while rows := await cur.fetchmany(size):
                yield cast("list[StoredRow]", rows)

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
            sql = AFTER_IN_LEDGER_SQL if author is None else AFTER_IN_CHAIN_SQL
            async with self._read.execute(sql, (idh(after), after.raw, *args)) as cur:
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
                f"SELECT id FROM entries WHERE {GENESIS_WHERE} AND ledger = id AND author = ?", (founder,)))
        return [CID(raw) for raw in sorted(ids)]

    async def frontier(self, ledger: CID) -> dict[bytes, ChainHead]:
        """The head of every chain in `ledger`, by author public key."""
        rows = await self._rows(_FRONTIER_SQL, (ledger.raw,))
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
            if not sound(rid, h, p):
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
