"""The id index out of the entries table (schema 7, 8): a settled part and a small recent part merged into it,
filled a transaction at a time (`insert_entries`), emptied of a deleted row by a trigger; a schema 6 store (one
`entries_idh` index) migrates to it. Real SQLite files throughout."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from node.store import transactions as tx
from node.store.rows import AFTER_IN_CHAIN_SQL, AFTER_IN_LEDGER_SQL, INSERT_SQL, entry_row, idh
from node.store.schema import MIGRATIONS, SCHEMA_VERSION
from node.store.store import Store
from protocol import GENESIS_KIND, Entry, SigningKey, create_entry
from protocol.writes import AppendRequest

KEY = SigningKey(bytes(range(32)))
OTHER = SigningKey(bytes(range(1, 33)))


def a_chain(key: SigningKey, count: int) -> list[Entry]:
    """A genesis by `key` and its entries after it, `count` in all."""
    chain = [create_entry(key, ledger=None, seq=1, prev=None, ts=1000, kind=GENESIS_KIND,
                          body={"name": "old", "visibility": "members"})]
    while len(chain) < count:
        chain.append(create_entry(key, ledger=chain[0].id, seq=len(chain) + 1, prev=chain[-1].id,
                                  ts=2000 + len(chain), kind="note.text", body={"i": len(chain)}))
    return chain


def a_schema_6_store(path: Path, entries: list[Entry]) -> None:
    """A store file as Tally at schema 6 made it: its migrations as they shipped, its rows as it wrote them."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    for version, script in enumerate(MIGRATIONS[:6], start=1):
        db.executescript(script)
        db.execute(f"PRAGMA user_version = {version}")
    db.executemany(INSERT_SQL, [entry_row(e, 5) for e in entries])
    db.close()


def counts(path: Path) -> tuple[int, int, int]:
    """(entries, settled ids, recent ids)."""
    with sqlite3.connect(path) as db:
        return tuple(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                     for t in ("entries", "entry_ids", "recent_ids"))


async def every_id_found(store: Store, entries: list[Entry]) -> None:
    for e in entries:
        got = await store.get(e.id)
        assert got is not None and got.id == e.id and got.payload_raw == e.payload_raw, e.seq


async def test_a_schema_6_store_migrates_its_id_index(tmp_path: Path) -> None:
    path = tmp_path / "tally.sqlite3"
    old, more = a_chain(OTHER, 40)[:30], a_chain(OTHER, 40)[30:]
    ledger = old[0].id
    a_schema_6_store(path, old)
    async with await Store.open(path, key=KEY) as store:
        assert [p async for p in store.verify()] == []
        await every_id_found(store, old)
        assert await store.has_ledger(ledger) and not await store.has_ledger(old[1].id)
        (info,) = await store.ledgers()
        assert (info.id, info.name, info.entries) == (ledger, "old", 30)
        assert await store.replicated(OTHER.public_key) == [ledger]
        page = await store.log_page(ledger, 5, after=old[9].id)
        assert [e.seq for e in page] == [11, 12, 13, 14, 15]
        assert len((await store.ingest(more)).stored) == 10
        mine = await store.append(AppendRequest(ledger, "note.text", {"by": "key"}, 9000))
        await every_id_found(store, [*old, *more, mine])
    assert counts(path) == (41, 30, 11)  # the old ids settled by the migration, the new ones recent
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 9
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        assert {"entry_ids", "recent_ids", "entries_id_out", "entries_genesis"} <= names
        assert not names & {"entries_idh", "entries_kind", "entries_id_in"}
        plan = " ".join(str(row) for row in db.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM entries WHERE kind = 'ledger.genesis' AND ledger = id"))
        assert "entries_genesis" in plan, plan


async def test_recent_ids_settle_and_every_id_stays_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tx, "SETTLE_MIN", 8)
    monkeypatch.setattr(tx, "SETTLE_SHARE", 10**9)  # merge at 8 recent ids whatever the store's size
    path = tmp_path / "s.sqlite3"
    theirs = a_chain(OTHER, 40)
    mine: list[Entry] = []
    async with await Store.open(path, key=KEY) as store:
        for i in range(0, 40, 5):  # ingest: one transaction per batch
            assert len((await store.ingest(theirs[i : i + 5])).stored) == 5
            total, settled, recent = counts(path)
            assert (total, settled + recent) == (i + 5, i + 5) and recent < 8 + 5
        for i in range(4):  # local appends: one group, one transaction, per call
            mine += await store.append_batch([AppendRequest(theirs[0].id, "note.text", {"i": i, "j": j}, 9000)
                                              for j in range(3)])
        total, settled, recent = counts(path)
        assert total == settled + recent == 52 and settled >= 40
        await every_id_found(store, theirs + mine)
        # Erasure finds a settled and a recent entry by id.
        assert await store.erase_payloads([theirs[3].id, mine[-1].id]) == 2
        assert [p async for p in store.verify()] == []
    # A row deleted (as quarantine does) leaves neither part of the index.
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM entries WHERE id IN (?, ?)", (theirs[5].id.raw, mine[-2].id.raw))
    assert counts(path)[0] == counts(path)[1] + counts(path)[2] == 50
    async with await Store.open(path, key=KEY) as store:
        assert await store.get(theirs[5].id) is None and await store.get(mine[-2].id) is None
        await every_id_found(store, [e for e in theirs + mine if e not in (theirs[5], mine[-2], theirs[3], mine[-1])])


