"""The store on real SQLite files: appends, ingest, forks, crash safety, corruption."""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from node.home import Home
from node.store import appends
from node.store import transactions as tx
from node.store.rows import entry_row
from node.store.schema import SCHEMA_VERSION, Transaction, open_writer
from node.store.store import Store
from protocol import CID, GENESIS_KIND, ChainHead, Entry, SigningKey, create_entry, verify_chain
from protocol.writes import AppendRequest

KEY = SigningKey(bytes(range(32)))
OTHER = SigningKey(bytes(range(1, 33)))


async def found_ledger(store: Store) -> CID:
    genesis = await store.append(AppendRequest(None, GENESIS_KIND, {"name": "t", "visibility": "members"}, 1000))
    return genesis.id


async def chain_of(store: Store, ledger: CID, key: SigningKey) -> list:
    return [e async for e in store.log(ledger, key.public_key)]


async def test_concurrent_appends_take_distinct_seqs(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.sqlite3", key=KEY) as store:
        ledger = await found_ledger(store)
        entries = await asyncio.gather(
            *(store.append(AppendRequest(ledger, "note.text", {"i": i}, 2000)) for i in range(300))
        )
        assert sorted(e.seq for e in entries) == list(range(2, 302))
        chain = await chain_of(store, ledger, KEY)
        assert [e.seq for e in chain] == list(range(1, 302))
        verify_chain(chain)
        assert [p async for p in store.verify()] == []


@pytest.mark.parametrize("limit", [None, 25])
async def test_rows_are_inserted_many_to_a_statement_within_sqlites_limit(tmp_path: Path, limit: int | None) -> None:
    # insert_entries binds up to ROWS_PER_INSERT rows to a statement (301 rows: 256 + 32 + 8 + 4 + 1), and fewer
    # where SQLite allows fewer parameters (25: two rows of ten); every row is stored and indexed either way.
    genesis = create_entry(KEY, ledger=None, seq=1, prev=None, ts=1, kind=GENESIS_KIND, body={"name": "t"})
    chain = [genesis]
    for seq in range(2, 302):
        chain.append(create_entry(KEY, ledger=genesis.id, seq=seq, prev=chain[-1].id, ts=seq, kind="note.text",
                                  body={"i": seq}))
    db = open_writer(tmp_path / "s.sqlite3")
    try:
        if limit is not None:
            db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)
        with Transaction(db):
            tx.insert_entries(db, [entry_row(e, 7) for e in chain])
    finally:
        db.close()
    async with await Store.open(tmp_path / "s.sqlite3") as store:
        assert [e.id for e in await chain_of(store, genesis.id, KEY)] == [e.id for e in chain]
        assert [await store.get(e.id) for e in (chain[0], chain[150], chain[-1])] == [chain[0], chain[150], chain[-1]]
        assert [p async for p in store.verify()] == []


async def test_ts_never_regresses_when_the_clock_steps_back(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.sqlite3", key=KEY) as store:
        ledger = await found_ledger(store)
        a = await store.append(AppendRequest(ledger, "note.text", {}, 5000))
        b = await store.append(AppendRequest(ledger, "note.text", {}, 4000))
        assert b.header.ts == a.header.ts == 5000


async def test_append_batch_is_one_chain(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.sqlite3", key=KEY) as store:
        ledger = await found_ledger(store)
        made = await store.append_batch([AppendRequest(ledger, "note.text", {"i": i}, 3000 + i) for i in range(50)])
        assert [e.seq for e in made] == list(range(2, 52))
        verify_chain(await chain_of(store, ledger, KEY))


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from protocol import CID, SigningKey
    from node.store.store import Store
    from protocol.writes import AppendRequest

    async def main():
        key = SigningKey(bytes.fromhex(sys.argv[2]))
        ledger = CID.parse(sys.argv[3])
        count = int(sys.argv[4])
        async with await Store.open(sys.argv[1], key=key) as store:
            for i in range(count):
                if i % 10 == 9:  # some group commits too
                    made = await asyncio.gather(*(store.append(AppendRequest(ledger, "note.text", {"i": i, "j": j}, 10))
                                                  for j in range(5)))
                    for e in made:
                        print(e.id, flush=True)
                else:
                    e = await store.append(AppendRequest(ledger, "note.text", {"i": i}, 10))
                    print(e.id, flush=True)

    asyncio.run(main())
    """
)


BATCH_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from protocol import CID, SigningKey
    from node.store.store import Store
    from protocol.writes import AppendRequest

    async def main():
        key = SigningKey(bytes.fromhex(sys.argv[2]))
        ledger = CID.parse(sys.argv[3])
        async with await Store.open(sys.argv[1], key=key) as store:
            for i in range(int(sys.argv[4])):
                # batches of two groups and some: the next group is signed while the one before commits
                made = await store.append_batch([AppendRequest(ledger, "note.text", {"i": i, "j": j}, 10)
                                                 for j in range(1200)])
                print("\\n".join(str(e.id) for e in made), flush=True)

    asyncio.run(main())
    """
)


def spawn_writer(db: Path, ledger: CID, count: int, script: str = WRITER) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, str(db), KEY.seed.hex(), str(ledger), str(count)],
        stdout=subprocess.PIPE, text=True,
    )


