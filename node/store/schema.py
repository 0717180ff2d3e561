"""The store file's schema and its connection settings: each migration, kept as it shipped, and the writer's
connection (WAL, synchronous=FULL, secure_delete), on which every write runs in a `Transaction`."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Final

from protocol import LocalError

SCHEMA_VERSION: Final = 9
BUSY_TIMEOUT_MS: Final = 30_000

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
    """
    ALTER TABLE snapshots ADD COLUMN fold TEXT;     -- the fold kept with the state (node/store/snapshots.py): its
    ALTER TABLE snapshots ADD COLUMN fold_token BLOB;   -- format ('whole': a ledger folded whole, none kept),
    ALTER TABLE snapshots ADD COLUMN fold_parts INTEGER; -- the parts it was written in,
    ALTER TABLE snapshots ADD COLUMN fold_checksum BLOB; -- and sha2-256 of their bytes in order; NULL: none
    CREATE TABLE fold_parts (            -- a fold's pickled bytes, written a part per transaction
        ledger   BLOB NOT NULL,
        token    BLOB NOT NULL,          -- which save wrote it: parts of an abandoned save are dropped by the next
        part     INTEGER NOT NULL,
        bytes    BLOB NOT NULL,
        PRIMARY KEY (ledger, token, part)
    );
    """,
    """
    ALTER TABLE snapshots ADD COLUMN fold_entries INTEGER;  -- the ledger's rows the fold covers (it may be older
    ALTER TABLE snapshots ADD COLUMN fold_rowids INTEGER;   -- than the state: the rows after fold_last are
    ALTER TABLE snapshots ADD COLUMN fold_last INTEGER;     -- folded in when it is read back): their count, the
    ALTER TABLE snapshots ADD COLUMN fold_digest BLOB;      -- sum and the largest of their rowids; its state's digest
    """,
    """
    CREATE TABLE entry_ids (             -- the id index of `entries` (idh, its rowid), out of the table: most of it
        idh      INTEGER NOT NULL,       -- settled here, merged in sorted runs (node/store/transactions.py
        rid      INTEGER NOT NULL,       -- settle_ids); entries_idh took a random page write per entry stored
        PRIMARY KEY (idh, rid)
    ) WITHOUT ROWID;
    CREATE TABLE recent_ids (            -- the ids stored since the last merge: a small index, so a commit dirties
        idh      INTEGER NOT NULL,       -- few of its pages however big the store
        rid      INTEGER NOT NULL,
        PRIMARY KEY (idh, rid)
    ) WITHOUT ROWID;
    INSERT INTO entry_ids (idh, rid) SELECT idh, rowid FROM entries;
    DROP INDEX entries_idh;
    CREATE TRIGGER entries_id_in AFTER INSERT ON entries BEGIN
        INSERT INTO recent_ids (idh, rid) VALUES (new.idh, new.rowid);
    END;
    CREATE TRIGGER entries_id_out AFTER DELETE ON entries BEGIN
        DELETE FROM recent_ids WHERE idh = old.idh AND rid = old.rowid;
        DELETE FROM entry_ids WHERE idh = old.idh AND rid = old.rowid;
    END;
    DROP INDEX entries_kind;             -- only genesis entries are looked up by kind: indexed alone
    CREATE INDEX entries_genesis ON entries (ledger) WHERE kind = 'ledger.genesis';
    """,
    """
    DROP TRIGGER entries_id_in;          -- new ids are indexed a transaction at a time (transactions.py insert_entries)
    """,
    """
    CREATE INDEX entries_time ON entries (ledger, ts);  -- a ledger read in time order (reads.py `log_rows`,
                                         -- by_time: a fold from the store) without sorting all its rows' bytes first
    """,
)



def open_writer(path: Path) -> sqlite3.Connection:
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
        migrate(db)
    except BaseException:
        db.close()
        raise
    return db



class Transaction:
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



def migrate(db: sqlite3.Connection) -> None:
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise LocalError("schema_too_new", f"store schema {version} is newer than this Tally's {SCHEMA_VERSION}")
    for target in range(version + 1, SCHEMA_VERSION + 1):
        with Transaction(db):
            # Re-read inside the lock: another process may have migrated meanwhile.
            if int(db.execute("PRAGMA user_version").fetchone()[0]) >= target:
                continue
            for statement in _statements(MIGRATIONS[target - 1]):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {target}")




def _statements(script: str) -> list[str]:
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    # Split where SQLite sees a statement end: a trigger's body holds `;` of its own.
    statements: list[str] = []
    pending = ""
    for part in "\n".join(lines).split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                statements.append(pending.strip())
            pending = ""
    if pending.strip(" \n;"):
        raise ValueError(f"incomplete statement in a migration: {pending.strip()[:80]}")
    return statements
