"""Ledger states kept in the store between runs (node/store/snapshots.py, node/store/states.py), on real SQLite
files: a restart reads a ledger's state back instead of folding it; a snapshot that is stale (entries arrived
after it) or damaged (its bytes, its claims, a forged state, a class outside protocol) is not used: the ledger
is folded again, to the same state and digest, and a good snapshot replaces it. A store made by an earlier
Tally (schema 1, before snapshots) opens, migrates and reads back the same ledger."""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import pickle
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from node.store import snapshots
from node.store.ledgers import load_state
from node.store.schema import SCHEMA_VERSION
from node.store.states import LedgerStates
from node.store.store import Store
from protocol import CID, GENESIS_KIND, SigningKey, ledger_ops
from protocol.rules import Rules
from protocol.state import LedgerState
from protocol.writes import AppendRequest

ANA = SigningKey(bytes(range(32)))
BEN = SigningKey(bytes(range(1, 33)))
DATA = Path(__file__).parent / "data"
V1_DIGEST = "982298b56ae14de798f3040a22bef8e944ac66b75ffef7c5506cbd3e664959f5"  # data/README.md


async def from_scratch(store: Store, ledger: CID) -> LedgerState:
    found = await load_state(store, ledger)
    assert found is not None
    return found


async def a_ledger(path: Path) -> tuple[CID, LedgerState]:
    """Ana's store holding a ledger with contributions, an endorsement and a name; its state saved in a snapshot
    by a node's states stopping (`aclose`)."""
    store = await Store.open(path, key=ANA)
    states = LedgerStates(store)
    try:
        rules = Rules.from_config({"founders": [ANA.did, BEN.did], "rates": {"work": {"hour": "20"}}},
                                  name="Bike coop", creator=ANA.did)
        ledger = (await store.append(AppendRequest(None, GENESIS_KIND, rules.to_body(), 1))).id
        for ts in range(2, 8):
            state = await states.get(ledger)
            assert state is not None
            await store.append(ledger_ops.contribute(state, ANA.did, action="work", quantity=f"{ts}.5", unit="hour",
                                                     ts=ts, note=f"shift {ts}"))
        ben = await Store.open(path.with_name("ben.sqlite3"), key=BEN)
        try:
            await ben.ingest([e async for e in store.log(ledger)])
            state = await states.get(ledger)
            assert state is not None
            endorsement = await ben.append(ledger_ops.endorse(state, BEN.did, state.contributions[0].id,
                                                              accept=True, note=None, ts=9))
            await store.ingest([endorsement])
        finally:
            await ben.close()
        state = await states.get(ledger)
        assert state is not None
        await store.append(ledger_ops.about(state, ANA.did, "Ana", 10))
        state = await states.get(ledger)
        assert state is not None and state == await from_scratch(store, ledger)
        await states.aclose()
        return ledger, state
    finally:
        states.close()
        await store.close()


def snapshot_row(path: Path, ledger: CID) -> dict[str, object]:
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM snapshots WHERE ledger = ?", (ledger.raw,)).fetchone()
    assert row is not None, "no snapshot kept"
    return dict(row)


def set_columns(path: Path, ledger: CID, **values: object) -> None:
    with sqlite3.connect(path) as db:
        db.execute(f"UPDATE snapshots SET {', '.join(f'{k} = ?' for k in values)} WHERE ledger = ?",
                   (*values.values(), ledger.raw))


async def restart(path: Path, ledger: CID, caplog: pytest.LogCaptureFixture) -> tuple[LedgerState, list[str], bool]:
    """A node's states opened afresh on the store: the ledger's state, what they logged of its snapshot, and
    whether they folded it."""
    caplog.clear()
    store = await Store.open(path, key=ANA)
    states = LedgerStates(store)
    try:
        with caplog.at_level(logging.INFO, logger="node.store.states"):
            state = await states.get(ledger)
            assert state is not None
            assert state == await from_scratch(store, ledger)
            await asyncio.gather(*list(states._saving.values()))  # a snapshot being saved: saved
        said = [f"{r.getMessage()}: {getattr(r, 'why', '')}" for r in caplog.records]
        return state, said, bool(states.folded())
    finally:
        states.close()
        await store.close()


async def test_a_restart_reads_the_state_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "ana.sqlite3"
    ledger, before = await a_ledger(path)
    assert snapshot_row(path, ledger)["entries"] == len(before.status) == 9
    state, said, folded = await restart(path, ledger, caplog)
    assert state == before and state.digest == before.digest
    assert not folded and "ledger snapshot restored: restored" in said, said
    # Again: the snapshot is still there and still good.
    state, said, folded = await restart(path, ledger, caplog)
    assert not folded and state == before


async def test_a_restart_after_more_entries_folds_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An entry stored while no node kept the ledger's state (another process wrote it): the snapshot is
    stale, so the ledger is folded again, and the new state is saved."""
    path = tmp_path / "ana.sqlite3"
    ledger, before = await a_ledger(path)
    async with await Store.open(path, key=ANA) as store:
        await store.append(ledger_ops.contribute(before, ANA.did, action="work", quantity="1", unit="hour", ts=20))
    state, said, folded = await restart(path, ledger, caplog)
    assert folded and "ledger snapshot not used: stale" in said, said
    assert len(state.status) == 10 and state != before
    assert snapshot_row(path, ledger)["entries"] == 10  # saved again, folded once
    state, said, folded = await restart(path, ledger, caplog)
    assert not folded and len(state.status) == 10


def forged(blob: bytes, change: Callable[[LedgerState], LedgerState]) -> bytes:
    """The snapshot's state changed by `change`, pickled as the node pickles it."""
    state = pickle.loads(blob)  # the test's own snapshot: safe to load
    out = io.BytesIO()
    snapshots._Pickler(out, protocol=5).dump(change(state))
    return out.getvalue()


