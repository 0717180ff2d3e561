"""A kept fold read back after a restart (node/store/keeping.py), on real SQLite files: its parts are read ahead of
the unpickling, and a big fold, made or read back, is left out of the cycle collector's passes until it is
dropped."""

from __future__ import annotations

import asyncio
import gc
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.store import kept_status, snapshots
from node.store.kept_status import KeptStatus
from node.store.ledgers import collector_paused, load_state
from node.store.states import LedgerStates
from node.store.store import Store
from protocol import CID, GENESIS_KIND, SigningKey, ledger_ops
from protocol.fold import LedgerFold
from protocol.rules import Rules
from protocol.state import LedgerState
from protocol.writes import AppendRequest

ANA = SigningKey(bytes(range(32)))


async def saved_ledger(path: Path, contributions: int = 12) -> tuple[CID, LedgerState]:
    """Ana's ledger with `contributions` contributions, its state and fold saved in a snapshot."""
    async with await Store.open(path, key=ANA) as store:
        states = LedgerStates(store)
        try:
            rules = Rules.from_config({"founders": [ANA.did], "rates": {"work": {"hour": "20"}}},
                                      name="Bike coop", creator=ANA.did)
            ledger = (await store.append(AppendRequest(None, GENESIS_KIND, rules.to_body(), 1))).id
            state = await states.get(ledger)
            assert state is not None
            await store.append_batch([ledger_ops.contribute(state, ANA.did, action="work", quantity="1", unit="hour",
                                                            ts=ts, note=f"shift {ts}")
                                      for ts in range(2, 2 + contributions)])
            state = await states.get(ledger)
            assert state is not None
            assert await states.save(ledger)
            return ledger, state
        finally:
            states.close()


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Whatever a test leaves frozen is the collector's again after it."""
    yield None
    gc.unfreeze()


def collected(obj: object) -> bool:
    """Whether the cycle collector's passes go through `obj` (frozen objects are in none of its generations)."""
    return any(o is obj for o in gc.get_objects())


async def test_the_parts_of_a_fold_are_read_ahead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While one part of a fold is being read, the next one is asked of the store already (its read from SQLite
    overlaps the unpickling of the one before); the fold read back, in many parts, folds the next entry in."""
    monkeypatch.setattr(snapshots, "PART_BYTES", 2048)  # a part per pickle frame (~64 KiB)
    path = tmp_path / "ana.sqlite3"
    ledger, before = await saved_ledger(path, 2000)
    async with await Store.open(path, key=ANA) as store:
        states = LedgerStates(store)
        asked: list[int] = []
        two_asked, release = asyncio.Event(), asyncio.Event()
        read = store.fold_part

        async def held(ledger: CID, token: bytes, part: int) -> bytes | None:
            asked.append(part)
            if len(asked) == 2:
                two_asked.set()
            await release.wait()
            return await read(ledger, token, part)

        store.fold_part = held  # type: ignore[method-assign]
        try:
            assert await states.get(ledger) == before  # the state read back; its fold being read
            await asyncio.wait_for(two_asked.wait(), 30)  # the first part not given yet, the second asked for
            assert asked == [0, 1]
            release.set()
            await asyncio.gather(*list(states._loading.values()))
            assert len(asked) > 3 and sorted(asked) == list(range(len(asked))), asked
            assert ledger.raw in states._folds
            await store.append(ledger_ops.about(before, ANA.did, "Ana", 100))
            state = await states.get(ledger)
            assert state is not None and state == await load_state(store, ledger)
        finally:
            states.close()


async def test_a_big_fold_is_left_out_of_the_collectors_passes(tmp_path: Path, unfrozen: None) -> None:
    """A fold of FREEZE_ENTRIES or more, read back or folded from scratch, is frozen (gc.freeze: no pass of the
    collector goes through it); dropped (the states closed, a fork proof), it is the collector's again. A smaller
    one is not frozen."""
    path = tmp_path / "ana.sqlite3"
    ledger, before = await saved_ledger(path)
    entries = len(before.status)
    async with await Store.open(path, key=ANA) as store:
        for freeze_entries in (entries + 1, entries):  # read back from the snapshot: the state, then its fold
            restarted = LedgerStates(store, freeze_entries=freeze_entries)
            try:
                assert await restarted.get(ledger) == before
                await asyncio.gather(*list(restarted._loading.values()))
                fold: LedgerFold | None = restarted._folds[ledger.raw]
                assert collected(fold) != (freeze_entries == entries)
                assert bool(gc.get_freeze_count()) == (freeze_entries == entries)
            finally:
                restarted.close()
            assert collected(fold) and not gc.get_freeze_count()
        with sqlite3.connect(path) as db:
            db.execute("DELETE FROM snapshots")
        states = LedgerStates(store, freeze_entries=entries)
        try:
            assert await states.get(ledger) == before  # folded from scratch
            fold = states._folds[ledger.raw]
            assert not collected(fold) and gc.get_freeze_count()
            states.forget(ledger)  # a fork proof: the fold is dropped
            assert collected(fold) and not gc.get_freeze_count()
        finally:
            states.close()


async def test_a_big_fold_is_read_back_only_once_an_entry_arrives(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """A kept fold of DEFER_ENTRIES or more is not read back with its state (reads leave it in the store, and the
    node's memory without it); the first entry to arrive has it read back, and is folded into it (no fold from
    scratch), to the state computed from scratch."""
    path = tmp_path / "ana.sqlite3"
    ledger, before = await saved_ledger(path)
    async with await Store.open(path, key=ANA) as store:
        states = LedgerStates(store, defer_entries=len(before.status))
        try:
            with caplog.at_level(logging.INFO, logger="node.store.states"):
                for _ in range(3):  # reads
                    assert await states.get(ledger) == before
                    assert await states.members(ledger) == frozenset(before.members)
                    await asyncio.sleep(0)
                assert not states._loading and ledger.raw not in states._folds
                await store.append(ledger_ops.about(before, ANA.did, "Ana", 100))
                assert ledger.raw in states._loading  # read back as the entry arrived, before the state is asked
                state = await states.get(ledger)
                assert state is not None and state == await load_state(store, ledger)
                assert len(state.status) == len(before.status) + 1
            said = [r.getMessage() for r in caplog.records]
            assert "ledger fold read back" in said and "ledger folded" not in said, said
        finally:
            states.close()


def same(a: KeptStatus, b: KeptStatus) -> bool:
    return (a.width, a.names, a.bounds, a.ids, a.codes) == (b.width, b.names, b.bounds, b.ids, b.codes)


async def test_a_later_state_of_a_fold_is_kept_from_the_last_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    """The kept status of a fold's later state, made from the one before (`since`), is the one made from scratch,
    the statuses that changed since (a correction) read again; only the buckets that got ids are sorted again. One
    not made from the same fold's earlier state is made from scratch."""
    path = tmp_path / "ana.sqlite3"
    ledger, _ = await saved_ledger(path, 300)
    async with await Store.open(path, key=ANA) as store:
        states = LedgerStates(store)
        try:
            states.forget(ledger)
            with sqlite3.connect(path) as db:
                db.execute("DELETE FROM snapshots")
            state = await states.get(ledger)  # folded from scratch
            assert state is not None
            kept, sorting = KeptStatus.sorted_of(state.status)
            assert sorting is not None and same(kept, KeptStatus.of(state.status))
            first = state.contributions[0].id
            await store.append(ledger_ops.contribute(state, ANA.did, action="work", quantity="2", unit="hour", ts=500,
                                                     corrects=first))
            await store.append(ledger_ops.about(state, ANA.did, "Ana", 501))
            later = await states.get(ledger)
            assert later is not None and later.status[first.raw] != state.status[first.raw]  # corrected
            sorts: list[int] = []

            def counted(items: Any, key: Any) -> list[Any]:
                sorts.append(1)
                return sorted(items, key=key)

            monkeypatch.setattr(kept_status, "sorted", counted, raising=False)
            grown, again = KeptStatus.sorted_of(later.status, since=sorting)
            monkeypatch.undo()
            assert same(grown, KeptStatus.of(later.status)) and again is not None
            assert 1 <= len(sorts) <= 2  # the buckets of the two ids added, not all 256
            assert same(KeptStatus.sorted_of(later.status, since=again)[0], grown)  # nothing added: the same
            # Not continued: a view with fewer ids than the one before, or without its last id where it was.
            assert not again.continued_by(state.status, kept.names)
            assert same(KeptStatus.sorted_of(state.status, since=again)[0], kept)
            elsewhere = kept_status.Sorting(kept, sorting.at, bytes(36))
            assert not elsewhere.continued_by(later.status, kept.names)
            assert same(KeptStatus.sorted_of(later.status, since=elsewhere)[0], grown)
        finally:
            states.close()


