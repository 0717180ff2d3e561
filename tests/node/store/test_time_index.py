"""The time index (schema 9): a ledger read in time order (`log_rows` by_time, what a fold from the store reads)
walks `entries_time` instead of sorting every row of the ledger, bytes and all, before the first comes out; a
schema 8 store file made by Tally migrates to it and reads back the same ledger. Real SQLite files throughout."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

from node.store import reads
from node.store.ledgers import fold_ledger, load_state
from node.store.schema import SCHEMA_VERSION
from node.store.store import Store
from protocol import SigningKey

DATA = Path(__file__).parent / "data"
ANA = SigningKey(bytes(range(32)))
BEN = SigningKey(bytes(range(1, 33)))
V8_DIGEST = "77ddbe441c13f5323b1b87f189b6eb49094eadd982049453ff6e763d3b9a491f"  # data/README.md


def plan(path: Path, sql: str, args: tuple[object, ...]) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", args)]


async def test_a_schema_8_store_migrates_and_reads_its_ledger_in_time_order(tmp_path: Path) -> None:
    """data/store_v8.sqlite3 was made by Tally at schema 8: Ben's entries stored after Ana's (rowids out of time
    order), many at the same ms. Migrated, its rows are as they were, a read by time gives them in (ts, id) order,
    and its state, folded from that read, is the one Tally computed then (its digest, in data/README.md)."""
    path = tmp_path / "tally.sqlite3"
    shutil.copyfile(DATA / "store_v8.sqlite3", path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 8
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'entries_time'").fetchone()[0] == 0
        rows = db.execute("SELECT rowid, * FROM entries ORDER BY rowid").fetchall()
    async with await Store.open(path, key=ANA) as store:
        assert [p async for p in store.verify()] == []
        (info,) = await store.ledgers()
        assert (info.name, info.entries) == ("Bike coop", 25)
        by_time = [e async for e in store.log(info.id, by_time=True)]
        order = [(e.header.ts, e.id.raw) for e in by_time]
        assert order == sorted(order) and len(set(order)) == 25
        assert len({ts for ts, _ in order}) < 25  # ties, ordered by id
        assert [e.id for e in by_time] != [e.id for e in sorted(by_time, key=lambda e: rows_at(rows, e.id.raw))]
        fold = await fold_ledger(store, info.id)
        assert fold is not None
        assert fold.state().digest.hex() == V8_DIGEST
        assert fold.state() == await load_state(store, info.id)
        heads = await store.frontier(info.id)
        assert {author: head.seq for author, head in heads.items()} == {ANA.public_key: 13, BEN.public_key: 12}
        assert all(head.id == max((e for e in by_time if e.header.author == author), key=lambda e: e.seq).id
                   for author, head in heads.items())
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 9
        assert db.execute("SELECT rowid, * FROM entries ORDER BY rowid").fetchall() == rows  # rows untouched
    by_time_plan = plan(path, reads._LOG_BY_TIME_SQL, (info.id.raw,))
    # the index in ts order; only entries of one ms are sorted (by id), never the whole ledger
    assert by_time_plan == ["SEARCH entries USING INDEX entries_time (ledger=?)",
                            "USE TEMP B-TREE FOR RIGHT PART OF ORDER BY"], by_time_plan
    frontier_plan = plan(path, reads._FRONTIER_SQL, (info.id.raw,))
    assert frontier_plan[-1] == ("SEARCH e USING INDEX sqlite_autoindex_entries_1 (ledger=? AND author=? AND seq=?)"
                                 ), frontier_plan  # each head's row found by its key, not a row read per entry


async def test_a_fold_reads_the_ledger_in_the_time_index_order_without_sorting(tmp_path: Path) -> None:
    """What a fold reads (`fold_rows`): every row of the ledger once, in time order, the entries of one ms in the
    order stored (rowid), straight off the (ledger, ts) index: no sort at all, not even of one ms's rows. The
    state folded from it is the one Tally computed (the first test: `fold_ledger`)."""
    path = tmp_path / "tally.sqlite3"
    shutil.copyfile(DATA / "store_v8.sqlite3", path)
    async with await Store.open(path, key=ANA) as store:
        (info,) = await store.ledgers()
        by_time = [e async for e in store.log(info.id, by_time=True)]
        read = [row async for rows in store.fold_rows(info.id, size=4) for row in rows]
    with sqlite3.connect(path) as db:
        rowids = {bytes(rid): (ts, rowid) for rowid, rid, ts in db.execute("SELECT rowid, id, ts FROM entries")}
    assert sorted(bytes(rid) for rid, _, _ in read) == sorted(e.id.raw for e in by_time)
    order = [rowids[bytes(rid)] for rid, _, _ in read]
    assert order == sorted(order)
    assert [bytes(rid) for rid, _, _ in read] != [e.id.raw for e in by_time]  # ties as stored, not by id
    assert plan(path, reads._FOLD_SQL, (info.id.raw,)) == ["SEARCH entries USING INDEX entries_time (ledger=?)"]


def rows_at(rows: list[tuple[Any, ...]], entry_id: bytes) -> int:
    """The rowid of the stored row of `entry_id` (the order rows were stored in)."""
    return next(int(row[0]) for row in rows if row[2] == entry_id)