def an_entry_rejected(state: LedgerState) -> LedgerState:
    raw = next(iter(state.status))
    return replace(state, status={**state.status, raw: "rejected"})


def one_entry_fewer(state: LedgerState) -> LedgerState:
    return replace(state, status=dict(list(state.status.items())[1:]))


class Evil:
    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, ("true",))


TAMPERED: dict[str, Callable[[dict[str, object]], dict[str, object]]] = {
    "a flipped byte": lambda row: {"state": bytes([*row["state"][:-40], row["state"][-40] ^ 1,  # type: ignore[index]
                                                   *row["state"][-39:]])},  # type: ignore[index]
    "its digest": lambda row: {"digest": bytes(32)},
    "its ids": lambda row: {"ids": bytes(32)},
    "a forged state": lambda row: {"state": forged(row["state"], an_entry_rejected)},  # type: ignore[arg-type]
    "a state missing an entry": lambda row: {"state": forged(row["state"], one_entry_fewer)},  # type: ignore[arg-type]
    "a class outside protocol": lambda row: {"state": pickle.dumps(Evil(), protocol=5)},
    "another ledger's state": lambda row: {"state": forged(row["state"],  # type: ignore[arg-type]
                                                           lambda s: replace(s, ledger=CID.for_block(b"\xa0")))},
}


@pytest.mark.parametrize("tamper", sorted(TAMPERED))
async def test_a_damaged_snapshot_is_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture, tamper: str) -> None:
    """Each kind of damage (with the checksum made to match, where the bytes change) is found: the ledger is
    folded again to the same state and digest, and a good snapshot replaces the damaged one."""
    path = tmp_path / "ana.sqlite3"
    ledger, before = await a_ledger(path)
    good = snapshot_row(path, ledger)
    changed = TAMPERED[tamper](good)
    if "state" in changed:
        assert isinstance(changed["state"], bytes) and changed["state"] != good["state"]
        changed["checksum"] = hashlib.sha256(changed["state"]).digest()
    set_columns(path, ledger, **changed)
    state, said, folded = await restart(path, ledger, caplog)
    assert folded and any(s.startswith("ledger snapshot not used: damaged") for s in said), said
    assert state == before and state.digest == before.digest
    again = snapshot_row(path, ledger)  # rewritten: the same claims (its pickled bytes may share objects otherwise)
    assert {k: v for k, v in again.items() if k not in ("state", "checksum", "made")} == {
        k: v for k, v in good.items() if k not in ("state", "checksum", "made")}
    state, said, folded = await restart(path, ledger, caplog)
    assert not folded and state == before


async def test_a_stale_format_or_count_is_not_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "ana.sqlite3"
    ledger, before = await a_ledger(path)
    for changed in ({"format": "pickle-5/0 tally-0.0.1 0"}, {"entries": 8}, {"rowids": 1}, {"forks": b"x"}):
        set_columns(path, ledger, **changed)
        state, said, folded = await restart(path, ledger, caplog)
        assert folded and "ledger snapshot not used: stale" in said, (changed, said)
        assert state == before


async def test_a_schema_1_store_migrates_and_reads_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """data/store_v1.sqlite3 was made by Tally before snapshots: it opens, migrates to this schema, keeps
    every entry, and its ledger's state is the one that Tally computed (its digest, in data/README.md)."""
    path = tmp_path / "tally.sqlite3"
    shutil.copyfile(DATA / "store_v1.sqlite3", path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'snapshots'").fetchone()[0] == 0
    async with await Store.open(path, key=ANA) as store:
        assert [p async for p in store.verify()] == []
        (info,) = await store.ledgers()
        assert (info.name, info.entries) == ("Bike coop", 14)
        ledger = info.id
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION  # every migration ran
    state, _said, folded = await restart(path, ledger, caplog)
    assert folded and state.digest.hex() == V1_DIGEST
    assert len(state.contributions) == 8 and sum(c.status == "final" for c in state.contributions) == 5
    assert snapshot_row(path, ledger)["entries"] == 14
    state, _said, folded = await restart(path, ledger, caplog)
    assert not folded and state.digest.hex() == V1_DIGEST


async def test_an_erased_payload_drops_the_snapshot(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Erasing a payload (SPEC.md §20) keeps the ledger's rows but changes its state: its snapshot goes with it."""
    path = tmp_path / "ana.sqlite3"
    ledger, before = await a_ledger(path)
    async with await Store.open(path, key=ANA) as store:
        assert await store.erase_payloads([before.contributions[-1].id]) == 1
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM snapshots").fetchone()[0] == 0
    state, said, folded = await restart(path, ledger, caplog)
    assert folded and not any("snapshot restored" in s for s in said), said
    assert snapshot_row(path, ledger)["entries"] == len(state.status)