async def test_a_node_saves_a_later_state_from_the_last_one(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The states save each snapshot after the first of a fold from the one before; read back after a restart,
    every one is the state computed from scratch."""
    path = tmp_path / "ana.sqlite3"
    ledger, _ = await saved_ledger(path, 40)
    for ts in (600, 601):
        async with await Store.open(path, key=ANA) as store:
            states = LedgerStates(store, snapshot_every=1)
            try:
                state = await states.get(ledger)
                assert state is not None
                await store.append(ledger_ops.about(state, ANA.did, f"Ana {ts}", ts))
                state = await states.get(ledger)
                assert state is not None and await states.save(ledger)
                made = states._sorting[ledger.raw][1]
                await store.append(ledger_ops.contribute(state, ANA.did, action="work", quantity="1", unit="hour",
                                                         ts=ts + 10, corrects=state.contributions[-1].id))
                state = await states.get(ledger)
                assert state is not None and await states.save(ledger)
                assert states._sorting[ledger.raw][1] is not made  # made from it
                await states.aclose()
            finally:
                states.close()
        async with await Store.open(path, key=ANA) as store:
            restarted = LedgerStates(store)
            caplog.clear()
            try:
                with caplog.at_level(logging.INFO, logger="node.store.states"):
                    assert await restarted.get(ledger) == await load_state(store, ledger)
                said = [f"{r.getMessage()}: {getattr(r, 'why', '')}" for r in caplog.records]
                assert "ledger snapshot restored: restored" in said and "ledger folded: " not in said, said
            finally:
                restarted.close()


def test_what_a_paused_fold_made_is_not_gone_through_by_the_next_young_pass(unfrozen: None) -> None:
    """What is made while the collector is paused (`collector_paused`, a fold's chunk) and still alive after is moved
    to the oldest generation as it is: the next young pass does not go through it (it went through all of it after
    each chunk), the collector still does (it is no one's frozen), and a fold frozen before stays frozen."""
    made: list[object] = []
    with collector_paused():
        made += [[i] for i in range(100_000)]
    assert gc.isenabled() and not gc.get_freeze_count()
    assert gc.get_count()[0] < 1000 and any(o is made[-1] for o in gc.get_objects(generation=2))
    kept = [[i] for i in range(1000)]
    gc.freeze()  # as a big fold is (node/store/keeping.py)
    frozen = gc.get_freeze_count()
    with collector_paused():
        made += [[i] for i in range(1000)]
    assert gc.get_freeze_count() == frozen and not collected(kept[-1])