def test_settling_waits_for_a_share_of_a_big_store(tmp_path: Path) -> None:
    """Below SETTLE_MIN recent ids nothing merges; in a big store, only once they are a SETTLE_SHARE-th of its rows."""
    db = sqlite3.connect(tmp_path / "s.sqlite3", isolation_level=None)
    for version, script in enumerate(MIGRATIONS, start=1):
        db.executescript(script)
        db.execute(f"PRAGMA user_version = {version}")

    def rows(start: int, count: int) -> list[tuple[object, ...]]:
        return [(i, i.to_bytes(36, "big"), b"l", b"a", i, 0, "k", b"h", None, 0) for i in range(start, start + count)]

    def parts() -> tuple[int, int, int]:
        return tuple(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                     for t in ("entries", "entry_ids", "recent_ids"))

    db.execute("BEGIN")
    tx.insert_entries(db, rows(1, tx.SETTLE_MIN - 1))
    assert parts() == (tx.SETTLE_MIN - 1, 0, tx.SETTLE_MIN - 1)
    tx.insert_entries(db, rows(tx.SETTLE_MIN, 1))
    assert parts() == (tx.SETTLE_MIN, tx.SETTLE_MIN, 0)
    # As if the store held 1,000,000 rows: the recent ids wait for 1,000,000 / SETTLE_SHARE of them.
    tx.insert_entries(db, [(0, b"x", b"l", b"b", 1, 0, "k", b"h", None, 0)])
    db.execute("UPDATE entries SET rowid = 1000000 WHERE id = x'78'")
    db.execute("UPDATE recent_ids SET rid = 1000000 WHERE idh = 0")
    tx.insert_entries(db, rows(10_000, 1_000_000 // tx.SETTLE_SHARE - 2))
    assert parts()[2] == 1_000_000 // tx.SETTLE_SHARE - 1
    tx.insert_entries(db, rows(100_000, 2000))
    db.execute("COMMIT")
    total, settled, recent = parts()
    assert total == settled and recent == 0
    db.close()


async def test_ids_are_indexed_when_sqlite_picks_rowids_at_random(tmp_path: Path) -> None:
    """Once the largest rowid is taken SQLite picks new rowids at random: each new row is then found by its chain."""
    path = tmp_path / "s.sqlite3"
    chain = a_chain(OTHER, 20)
    async with await Store.open(path, key=KEY) as store:
        assert len((await store.ingest(chain[:5])).stored) == 5
    with sqlite3.connect(path) as db:  # a row of another ledger at the largest rowid
        db.execute(f"INSERT INTO entries (rowid, {INSERT_SQL.split('(', 1)[1].split(')')[0]}) VALUES"
                   " (9223372036854775807, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (12345, b"\x01" * 36, b"l",
                                                                           b"a", 1, 0, "k", b"h", None, 0))
    async with await Store.open(path, key=KEY) as store:
        assert len((await store.ingest(chain[5:])).stored) == 15
        await every_id_found(store, chain)
    total, settled, recent = counts(path)
    assert total == 21 and settled + recent == 20  # the row put in by hand is not indexed: none but these


async def test_verify_reports_an_entry_missing_from_the_id_index_and_a_stray_row(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    chain = a_chain(OTHER, 10)
    async with await Store.open(path, key=KEY) as store:
        await store.ingest(chain)
        assert [p async for p in store.verify()] == []
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM recent_ids WHERE rid = (SELECT rowid FROM entries WHERE id = ?)", (chain[4].id.raw,))
        db.execute("INSERT INTO entry_ids (idh, rid) VALUES (7, 1234)")
    async with await Store.open(path, key=KEY) as store:
        problems = [(p.entry_id, p.code, p.message) async for p in store.verify()]
        assert await store.get(chain[4].id) is None  # what the problem means
    assert problems == [(str(chain[4].id), "store_corrupt", "not in the id index: not found by its id"),
                        ("-", "store_corrupt", "1 rows of the id index name no stored entry")]



@pytest.mark.parametrize("in_chain", [False, True])
async def test_a_page_finds_its_start_through_the_id_index(tmp_path: Path, in_chain: bool) -> None:
    """Where a history page starts (`after`) is found by id, not by walking its ledger's rows: with the ledger
    compared by the (ledger, author, seq) index's column, SQLite searched that index instead (28 ms a page at
    100,000 entries, 7.5 ms before the id index left the table)."""
    chain = a_chain(KEY, 300)
    path = tmp_path / "s.sqlite3"
    async with await Store.open(path) as store:
        assert len((await store.ingest(chain)).stored) == 300
        author = KEY.public_key if in_chain else None
        page = await store.log_page(chain[0].id, 3, author=author, after=chain[100].id)
        assert [e.seq for e in page] == [102, 103, 104]
    statement, args = AFTER_IN_LEDGER_SQL, (idh(chain[100].id), chain[100].id.raw, chain[0].id.raw)
    if in_chain:
        statement, args = AFTER_IN_CHAIN_SQL, (*args, KEY.public_key)
    with sqlite3.connect(path) as db:
        plan = [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {statement}", args)]
    assert plan[0] == "SEARCH entries USING INTEGER PRIMARY KEY (rowid=?)", plan
