"""Each write transaction of the store but local appends' (node/store/appends.py), run on its writer thread
(node/store/store.py hands them over): ingest of verified entries, repairs and quarantine, erasure, snapshots,
follows and invitations. Each is one `Transaction`: all of it commits, or none."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from functools import lru_cache
from itertools import chain
from typing import Any, Final

from node.store.rows import (
    BY_ID,
    COLUMNS,
    COVERAGE_SQL,
    FORK_POINTS_SQL,
    HEAD_SQL,
    INSERT_SQL,
    IngestResult,
    Invitation,
    Quarantined,
    Snapshot,
    entry_row,
    fork_points,
    idh,
)
from node.store.schema import Transaction
from protocol import (
    CID,
    ChainHead,
    Entry,
    ForkProof,
    InvalidData,
    check_next,
    decode_stored_entry,
)

# ---- shared with local appends' transaction (node/store/appends.py) ---------------------------------------

#: recent_ids is merged into entry_ids once it holds this many ids, or a SETTLE_SHARE-th of the rows, if more
SETTLE_MIN: Final = 4096
SETTLE_SHARE: Final = 32


#: Rows an INSERT statement carries: SQLite inserts them in one step, without the interpreter lock, where
#: executemany takes the lock back after every row (and the thread signing or verifying meanwhile waits for it).
ROWS_PER_INSERT: Final = 256
_ROW_VALUES: Final = INSERT_SQL.count("?")


@lru_cache(maxsize=16)
def _insert_sql(rows: int) -> str:
    return INSERT_SQL + (", (" + ", ".join("?" * _ROW_VALUES) + ")") * (rows - 1)


def _insert_rows(db: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert `rows` with as few statements as SQLite's limit on parameters allows, each of a power of two rows
    (so that a few prepared statements serve any count)."""
    per = ROWS_PER_INSERT
    while per > 1 and per * _ROW_VALUES > db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER):
        per //= 2
    at = 0
    while at < len(rows):
        while per > len(rows) - at:
            per //= 2
        db.execute(_insert_sql(per), list(chain.from_iterable(rows[at : at + per])))
        at += per


