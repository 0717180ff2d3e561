"""Ledger states kept current by a fold (node/store/states.py, protocol/fold.py), on a real SQLite store:
after entries are appended or ingested, after a fork proof, after a fold is dropped for the memory budget,
the state is the one computed from scratch from the store; refusals keep their code."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from node.store import ledgers
from node.store.ledgers import load_state
from node.store.states import LedgerStates
from node.store.store import Store
from protocol import CID, GENESIS_KIND, InvalidData, SigningKey, governance_ops, ledger_ops
from protocol.rules import Rules
from protocol.state import LedgerState
from protocol.writes import AppendRequest

ANA = SigningKey(bytes(range(32)))
BEN = SigningKey(bytes(range(1, 33)))


async def from_scratch(store: Store, ledger: CID) -> LedgerState:
    found = await load_state(store, ledger)
    assert found is not None
    return found


async def test_the_kept_state_follows_appends_and_ingests(tmp_path: Path) -> None:
    """Ana and Ben log and endorse work, name themselves, amend the rates: after every write, Ana's kept
    state (folded once, then fed what each store takes in) equals the state computed from scratch."""
    ana = await Store.open(tmp_path / "ana.sqlite3", key=ANA)
    ben = await Store.open(tmp_path / "ben.sqlite3", key=BEN)
    states = LedgerStates(ana)
    try:
        rules = Rules.from_config({"founders": [ANA.did, BEN.did], "rates": {"work": {"hour": "20"}}},
                                  name="Bike coop", creator=ANA.did)
        genesis = await ana.append(AppendRequest(None, GENESIS_KIND, rules.to_body(), 1))
        ledger = genesis.id
        await ben.ingest([genesis])
        checked = 0

        async def kept() -> LedgerState:
            nonlocal checked
            for src, dst in ((ana, ben), (ben, ana)):  # both stores hold everything
                await dst.ingest([e async for e in src.log(ledger)])
            state = await states.get(ledger)
            assert state is not None
            assert state == await from_scratch(ana, ledger)
            checked += 1
            return state

        ts = 10
        for i in range(15):
            for store, me in ((ana, ANA.did), (ben, BEN.did)):
                ts += 1
                await store.append(ledger_ops.contribute(await kept(), me, action="work", quantity=f"{i % 5 + 1}.5",
                                                         unit="hour", ts=ts, note=f"shift {i}"))
        for c in (await kept()).contributions[:20]:
            other, who = (ben, BEN.did) if c.author == ANA.did else (ana, ANA.did)
            ts += 1
            await other.append(ledger_ops.endorse(await kept(), who, c.id, accept=True, note=None, ts=ts))
        await ana.append(ledger_ops.about(await kept(), ANA.did, "Ana", ts + 1))
        motion = await ana.append(governance_ops.create_motion(
            await kept(), ANA.did, title="Raise the rate", options=["yes", "no"], ts=ts + 2,
            amend={"rates": {"work": {"hour": "25"}}}))
        await ben.append(governance_ops.vote(await kept(), BEN.did, motion.id, {"yes": 5, "no": 1}, ts + 3))
        await ana.append(governance_ops.vote(await kept(), ANA.did, motion.id, {"yes": 4}, ts + 4))
        await ana.append(governance_ops.close_motion(await kept(), ANA.did, motion.id, ts + 5))
        state = await kept()
        assert state.names == {ANA.did: "Ana"} and state.rules.rates["work"]["hour"] == 25
        assert len([c for c in state.contributions if c.status == "final"]) == 20
        assert checked > 50  # one per write, and more
        assert await states.get(ledger) is state  # nothing arrived since: the same state, not another
    finally:
        states.close()
        await ana.close()
        await ben.close()


async def test_entries_stored_while_a_ledger_is_folded_are_not_lost(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.sqlite3", key=ANA)
    states = LedgerStates(store)
    try:
        rules = Rules.from_config({"founders": [ANA.did]}, name="Coop", creator=ANA.did)
        ledger = (await store.append(AppendRequest(None, GENESIS_KIND, rules.to_body(), 1))).id
        first = await from_scratch(store, ledger)
        states.forget(ledger)
        # The first read folds the ledger while an append lands: the append must show in the next state.
        reading = asyncio.create_task(states.get(ledger))
        await store.append(ledger_ops.contribute(first, ANA.did, action="work", quantity="1", unit="hour", ts=5))
        await reading
        state = await states.get(ledger)
        assert state is not None and len(state.contributions) == 1
        assert state == await from_scratch(store, ledger)
    finally:
        states.close()
        await store.close()


async def test_folds_beyond_the_budget_are_dropped_and_folded_again(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.sqlite3", key=ANA)
    states = LedgerStates(store, folded_entries=3)
    try:
        ledgers = []
        for name in ("One", "Two"):
            rules = Rules.from_config({"founders": [ANA.did]}, name=name, creator=ANA.did)
            ledger = (await store.append(AppendRequest(None, GENESIS_KIND, rules.to_body(), 1))).id
            ledgers.append(ledger)
            state = await states.get(ledger)
            assert state is not None
            for ts in (2, 3):
                await store.append(ledger_ops.contribute(state, ANA.did, action="work", quantity="1", unit="hour",
                                                         ts=ts))
                state = await states.get(ledger)
                assert state is not None
        assert states.folded() == [ledgers[1]]  # 3 entries each: the least recently read fold went
        for ledger in ledgers:
            assert await states.get(ledger) == await from_scratch(store, ledger)
        assert states.folded() == [ledgers[1]]
    finally:
        states.close()
        await store.close()


async def test_an_unknown_ledger_and_bad_rules(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.sqlite3", key=ANA)
    states = LedgerStates(store)
    try:
        assert await states.get(CID.for_block(b"\xa0")) is None
        broken = await store.append(AppendRequest(None, GENESIS_KIND, {"name": "no rules"}, 1))
        try:
            await states.get(broken.id)
        except InvalidData as refused:
            assert refused.code == "bad_rules"
        else:
            raise AssertionError("a genesis without rules folds")
        assert await states.members(broken.id) == frozenset({ANA.did})  # only its founder
    finally:
        states.close()
        await store.close()


async def test_a_fold_from_the_store_leaves_a_damaged_entry_out_and_reports_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fold_ledger decodes the rows it reads in its worker thread, a few at a time: a stored payload damaged under
    the node is left out (as `log` leaves it out) and reported to `on_damaged` on the event loop."""
    monkeypatch.setattr(ledgers, "FOLD_CHUNK", 3)  # several reads, the damaged row in the middle one
    store = await Store.open(tmp_path / "s.sqlite3", key=ANA)
    found: list[bytes] = []
    store.on_damaged(found.append)
    try:
        rules = Rules.from_config({"founders": [ANA.did]}, name="Coop", creator=ANA.did)
        ledger = (await store.append(AppendRequest(None, GENESIS_KIND, rules.to_body(), 1))).id
        written = []
        for ts in range(2, 9):
            state = await from_scratch(store, ledger)
            written.append(await store.append(ledger_ops.contribute(state, ANA.did, action="work", quantity=str(ts),
                                                                    unit="hour", ts=ts)))
        damaged = written[3]
        with sqlite3.connect(tmp_path / "s.sqlite3") as db:
            (payload,) = db.execute("SELECT payload FROM entries WHERE id = ?", (damaged.id.raw,)).fetchone()
            db.execute("UPDATE entries SET payload = ? WHERE id = ?", (payload[:-1] + bytes([payload[-1] ^ 1]),
                                                                       damaged.id.raw))
        fold = await ledgers.fold_ledger(store, ledger)
        assert fold is not None
        state = fold.state()
        assert found == [damaged.id.raw]
        assert damaged.id.raw not in state.status and len(fold) == 1 + 6
        assert state == await from_scratch(store, ledger)  # as a read of the whole ledger leaves it out
        assert {e.id.raw for e in written} - {damaged.id.raw} <= set(state.status)
    finally:
        await store.close()