async def test_processes_appending_at_once_never_share_a_seq(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite3"
    async with await Store.open(db, key=KEY) as store:
        ledger = await found_ledger(store)
    procs = [spawn_writer(db, ledger, 40) for _ in range(3)]
    acked = set()
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0
        acked.update(out.split())
    async with await Store.open(db) as store:
        chain = await chain_of(store, ledger, KEY)
        assert len(acked) == 3 * (36 + 4 * 5)
        assert {str(e.id) for e in chain} >= acked
        assert [e.seq for e in chain] == list(range(1, len(chain) + 1))
        verify_chain(chain)
        assert [p async for p in store.verify()] == []


async def test_kill_9_mid_append_loses_no_acknowledged_entry(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    home.create_identity(KEY)
    db = home.store_path
    async with await Store.open(db, key=KEY) as store:
        ledger = await found_ledger(store)
    rng = random.Random(7)
    acked: list[str] = []
    for _ in range(4):
        proc = spawn_writer(db, ledger, 100_000)
        assert proc.stdout is not None
        target = rng.randint(20, 300)
        for got, line in enumerate(proc.stdout, start=1):
            acked.append(line.strip())
            if got >= target:
                break
        proc.send_signal(signal.SIGKILL)
        # printed before the kill landed: acknowledged too. Read on through the same reader: it holds what it read
        # ahead (communicate() would read the pipe past it, leaving a line cut in two); the last line may be cut.
        acked.extend(proc.stdout.read().split("\n")[:-1])
        assert proc.wait(timeout=60) == -signal.SIGKILL
        async with await Store.open(db) as store:
            assert [p async for p in store.verify()] == []
            stored = {str(e.id) for e in await chain_of(store, ledger, KEY)}
            missing = set(acked) - stored
            assert not missing, f"{len(missing)} acknowledged entries lost"
    # and the real command agrees
    result = subprocess.run(
        [str(Path(sys.executable).with_name("tally")), "--home", str(home.path), "verify"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # committed-but-not-yet-printed entries may exist too: at least every acknowledged one
    verified = int(result.stdout.split("\t")[1].split()[0])
    assert verified >= len(set(acked)) + 1


async def test_ingest_stores_links_and_reports_duplicates_gaps_forks(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.sqlite3", key=KEY) as store:
        ledger = await found_ledger(store)
        e1 = create_entry(OTHER, ledger=ledger, seq=1, prev=None, ts=10, kind="note.text", body={"n": 1})
        e2 = create_entry(OTHER, ledger=ledger, seq=2, prev=e1.id, ts=11, kind="note.text", body={"n": 2})
        e3 = create_entry(OTHER, ledger=ledger, seq=3, prev=e2.id, ts=12, kind="note.text", body={"n": 3})
        r = await store.ingest([e1, e3])
        assert r.stored == (e1,) and r.gaps == (e3,)
        r = await store.ingest([e1, e2, e3])
        assert r.duplicates == 1 and r.stored == (e2, e3)
        assert await store.head(ledger, OTHER.public_key) == ChainHead.of(e3)
        # a second, conflicting seq 2: a fork, proven and kept; the entry itself is not stored
        e2b = create_entry(OTHER, ledger=ledger, seq=2, prev=e1.id, ts=11, kind="note.text", body={"n": "other"})
        r = await store.ingest([e2b])
        assert len(r.forks) == 1 and r.stored == ()
        proofs = await store.forks()
        assert len(proofs) == 1 and {proofs[0].a.id, proofs[0].b.id} == {e2.id, e2b.id}
        assert (await store.get(e2b.id)) is None
        # the next seq with a wrong prev or an earlier ts is refused by the chain rules
        bad_prev = create_entry(OTHER, ledger=ledger, seq=4, prev=e1.id, ts=13, kind="note.text", body={})
        bad_ts = create_entry(OTHER, ledger=ledger, seq=4, prev=e3.id, ts=5, kind="note.text", body={})
        r = await store.ingest([bad_prev, bad_ts])
        assert [(e.id, err.code) for e, err in r.refused] == [(bad_prev.id, "bad_prev"), (bad_ts.id, "ts_regression")]
        assert [p async for p in store.verify()] == []


async def test_fork_within_one_batch(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.sqlite3", key=KEY) as store:
        ledger = await found_ledger(store)
        a = create_entry(OTHER, ledger=ledger, seq=1, prev=None, ts=10, kind="note.text", body={"v": "a"})
        b = create_entry(OTHER, ledger=ledger, seq=1, prev=None, ts=10, kind="note.text", body={"v": "b"})
        r = await store.ingest([a, b])
        assert r.stored == (a,) and len(r.forks) == 1


async def test_schema_is_versioned_and_newer_schema_refused(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite3"
    async with await Store.open(db):
        pass
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    from protocol import LocalError

    with pytest.raises(LocalError) as info:
        await Store.open(db)
    assert info.value.code == "schema_too_new"


async def test_flipped_byte_in_the_file_is_caught(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite3"
    async with await Store.open(db, key=KEY) as store:
        ledger = await found_ledger(store)
        entry = await store.append(AppendRequest(ledger, "note.text", {"text": "a distinctive body"}, 2000))
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pristine = db.read_bytes()
    assert entry.payload_raw is not None
    spots = [pristine.find(entry.header_raw) + 40, pristine.find(entry.payload_raw) + 5,
             pristine.find(entry.header_raw) + len(entry.header_raw) - 1]
    assert all(s > 40 for s in spots)
    for spot in spots:
        corrupt = bytearray(pristine)
        corrupt[spot] ^= 0x10
        db.write_bytes(bytes(corrupt))
        async with await Store.open(db) as store:
            problems = [p async for p in store.verify()]
        assert problems, f"flip at {spot} not caught"
    db.write_bytes(pristine)
    async with await Store.open(db) as store:
        assert [p async for p in store.verify()] == []


@pytest.mark.parametrize("read", ["raw_range", "frontier", "head", "id_at", "get", "count"])
async def test_a_read_cancelled_mid_query_leaves_no_stale_snapshot(tmp_path: Path, read: str) -> None:
    # A replication task is cancelled while its read waits on the reader thread (its peer left).
    # The next read, whoever makes it, must still see every commit made since.
    async with await Store.open(tmp_path / "s.sqlite3", key=KEY) as store:
        ledger = await found_ledger(store)
        await store.append_batch([AppendRequest(ledger, "note.text", {"i": i}, 2000) for i in range(5)])
        calls = {
            "raw_range": lambda: store.raw_range(ledger, KEY.public_key, 1, 100),
            "frontier": lambda: store.frontier(ledger),
            "head": lambda: store.head(ledger, KEY.public_key),
            "id_at": lambda: store.id_at(ledger, KEY.public_key, 2),
            "get": lambda: store.get(ledger),
            "count": store.count,
        }
        for _ in range(3):
            reading = asyncio.ensure_future(calls[read]())
            await asyncio.sleep(0)  # the query is queued on the reader thread
            reading.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reading
            await asyncio.sleep(0.05)  # the reader thread has run it meanwhile
            fresh = await store.append(AppendRequest(ledger, "note.text", {"new": True}, 3000))
            assert (await store.head(ledger, KEY.public_key)) == ChainHead.of(fresh)
            assert await store.get(fresh.id) == fresh


async def test_an_append_cancelled_while_it_commits_does_not_stall_later_appends(tmp_path: Path) -> None:
    # The caller of an append may be cancelled (its HTTP client left, the node stops) while its
    # group commits in the writer thread; appends queued meanwhile must still be committed.
    async with await Store.open(tmp_path / "s.sqlite3", key=KEY) as store:
        ledger = await found_ledger(store)
        batch = asyncio.ensure_future(
            store.append_batch([AppendRequest(ledger, "note.text", {"i": i}, 2000) for i in range(200)]))
        for _ in range(3):
            await asyncio.sleep(0)  # the group is signing and committing in the writer thread now
        batch.cancel()
        later = await asyncio.wait_for(store.append(AppendRequest(ledger, "note.text", {"later": True}, 3000)), 30)
        assert later.seq == 202  # the cancelled group was committed all the same (its caller just left)
        assert [e.seq for e in await chain_of(store, ledger, KEY)] == list(range(1, 203))


async def test_a_chain_appended_by_another_store_meanwhile_is_built_on_its_real_head(tmp_path: Path) -> None:
    # Two stores (two processes) on one file, one key: each append is built on the head stored when it commits.
    db = tmp_path / "s.sqlite3"
    async with await Store.open(db, key=KEY) as a, await Store.open(db, key=KEY) as b:
        ledger = await found_ledger(a)
        first = await a.append_batch([AppendRequest(ledger, "note.text", {"a": i}, 2000) for i in range(3)])
        other = await b.append(AppendRequest(ledger, "note.text", {"b": 1}, 2000))
        again = await a.append_batch([AppendRequest(ledger, "note.text", {"a": i}, 2000) for i in range(3, 6)])
        assert [e.seq for e in first] == [2, 3, 4] and other.seq == 5
        assert [e.seq for e in again] == [6, 7, 8] and again[0].header.prev == other.id
        chain = await chain_of(a, ledger, KEY)
        assert [e.id for e in chain] == [ledger, *(e.id for e in first), other.id, *(e.id for e in again)]
        verify_chain(chain)
        assert [p async for p in a.verify()] == []


@pytest.mark.parametrize("moved", [False, True])
async def test_a_group_signed_ahead_commits_as_signed_or_is_built_again_on_the_stored_head(
    tmp_path: Path, moved: bool
) -> None:
    # The two halves of a pipelined group on a real file: signed on the head the store expects, then committed.
    # When the chain moved meanwhile (another process appended), the transaction sees it under the write lock
    # and builds the group again on the stored head: what was signed ahead is never stored.
    db = tmp_path / "s.sqlite3"
    async with await Store.open(db, key=KEY) as store:
        ledger = await found_ledger(store)
        expected = await store.head(ledger, KEY.public_key)
        assert expected is not None
        requests = [AppendRequest(ledger, "note.text", {"i": i}, 3000) for i in range(3)]
        signed = appends.sign_ahead(KEY, requests, {ledger.raw: expected}, 3500)
        other = await store.append(AppendRequest(ledger, "note.text", {"other": 1}, 3000)) if moved else None
    writer = open_writer(db)
    try:
        done = appends.commit_group(writer, KEY, requests, signed, 4000)
    finally:
        writer.close()
    assert done.stale == (frozenset({ledger.raw}) if moved else frozenset())
    made = [e for e in done.results if isinstance(e, Entry)]
    assert [e.body for e in made] == [r.body for r in requests]
    if other is None:
        assert made == signed.items  # committed as signed
    else:
        assert [e.seq for e in made] == [3, 4, 5] and made[0].header.prev == other.id
        assert not {e.id for e in made} & {e.id for e in signed.items if isinstance(e, Entry)}
    assert done.heads[ledger.raw] == ChainHead.of(made[-1])
    async with await Store.open(db) as store:
        chain = await chain_of(store, ledger, KEY)
        assert [e.id for e in chain[-3:]] == [e.id for e in made]
        verify_chain(chain)


async def test_groups_signed_while_others_commit_make_one_chain_in_call_order(tmp_path: Path) -> None:
    # Batches larger than a group, and single appends between them, pipelined (the next group is signed while
    # the one before commits): every caller gets its own entries, in its order, all stored as one chain.
    async with await Store.open(tmp_path / "s.sqlite3", key=KEY) as store:
        ledger = await found_ledger(store)
        batches = [[AppendRequest(ledger, "note.text", {"batch": b, "i": i}, 2000) for i in range(1500)]
                   for b in range(2)]
        made = await asyncio.gather(
            store.append_batch(batches[0]),
            *(store.append(AppendRequest(ledger, "note.text", {"single": i}, 2000)) for i in range(20)),
            store.append_batch(batches[1]),
        )
        for batch, got in ((batches[0], made[0]), (batches[1], made[-1])):
            assert [e.body for e in got] == [r.body for r in batch]
            assert [e.seq for e in got] == list(range(got[0].seq, got[0].seq + len(batch)))
        chain = await chain_of(store, ledger, KEY)
        assert len(chain) == 1 + 3000 + 20
        verify_chain(chain)
        stored = {e.id for e in chain}
        assert all(e.id in stored for e in [*made[0], *made[-1], *made[1:-1]])


async def test_kill_9_mid_batch_loses_no_acknowledged_entry(tmp_path: Path) -> None:
    # The pipelined path: batches of 1,200 (two groups, the second signed ahead while the first commits), the
    # writer killed at a random point. Every id a returned batch printed is stored, the chain whole.
    db = tmp_path / "s.sqlite3"
    async with await Store.open(db, key=KEY) as store:
        ledger = await found_ledger(store)
    rng = random.Random(11)
    acked: list[str] = []
    for _ in range(2):
        proc = spawn_writer(db, ledger, 1000, BATCH_WRITER)
        assert proc.stdout is not None
        target = rng.randint(1, 2) * 1200 + rng.randint(0, 1199)
        for got, line in enumerate(proc.stdout, start=1):
            acked.append(line.strip())
            if got >= target:
                break
        proc.send_signal(signal.SIGKILL)
        acked.extend(proc.stdout.read().split("\n")[:-1])  # as in the test above
        assert proc.wait(timeout=60) == -signal.SIGKILL
        assert len(acked) >= target
        async with await Store.open(db) as store:
            assert [p async for p in store.verify()] == []
            chain = await chain_of(store, ledger, KEY)
            verify_chain(chain)
            assert [e.seq for e in chain] == list(range(1, len(chain) + 1))
            missing = set(acked) - {str(e.id) for e in chain}
            assert not missing, f"{len(missing)} acknowledged entries lost"


async def test_one_batch_checks_each_entry_against_the_one_before_it(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.sqlite3", key=KEY) as store:
        ledger = await found_ledger(store)

        def make(seq: int, prev: Entry | None, ts: int, n: object) -> Entry:
            return create_entry(OTHER, ledger=ledger, seq=seq, prev=prev and prev.id, ts=ts, kind="note.text",
                                body={"n": n})

        e1 = make(1, None, 10, 1)
        e2 = make(2, e1, 11, 2)
        e3 = make(3, e2, 12, 3)
        bad_prev, bad_ts, fork = make(3, e1, 12, "x"), make(3, e2, 5, "t"), make(2, e1, 11, "f")
        r = await store.ingest([e1, e2, e1, bad_prev, bad_ts, fork, e3, make(5, e3, 13, 5)])
        assert r.stored == (e1, e2, e3) and r.duplicates == 1 and len(r.gaps) == 1
        assert [(e.id, err.code) for e, err in r.refused] == [(bad_prev.id, "bad_prev"), (bad_ts.id, "ts_regression")]
        assert len(r.forks) == 1 and {r.forks[0].a.id, r.forks[0].b.id} == {e2.id, fork.id}
        assert await store.head(ledger, OTHER.public_key) == ChainHead.of(e3)