def insert_entries(db: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert entries' rows (`entry_row`) in the caller's transaction, their ids into the recent part of the id
    index, and merge that into the settled part once it is big enough (`settle_ids`). Every insert of an entry
    goes through here: nothing else indexes its id."""
    before = int(db.execute("SELECT coalesce(max(rowid), 0) FROM entries").fetchone()[0])
    _insert_rows(db, rows)
    # New rows take the rowids after the largest (another process waits for this transaction's write lock), so one
    # statement indexes them all: a trigger's program per row cost ~6 us of the writer's CPU per entry. SQLite
    # picks other rowids only once 2**63 - 1 is taken; then each new row is found by its chain and seq.
    added = db.execute("INSERT INTO recent_ids (idh, rid) SELECT idh, rowid FROM entries WHERE rowid > ?", (before,))
    if added.rowcount != len(rows):
        db.executemany("INSERT OR IGNORE INTO recent_ids (idh, rid) SELECT idh, rowid FROM entries"
                       " WHERE ledger = ? AND author = ? AND seq = ?", [row[2:5] for row in rows])
    settle_ids(db)


def settle_ids(db: sqlite3.Connection) -> bool:
    """Merge the recent part of the id index into the settled one, in the caller's transaction, once it is big
    enough. An id is random: inserted one at a time into a big index, each dirties a page of its own (~4 KB of WAL
    per entry stored). Into recent_ids, a commit dirties at most that small index's pages, and a merge inserts its
    ids in order, several to a page: the WAL written per entry stored halved at 100,000 entries (README)."""
    recent = int(db.execute("SELECT count(*) FROM recent_ids").fetchone()[0])
    if recent < SETTLE_MIN or recent * SETTLE_SHARE < int(db.execute(
            "SELECT coalesce(max(rowid), 0) FROM entries").fetchone()[0]):
        return False
    db.execute("INSERT INTO entry_ids (idh, rid) SELECT idh, rid FROM recent_ids")
    db.execute("DELETE FROM recent_ids")
    return True


def head_in(db: sqlite3.Connection, ledger: CID, author: bytes) -> ChainHead | None:
    """The head of `author`'s chain in `ledger` (counting a quarantined entry), in the caller's transaction."""
    row = db.execute(HEAD_SQL, (ledger.raw, author)).fetchone()
    return None if row is None else ChainHead(author, ledger, row[0], CID(row[1]), row[2])


# ---- the write transactions ------------------------------------------------------------------------------


def ingest(db: sqlite3.Connection, entries: list[Entry], now: int) -> IngestResult:
    stored: list[Entry] = []
    forks: list[ForkProof] = []
    gaps: list[Entry] = []
    refused: list[tuple[Entry, InvalidData]] = []
    duplicates = 0
    heads: dict[tuple[bytes, bytes], ChainHead | None] = {}  # each chain's stored head, read once
    # Each chain's entries accepted in this transaction: consecutive seqs, the last one its head now. A received
    # window is a run of one chain, so an entry is checked against the one before it with no object made.
    fresh: dict[tuple[bytes, bytes], list[Entry]] = {}
    rows: list[tuple[Any, ...]] = []
    with Transaction(db):
        for entry in entries:
            h = entry.header
            ledger = entry.id if h.ledger is None else h.ledger
            hk = (ledger.raw, h.author)
            seq = h.seq
            added = fresh.get(hk)
            if added:
                last = added[-1]
                head_seq, head_id, head_ts = last.header.seq, last.id.raw, last.header.ts
                head = None
            else:
                if hk not in heads:
                    heads[hk] = head_in(db, ledger, h.author)
                head = heads[hk]
                head_seq, head_id, head_ts = (0, b"", 0) if head is None else (head.seq, head.id.raw, head.ts)
            if seq <= head_seq:
                other = added[seq - added[0].header.seq] if added and seq >= added[0].header.seq else None
                other = other or _entry_at(db, hk, seq, entry)
                if other is None and _restore(db, entry):
                    stored.append(entry)  # a good copy of an entry damaged here: back in its chain
                    continue
                if other is None or other.id == entry.id:
                    duplicates += 1
                    continue
                proof = ForkProof.of(other, entry)
                db.execute(
                    "INSERT OR IGNORE INTO forks (ledger, author, seq, proof, found) VALUES (?, ?, ?, ?, ?)",
                    (*hk, seq, proof.encode(), now),
                )
                forks.append(proof)
                continue
            if seq > head_seq + 1:
                gaps.append(entry)
                continue
            prev = h.prev
            # What check_next asks of the next link when author and ledger are the chain's (they are: hk) and seq
            # is the next; anything else goes through check_next itself, for its error.
            if not (seq == 1 if prev is None else (head_seq > 0 and prev.raw == head_id and h.ts >= head_ts)):
                try:
                    check_next(ChainHead.of(added[-1]) if added else head, entry)
                except InvalidData as exc:
                    refused.append((entry, exc))
                    continue
            rows.append(entry_row(entry, now))
            if added:
                added.append(entry)
            else:
                fresh[hk] = [entry]
            stored.append(entry)
        insert_entries(db, rows)
    return IngestResult(tuple(stored), duplicates, tuple(forks), tuple(gaps), tuple(refused))


def add_fork(db: sqlite3.Connection, proof: ForkProof, now: int) -> bool:
    with Transaction(db):
        cur = db.execute(
            "INSERT OR IGNORE INTO forks (ledger, author, seq, proof, found) VALUES (?, ?, ?, ?, ?)",
            (proof.a.ledger_id.raw, proof.a.header.author, proof.seq, proof.encode(), now),
        )
        return cur.rowcount > 0


def repair(db: sqlite3.Connection, entry: Entry) -> bool:
    with Transaction(db):
        # An erased payload (NULL, SPEC.md §20) stays erased: a repair puts back only what was damaged.
        cur = db.execute("UPDATE entries SET header = ?3, payload = CASE WHEN payload IS NULL THEN NULL ELSE ?4 END "
                         f"WHERE {BY_ID}",
                         (idh(entry.id), entry.id.raw, entry.header_raw, entry.payload_raw))
        # The state of its ledger was folded without the damaged entry: its snapshot is stale now.
        drop_snapshot(db, entry.ledger_id.raw)
        return cur.rowcount > 0 or _unquarantine(db, entry)


def _restore(db: sqlite3.Connection, entry: Entry) -> bool:
    """Put a good copy (verified, so its bytes hash to its id) of an entry stored here with damaged bytes back,
    in place or from quarantine, in the caller's transaction. False if no such entry is here, or ours is sound:
    equal bytes are compared, not hashed, so a duplicate costs little."""
    row = db.execute(f"SELECT header, payload FROM entries WHERE {BY_ID}",
                     (idh(entry.id), entry.id.raw)).fetchone()
    if row is not None:
        ours = (bytes(row[0]), None if row[1] is None else bytes(row[1]))
        # an erased payload stays erased, and a copy without its payload leaves ours as it is
        good = (entry.header_raw, ours[1] if entry.payload_raw is None or ours[1] is None else entry.payload_raw)
        if good == ours:
            return False  # the same bytes: a plain duplicate
        db.execute(f"UPDATE entries SET header = ?3, payload = ?4 WHERE {BY_ID}",
                   (idh(entry.id), entry.id.raw, *good))
        return True
    return _unquarantine(db, entry)


def _unquarantine(db: sqlite3.Connection, entry: Entry) -> bool:
    """Put a good copy of a quarantined entry back in its chain (in the caller's transaction). Its id is the
    one stored when it was first checked, so it links its chain as before."""
    row = db.execute("SELECT received FROM quarantine WHERE idh = ? AND id = ?",
                     (idh(entry.id), entry.id.raw)).fetchone()
    if row is None:
        return False
    db.execute("DELETE FROM quarantine WHERE idh = ? AND id = ?", (idh(entry.id), entry.id.raw))
    insert_entries(db, [entry_row(entry, int(row[0]))])
    return True


def quarantine(db: sqlite3.Connection, entry_id: bytes, now: int) -> Quarantined | None:
    with Transaction(db):
        row = db.execute(f"SELECT {COLUMNS} FROM entries WHERE {BY_ID}",
                         (idh(CID(entry_id)), entry_id)).fetchone()
        if row is None:
            return None
        try:  # checked again under the lock: a good copy may have come meanwhile
            decode_stored_entry(entry_id, row[7], row[8])
            return None
        except InvalidData:
            pass
        db.execute(f"INSERT OR REPLACE INTO quarantine ({COLUMNS}, found) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (*row, now))
        db.execute(f"DELETE FROM entries WHERE {BY_ID}", (row[0], entry_id))
        drop_snapshot(db, bytes(row[2]))
        return Quarantined(CID(entry_id), CID(row[2]), bytes(row[3]), int(row[4]), now)


def erase_payloads(db: sqlite3.Connection, ids: list[CID]) -> int:
    with Transaction(db):
        dropped = sum(db.execute(f"UPDATE entries SET payload = NULL WHERE {BY_ID} AND payload IS NOT NULL",
                                 (idh(cid), cid.raw)).rowcount for cid in ids)
        for cid in ids:  # an erased payload changes its ledger's state: the snapshot of it is stale
            row = db.execute(f"SELECT ledger FROM entries WHERE {BY_ID}", (idh(cid), cid.raw)).fetchone()
            if row is not None:
                drop_snapshot(db, bytes(row[0]))
    if dropped:
        # A reader's snapshot may keep the checkpoint from finishing; the next erasure or start retries it.
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return dropped


def drop_snapshot(db: sqlite3.Connection, ledger: bytes) -> None:
    """Drop a ledger's snapshot and its fold's parts (in the caller's transaction)."""
    db.execute("DELETE FROM snapshots WHERE ledger = ?", (ledger,))
    db.execute("DELETE FROM fold_parts WHERE ledger = ?", (ledger,))


def _plain_delete(db: sqlite3.Connection) -> contextlib.AbstractContextManager[None]:
    """secure_delete off while a snapshot's state is replaced: the state replaced holds nothing erased (an erasure
    drops its ledger's snapshot, zeroed then), and zeroing tens of MB doubles what a stopping node waits for."""
    return _pragma(db, "secure_delete", "OFF", "ON")


@contextlib.contextmanager
def _pragma(db: sqlite3.Connection, name: str, value: str, back: str) -> Iterator[None]:
    db.execute(f"PRAGMA {name} = {value}")
    try:
        yield
    finally:
        db.execute(f"PRAGMA {name} = {back}")


def keep_snapshot(db: sqlite3.Connection, ledger: bytes, snapshot: Snapshot, now: int) -> bool:
    with Transaction(db):
        entries, rowids = db.execute(COVERAGE_SQL, (ledger,)).fetchone()
        forks = fork_points({bytes(a): int(s) for a, s in db.execute(FORK_POINTS_SQL, (ledger,))})
        if (entries, forks) != (snapshot.coverage.entries, snapshot.coverage.forks):
            return False
        fold = snapshot.fold
        if fold is not None and fold.parts:
            written = db.execute("SELECT count(*) FROM fold_parts WHERE ledger = ? AND token = ?",
                                 (ledger, fold.token)).fetchone()[0]
            if written != fold.parts or fold.entries != entries:
                return False
        old = db.execute("SELECT fold_token, forks FROM snapshots WHERE ledger = ?", (ledger,)).fetchone()
        # The parts of any other save of this ledger (the one replaced, one abandoned) go; the fold kept before
        # stays with the new state (fold None) if it was folded with the same fork points.
        kept = old[0] if fold is None and old is not None and old[0] is not None and bytes(old[1]) == forks else None
        db.execute("DELETE FROM fold_parts WHERE ledger = ? AND token IS NOT ?",
                   (ledger, kept if fold is None else fold.token))
        with _plain_delete(db):  # the state replaced: not zeroed (fold parts dropped are, as any row)
            db.execute(
                "INSERT INTO snapshots (ledger, format, entries, rowids, forks, ids, digest, checksum, state, made)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (ledger) DO UPDATE SET format = excluded.format,"
                " entries = excluded.entries, rowids = excluded.rowids, forks = excluded.forks, ids = excluded.ids,"
                " digest = excluded.digest, checksum = excluded.checksum, state = excluded.state,"
                " made = excluded.made",
                (ledger, snapshot.format, entries, rowids, forks, snapshot.ids, snapshot.digest, snapshot.checksum,
                 snapshot.state, now),
            )
        if kept is not None:
            return True
        values: tuple[Any, ...] = (None,) * 8
        if fold is not None and fold.parts:  # it covers the same rows as the state
            last = db.execute("SELECT coalesce(max(rowid), 0) FROM entries WHERE ledger = ?", (ledger,)).fetchone()[0]
            values = (fold.format, fold.token, fold.parts, fold.checksum, entries, rowids, last, fold.digest)
        elif fold is not None:
            values = (fold.format, *(None,) * 7)
        db.execute("UPDATE snapshots SET fold = ?, fold_token = ?, fold_parts = ?, fold_checksum = ?, fold_entries = ?,"
                   " fold_rowids = ?, fold_last = ?, fold_digest = ? WHERE ledger = ?", (*values, ledger))
        return True


def keep_fold_part(db: sqlite3.Connection, ledger: bytes, token: bytes, part: int, data: bytes) -> None:
    """One part of a fold being saved: its own transaction, so that appends go between the parts."""
    with Transaction(db):
        db.execute("INSERT OR REPLACE INTO fold_parts (ledger, token, part, bytes) VALUES (?, ?, ?, ?)",
                   (ledger, token, part, data))


def add_invitation(db: sqlite3.Connection, i: Invitation) -> None:
    with Transaction(db):
        db.execute("INSERT INTO invitations (hash, ledger, uses, expires, created, revoked) VALUES (?, ?, ?, ?, ?, ?)",
                   (i.hash, i.ledger.raw, i.uses, i.expires, i.created, i.revoked))


def take_invitation(db: sqlite3.Connection, digest: bytes, now: int) -> Invitation | None:
    with Transaction(db):
        cur = db.execute("UPDATE invitations SET uses = uses - 1 WHERE hash = ? AND uses > 0 AND revoked IS NULL "
                         "AND expires > ?", (digest, now))
        if cur.rowcount != 1:
            return None
        h, ledger, uses, expires, created, revoked = db.execute(
            "SELECT hash, ledger, uses, expires, created, revoked FROM invitations WHERE hash = ?", (digest,)
        ).fetchone()
        return Invitation(h, CID(ledger), uses, expires, created, revoked)


def write(db: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> None:
    with Transaction(db):
        db.execute(sql, args)


def follow(db: sqlite3.Connection, ledger: CID, now: int) -> bool:
    with Transaction(db):
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

