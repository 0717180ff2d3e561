"""Big ledgers' states computed in a child process (node/store/worker.py) are the states the node would
compute itself: same digest, members, names, contributions, rules and governance; refusals keep their code."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from node.store.ledgers import load_state
from node.store.states import LedgerStates
from node.store.store import Store
from node.store.worker import StateWorker
from protocol import CID, GENESIS_KIND, InvalidData, SigningKey, governance_ops, ledger_ops
from protocol.rules import Rules
from protocol.writes import AppendRequest

pytestmark = pytest.mark.skipif(not StateWorker.available() or sys.platform == "win32", reason="needs a fork server")

ANA = SigningKey(bytes(range(32)))
BEN = SigningKey(bytes(range(1, 33)))


async def coop(path: Path) -> tuple[Store, CID]:
    """Ana founds a coop with Ben, both log and endorse work, name themselves, vote on an amendment."""
    ana = await Store.open(path / "ana.sqlite3", key=ANA)
    ben = await Store.open(path / "ben.sqlite3", key=BEN)
    rules = Rules.from_config({"founders": [ANA.did, BEN.did], "rates": {"work": {"hour": "20"}}},
                              name="Bike coop", creator=ANA.did)
    genesis = await ana.append(AppendRequest(None, GENESIS_KIND, rules.to_body(), 1))
    ledger = genesis.id

    async def state() -> object:
        # both stores hold everything: what one signs, the other ingests
        for src, dst in ((ana, ben), (ben, ana)):
            await dst.ingest([e async for e in src.log(ledger)])
        found = await load_state(ana, ledger)
        assert found is not None
        return found

    await ben.ingest([genesis])
    ts = 10
    for i in range(40):
        for store, me in ((ana, ANA.did), (ben, BEN.did)):
            ts += 1
            await store.append(ledger_ops.contribute(await state(), me, action="work", quantity=f"{i % 5 + 1}.5",
                                                     unit="hour", ts=ts, note=f"shift {i}"))
    current = await state()
    for c in current.contributions[:50]:  # type: ignore[attr-defined]
        other, key = (ben, BEN.did) if c.author == ANA.did else (ana, ANA.did)
        ts += 1
        await other.append(ledger_ops.endorse(await state(), key, c.id, accept=True, note=None, ts=ts))
    await ana.append(ledger_ops.about(await state(), ANA.did, "Ana", ts + 1))
    motion = await ana.append(governance_ops.create_motion(
        await state(), ANA.did, title="Raise the rate", options=["yes", "no"], ts=ts + 2,
        amend={"rates": {"work": {"hour": "25"}}}))
    await ben.append(governance_ops.vote(await state(), BEN.did, motion.id, {"yes": 5, "no": 1}, ts + 3))
    await ana.append(governance_ops.vote(await state(), ANA.did, motion.id, {"yes": 4}, ts + 4))
    await state()
    await ana.append(governance_ops.close_motion(await state(), ANA.did, motion.id, ts + 5))
    await state()
    await ben.close()
    return ana, ledger


async def test_a_state_computed_in_a_child_process_is_the_same(tmp_path: Path) -> None:
    store, ledger = await coop(tmp_path)
    try:
        here = LedgerStates(store, offload_entries=None)
        there = LedgerStates(store, offload_entries=1)  # every ledger goes to the child
        try:
            mine = await here.get(ledger)
            theirs = await there.get(ledger)
        finally:
            here.close()
            there.close()
        assert mine is not None and theirs is not None
        assert theirs.digest == mine.digest
        assert theirs.members == mine.members and theirs.names == mine.names == {ANA.did: "Ana"}
        assert theirs.contributions == mine.contributions
        assert len([c for c in theirs.contributions if c.status == "final"]) == 50
        assert theirs.rules.to_body() == mine.rules.to_body()
        assert theirs.rules.rates["work"]["hour"] == 25  # the amendment passed, read-only mappings came back
        assert [m.winner for m in theirs.motions] == [m.winner for m in mine.motions] == ["yes"]
        assert dict(theirs.status) == dict(mine.status)
    finally:
        await store.close()


async def test_an_unknown_ledger_and_bad_rules_answer_as_at_home(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.sqlite3", key=ANA)
    states = LedgerStates(store, offload_entries=1)
    try:
        assert await states.get(CID.for_block(b"\xa0")) is None
        broken = await store.append(AppendRequest(None, GENESIS_KIND, {"name": "no rules"}, 1))
        with pytest.raises(InvalidData) as refused:
            await states.get(broken.id)
        assert refused.value.code == "bad_rules"
        assert await states.members(broken.id) == frozenset({ANA.did})  # only its founder, as in the node
    finally:
        states.close()
        await store.close()


async def test_a_big_ledger_that_changed_answers_its_last_state_while_the_next_is_computed(tmp_path: Path) -> None:
    store, ledger = await coop(tmp_path)
    states = LedgerStates(store, offload_entries=1)  # every ledger counts as big
    try:
        first, current = await states.latest(ledger)
        assert first is not None and current
        await store.append(ledger_ops.contribute(first, ANA.did, action="work", quantity="1", unit="hour", ts=10**6))
        shown, current = await states.latest(ledger)
        assert shown is first and not current  # at once: the last state, marked as not current
        deadline = asyncio.get_running_loop().time() + 60
        while not current:
            assert asyncio.get_running_loop().time() < deadline, "no new state within 60 s"
            await asyncio.sleep(0.05)
            shown, current = await states.latest(ledger)
        assert shown is not None and len(shown.contributions) == len(first.contributions) + 1
        small = LedgerStates(store, offload_entries=None)  # a small ledger is always computed fresh
        try:
            assert (await small.latest(ledger))[1]
        finally:
            small.close()
    finally:
        states.close()
        await store.close()
