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
from node.store.writes import stored_state
from protocol import CID, GENESIS_KIND, SigningKey, key_ops, ledger_ops
from protocol.rules import Rules
from protocol.state import DIGEST_BUCKETS, EMPTY_BUCKET_DIGEST, LedgerState, bucket_digest
from protocol.writes import AppendRequest

ANA = SigningKey(bytes(range(32)))
BEN = SigningKey(bytes(range(1, 33)))
DATA = Path(__file__).parent / "data"
V1_DIGEST = "108afdc54dc696792a9083053d5a3160f333d310470b2f1b321761df260b7adc"  # data/README.md


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
        assert await states.save(ledger)  # its fold too (a stopping node saves states only)
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
    """A node's states opened afresh on the store: the ledger's state, what they logged of its snapshot (and its
    fold read back), and whether they folded it from scratch."""
    caplog.clear()
    store = await Store.open(path, key=ANA)
    states = LedgerStates(store)
    try:
        with caplog.at_level(logging.INFO, logger="node.store.states"):
            state = await states.get(ledger)
            assert state is not None
            assert state == await from_scratch(store, ledger)
            await asyncio.gather(*list(states._saving.values()))  # a snapshot being saved: saved
            await asyncio.gather(*list(states._loading.values()))  # a fold being read back: read
        said = [f"{r.getMessage()}: {getattr(r, 'why', '')}" for r in caplog.records]
        return state, said, any(r.getMessage() == "ledger folded" for r in caplog.records)
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


async def test_a_restart_after_more_entries_folds_them_into_the_fold(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An entry stored while no node kept the ledger's state (another process wrote it): the state in the
    snapshot is stale, so the fold kept with it is read back and the rows stored after it are folded in (not
    the whole ledger), and the new state is saved."""
    path = tmp_path / "ana.sqlite3"
    ledger, before = await a_ledger(path)
    async with await Store.open(path, key=ANA) as store:
        await store.append(ledger_ops.contribute(before, ANA.did, action="work", quantity="1", unit="hour", ts=20))
    state, said, folded = await restart(path, ledger, caplog)
    assert "ledger snapshot not used: stale" in said and "ledger fold read back: restored" in said, said
    assert not folded and len(state.status) == 10 and state != before
    row = snapshot_row(path, ledger)
    assert row["entries"] == 10 and row["fold_entries"] == 9  # the state saved again; the fold kept (a little older)
    state, said, folded = await restart(path, ledger, caplog)
    assert not folded and len(state.status) == 10 and "ledger snapshot restored: restored" in said


def forged(blob: bytes, change: Callable[[LedgerState], LedgerState]) -> bytes:
    """The snapshot's state changed by `change`, pickled as the node pickles it (its status kept as a KeptStatus)."""
    state = pickle.loads(blob)  # the test's own snapshot: safe to load
    assert isinstance(state.status, snapshots.KeptStatus)
    changed = change(state)
    out = io.BytesIO()
    snapshots._Pickler(out, protocol=5).dump(replace(changed, status=snapshots.KeptStatus.of(changed.status)))
    return out.getvalue()


def an_entry_rejected(state: LedgerState) -> LedgerState:
    raw = next(iter(state.status))
    return replace(state, status={**state.status, raw: "rejected"})


def one_entry_fewer(state: LedgerState) -> LedgerState:
    return replace(state, status=dict(list(state.status.items())[1:]))


class Evil:
    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, ("true",))


def flipped_in_an_id(blob: bytes) -> bytes:
    """A byte flipped in the middle of the ids the state keeps (KeptStatus.ids)."""
    ids = pickle.loads(blob).status.ids  # the test's own snapshot: safe to load
    at = blob.index(ids) + len(ids) // 2
    return bytes([*blob[:at], blob[at] ^ 1, *blob[at + 1 :]])


TAMPERED: dict[str, Callable[[dict[str, object]], dict[str, object]]] = {
    "a flipped byte": lambda row: {"state": flipped_in_an_id(row["state"])},  # type: ignore[arg-type]
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
    """Each kind of damage (with the checksum made to match, where the bytes change) is found: the state comes from
    the fold kept with it (read back, checked on its own), the same state and digest, and a good snapshot replaces
    the damaged one."""
    path = tmp_path / "ana.sqlite3"
    ledger, before = await a_ledger(path)
    good = snapshot_row(path, ledger)
    changed = TAMPERED[tamper](good)
    if "state" in changed:
        assert isinstance(changed["state"], bytes) and changed["state"] != good["state"]
        changed["checksum"] = hashlib.sha256(changed["state"]).digest()
    set_columns(path, ledger, **changed)
    state, said, folded = await restart(path, ledger, caplog)
    assert any(s.startswith("ledger snapshot not used: damaged") for s in said), said
    assert not folded and "ledger fold read back: restored" in said, said  # the state came from the fold
    assert state == before and state.digest == before.digest
    again = snapshot_row(path, ledger)  # rewritten: the same claims (its pickled bytes may share objects otherwise)
    made = ("state", "checksum", "made", "fold_token", "fold_checksum")  # the fold saved again: other bytes
    assert {k: v for k, v in again.items() if k not in made} == {k: v for k, v in good.items() if k not in made}
    state, said, folded = await restart(path, ledger, caplog)
    assert not folded and state == before


async def test_a_stale_format_or_count_is_not_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "ana.sqlite3"
    ledger, before = await a_ledger(path)
    for changed in ({"format": "pickle-5/0 tally-0.0.1 0"}, {"entries": 8}, {"rowids": 1}, {"forks": b"x"}):
        set_columns(path, ledger, **changed)
        state, said, folded = await restart(path, ledger, caplog)
        assert "ledger snapshot not used: stale" in said, (changed, said)
        assert not folded and "ledger fold read back: restored" in said, said  # the fold has its own claims
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


# ---- the fold kept with the state ---------------------------------------------------------------------


async def test_the_first_entry_after_a_restart_goes_into_the_fold_read_back(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The fold saved with the state is read back after a restart: the next entries are folded into it (no fold
    from scratch), to the state computed from scratch, and the snapshot saved next keeps a fold again."""
    path = tmp_path / "ana.sqlite3"
    ledger, before = await a_ledger(path)
    row = snapshot_row(path, ledger)
    assert row["fold"] == snapshots.FOLD_FORMAT and row["fold_parts"] == 1
    caplog.clear()
    store = await Store.open(path, key=ANA)
    states = LedgerStates(store, snapshot_every=1)
    try:
        with caplog.at_level(logging.INFO, logger="node.store.states"):
            state = await states.get(ledger)
            assert state == before
            for ts in (30, 31):
                assert state is not None
                await store.append(ledger_ops.contribute(state, ANA.did, action="work", quantity="1", unit="hour",
                                                         ts=ts, note="after the restart"))
                state = await states.get(ledger)
                assert state is not None and state == await from_scratch(store, ledger)
            assert len(state.status) == len(before.status) + 2
            await states.aclose()
        said = [r.getMessage() for r in caplog.records]
        assert "ledger fold read back" in said and "ledger folded" not in said, said
    finally:
        states.close()
        await store.close()
    row = snapshot_row(path, ledger)
    assert row["entries"] == len(before.status) + 2 and row["fold"] == snapshots.FOLD_FORMAT
    with sqlite3.connect(path) as db:  # the parts of the fold replaced are gone
        assert db.execute("SELECT count(DISTINCT token) FROM fold_parts").fetchone()[0] == 1
    again, said, folded = await restart(path, ledger, caplog)
    assert again == state and not folded and "ledger fold read back: restored" in said, said


def flip_part(path: Path, ledger: CID) -> None:
    with sqlite3.connect(path) as db:
        (data,) = db.execute("SELECT bytes FROM fold_parts WHERE ledger = ?", (ledger.raw,)).fetchone()
        db.execute("UPDATE fold_parts SET bytes = ? WHERE ledger = ?",
                   (bytes([*data[:-30], data[-30] ^ 1, *data[-29:]]), ledger.raw))


def drop_parts(path: Path, ledger: CID) -> None:
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM fold_parts WHERE ledger = ?", (ledger.raw,))


def evil_part(path: Path, ledger: CID) -> None:
    data = pickle.dumps(Evil(), protocol=5)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE fold_parts SET bytes = ? WHERE ledger = ?", (data, ledger.raw))
        db.execute("UPDATE snapshots SET fold_checksum = ? WHERE ledger = ?", (hashlib.sha256(data).digest(),
                                                                                ledger.raw))


def another_format(path: Path, ledger: CID) -> None:
    set_columns(path, ledger, fold="pickle-5/0 fold-0")


FOLD_DAMAGE: dict[str, tuple[Callable[[Path, CID], None], str]] = {
    "a flipped byte": (flip_part, "damaged"),
    "its parts gone": (drop_parts, "damaged: parts of it are missing"),
    "a function outside protocol": (evil_part, "damaged: it does not decode"),
    "another format": (another_format, "stale"),
}


@pytest.mark.parametrize("damage", sorted(FOLD_DAMAGE))
async def test_a_damaged_or_stale_fold_is_not_used(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                   damage: str) -> None:
    """A fold that is damaged (its bytes, its parts, a name outside protocol with its checksum made to match) or
    of another format is not read back: the state still is, and the next entry folds the ledger from scratch, to
    the right state."""
    path = tmp_path / "ana.sqlite3"
    ledger, before = await a_ledger(path)
    change, why = FOLD_DAMAGE[damage]
    change(path, ledger)
    state, said, folded = await restart(path, ledger, caplog)
    assert state == before and not folded
    assert any(s.startswith(f"ledger fold not read back: {why}") for s in said), said
    caplog.clear()
    async with await Store.open(path, key=ANA) as store:
        states = LedgerStates(store)
        with caplog.at_level(logging.INFO, logger="node.store.states"):
            assert await states.get(ledger) == before
            await store.append(ledger_ops.about(before, ANA.did, "Ana B", 40))
            state = await states.get(ledger)  # type: ignore[assignment]
            assert state == await from_scratch(store, ledger) and len(state.status) == len(before.status) + 1
            await states.aclose()
        assert "ledger folded" in [r.getMessage() for r in caplog.records]


async def test_a_ledger_with_key_events_keeps_its_state(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A ledger with key events (SPEC.md §19) is folded whole: its state is saved (no fold) and read back after a
    restart; an entry after that folds it whole again, to the right state."""
    path = tmp_path / "ana.sqlite3"
    store = await Store.open(path, key=ANA)
    states = LedgerStates(store)
    try:
        rules = Rules.from_config({"founders": [ANA.did]}, name="Keys coop", creator=ANA.did)
        ledger = (await store.append(AppendRequest(None, GENESIS_KIND, rules.to_body(), 1))).id
        state = await states.get(ledger)
        assert state is not None
        await store.append(key_ops.incept(state, ANA.did, BEN.public_key, 2))
        state = await states.get(ledger)
        assert state is not None and state.identities
        await states.aclose()
    finally:
        states.close()
        await store.close()
    row = snapshot_row(path, ledger)
    assert row["entries"] == 2 and row["fold"] == "whole" and not row["fold_parts"]
    again, said, folded = await restart(path, ledger, caplog)
    assert again == state and not folded and "ledger snapshot restored: restored" in said, said
    async with await Store.open(path, key=ANA) as store:
        states = LedgerStates(store)
        assert await states.get(ledger) == state
        await store.append(ledger_ops.about(state, ANA.did, "Ana", 3))
        after = await states.get(ledger)
        assert after is not None and after == await from_scratch(store, ledger) and after.names == {ANA.did: "Ana"}
        await states.aclose()
    assert snapshot_row(path, ledger)["entries"] == 3


class SlowParts:
    """The store's keep_fold_part held until `release` is set: a fold's save that takes as long as a test wants."""

    def __init__(self, store: Store) -> None:
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self._keep = store.keep_fold_part

        async def held(ledger: CID, token: bytes, part: int, data: bytes) -> None:
            self.started.set()
            await self.release.wait()
            await self._keep(ledger, token, part, data)

        store.keep_fold_part = held  # type: ignore[method-assign]


async def test_an_entry_gives_up_the_fold_being_saved(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A fold is never changed while it is being saved: an entry to fold in gives the save up (at once, however
    long the save would take); the snapshot kept before stays, and a new one is saved a while later."""
    path = tmp_path / "ana.sqlite3"
    ledger, before = await a_ledger(path)
    store = await Store.open(path, key=ANA)
    states = LedgerStates(store, snapshot_every=1)
    slow = SlowParts(store)
    try:
        with caplog.at_level(logging.INFO, logger="node.store.states"):
            await states.get(ledger)
            await asyncio.gather(*list(states._loading.values()))
            await store.append(ledger_ops.about(before, ANA.did, "Ana B", 50))
            state = await states.get(ledger)  # folded in; the snapshot of it is being saved
            assert state is not None
            await asyncio.wait_for(slow.started.wait(), 60)
            await store.append(ledger_ops.about(state, ANA.did, "Ana C", 51))
            state = await asyncio.wait_for(states.get(ledger), 60)  # not held by the save
            assert state == await from_scratch(store, ledger)
            await asyncio.gather(*list(states._saving.values()))
            said = [r.getMessage() for r in caplog.records]
            assert "ledger fold not saved: entries arrived" in said, said
            saved = snapshot_row(path, ledger)  # the one kept before stays, fold and all
            assert saved["entries"] == len(before.status) and saved["fold"] == snapshots.FOLD_FORMAT
            slow.release.set()
            assert ledger.raw in states._retry  # not tried again at once (entries are arriving) ...
            states._retry[ledger.raw] = 0.0  # ... but after a while
            await store.append(ledger_ops.about(state, ANA.did, "Ana D", 52))
            state = await states.get(ledger)
            await asyncio.gather(*list(states._saving.values()))
            assert state is not None
            saved = snapshot_row(path, ledger)
            assert saved["entries"] == len(state.status) and saved["fold"] == snapshots.FOLD_FORMAT
    finally:
        slow.release.set()
        states.close()
        await store.close()
    again, said, folded = await restart(path, ledger, caplog)
    assert again == state and not folded and "ledger fold read back: restored" in said, said


async def test_a_stop_gives_up_a_save_that_takes_too_long(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`aclose` saves for at most the time it is given: a save still going then is given up, and the snapshot
    kept before stays valid (a restart reads it back, and folds the entry after it into its fold)."""
    path = tmp_path / "ana.sqlite3"
    ledger, before = await a_ledger(path)
    store = await Store.open(path, key=ANA)
    states = LedgerStates(store)
    started_keep, release = asyncio.Event(), asyncio.Event()

    async def held(ledger: CID, snapshot: object) -> bool:  # a save that would never end
        started_keep.set()
        await release.wait()
        return False

    store.keep_snapshot = held  # type: ignore[assignment]
    try:
        await states.get(ledger)
        await asyncio.gather(*list(states._loading.values()))
        await store.append(ledger_ops.about(before, ANA.did, "Ana B", 60))
        assert await states.get(ledger) is not None
        loop = asyncio.get_running_loop()
        started = loop.time()
        with caplog.at_level(logging.INFO, logger="node.store.states"):
            await states.aclose(within_s=0.5)
        assert loop.time() - started < 30  # generous: the point is that it returns at all
        assert started_keep.is_set()
        assert "ledger snapshots not all saved: the node stops" in [r.getMessage() for r in caplog.records]
    finally:
        release.set()
        states.close()
        await store.close()
    assert snapshot_row(path, ledger)["entries"] == len(before.status)  # the one kept before
    state, said, folded = await restart(path, ledger, caplog)
    assert "ledger snapshot not used: stale" in said and "ledger fold read back: restored" in said, said
    assert not folded and len(state.status) == len(before.status) + 1


async def test_a_quiet_ledger_has_its_state_saved(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A ledger that grew by less than a snapshot's worth has its state saved (not its fold) once it stays
    unchanged a while: a restart then reads the current state back, and the fold kept before is caught up."""
    path = tmp_path / "ana.sqlite3"
    ledger, before = await a_ledger(path)
    store = await Store.open(path, key=ANA)
    states = LedgerStates(store, quiet_s=0.2)
    try:
        await states.get(ledger)
        await asyncio.gather(*list(states._loading.values()))
        await store.append(ledger_ops.about(before, ANA.did, "Ana B", 70))
        state = await states.get(ledger)
        assert state is not None
        assert snapshot_row(path, ledger)["entries"] == len(before.status)  # not at once: it grew by one
        for _ in range(600):  # generous: the timer, then the save in a thread
            if snapshot_row(path, ledger)["entries"] == len(state.status):
                break
            await asyncio.sleep(0.1)
        row = snapshot_row(path, ledger)
        assert row["entries"] == len(state.status) and row["fold_entries"] == len(before.status)
    finally:
        states.close()
        await store.close()
    again, said, folded = await restart(path, ledger, caplog)
    assert again == state and not folded
    assert "ledger snapshot restored: restored" in said and "ledger fold read back: restored" in said, said


# ---- a one-shot command (the CLI) --------------------------------------------------------------------------


async def one_shot(path: Path, ledger: CID, caplog: pytest.LogCaptureFixture) -> tuple[LedgerState, list[str], bool]:
    """The ledger's state as a CLI command reads it (node/store/writes.py stored_state), what was logged, and
    whether it was folded from scratch."""
    caplog.clear()
    async with await Store.open(path) as store:
        with caplog.at_level(logging.INFO, logger="node.store.states"):
            state = await stored_state(store, ledger)
        assert state is not None and state == await from_scratch(store, ledger)
    said = [f"{r.getMessage()}: {getattr(r, 'why', '')}" for r in caplog.records]
    return state, said, any(r.getMessage() == "ledger folded" for r in caplog.records)


async def test_a_command_reads_the_kept_snapshot_and_saves_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A CLI command reads a current snapshot back (not its fold, which it would not use), and a stale one's fold
    with the entries after it folded in; it never folds the ledger from scratch nor saves a snapshot."""
    path = tmp_path / "ana.sqlite3"
    ledger, before = await a_ledger(path)
    kept = snapshot_row(path, ledger)
    state, said, folded = await one_shot(path, ledger, caplog)
    assert state == before and not folded
    assert "ledger snapshot restored: restored" in said and not any("fold" in s for s in said), said
    async with await Store.open(path, key=ANA) as store:
        await store.append(ledger_ops.about(before, ANA.did, "Ana B", 40))
    state, said, folded = await one_shot(path, ledger, caplog)
    assert not folded and len(state.status) == len(before.status) + 1
    assert "ledger snapshot not used: stale" in said and "ledger fold read back: restored" in said, said
    assert snapshot_row(path, ledger) == kept  # nothing saved


async def test_a_stop_saves_no_fold_it_has_no_time_for(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A stopping node saves the state of a ledger that grew, but does not start pickling a fold that took longer
    (when last read back or saved) than the time left: the fold kept before stays, and a restart reads the state
    back and the older fold, into which it folds the entry after it."""
    path = tmp_path / "ana.sqlite3"
    ledger, before = await a_ledger(path)
    store = await Store.open(path, key=ANA)
    states = LedgerStates(store)
    try:
        await states.get(ledger)
        await asyncio.gather(*list(states._loading.values()))
        assert ledger.raw in states._fold_s  # timed as it was read back
        await store.append(ledger_ops.about(before, ANA.did, "Ana B", 80))
        state = await states.get(ledger)
        assert state is not None
        states._fold_s[ledger.raw] = 3_600.0  # as if it took an hour
        with caplog.at_level(logging.INFO, logger="node.store.states"):
            await states.aclose(within_s=60)
        said = [r.getMessage() for r in caplog.records]
        assert "ledger fold not saved: no time left" in said and "ledger snapshots not all saved" not in " ".join(said)
    finally:
        states.close()
        await store.close()
    row = snapshot_row(path, ledger)
    assert row["entries"] == len(state.status) and row["fold_entries"] == len(before.status)
    again, said, folded = await restart(path, ledger, caplog)
    assert again == state and not folded
    assert "ledger snapshot restored: restored" in said and "ledger fold read back: restored" in said, said


def test_a_kept_status_is_the_map_it_keeps() -> None:
    """KeptStatus: the same ids and statuses as the map it was made from (lookups, absent ids, its length and ids),
    each bucket's digest as the state's digest makes it, and ids of more than one width refused."""
    ids = [CID.for_block(i.to_bytes(2, "big")).raw for i in range(600)]
    status = {raw: ("valid", "final", "pending", "ignored")[i % 4] for i, raw in enumerate(ids)}
    kept = snapshots.KeptStatus.of(status)
    assert len(kept) == 600 and set(kept) == set(ids) and dict(kept.items()) == status and kept == status
    assert all(kept[raw] == status[raw] for raw in ids)
    for absent in (CID.for_block(b"absent").raw, b"", b"short", ids[0][:-1] + bytes([ids[0][-1] ^ 1])):
        assert absent not in kept and kept.get(absent) is None
    buckets: dict[int, list[bytes]] = {}
    for raw in sorted(ids):
        buckets.setdefault(raw[-1], []).append(raw)
    assert kept.bucket_digests() == [bucket_digest(b, [status[r] for r in b]) if (b := buckets.get(i)) else
                                     EMPTY_BUCKET_DIGEST for i in range(DIGEST_BUCKETS)]
    assert snapshots.KeptStatus.of({}).bucket_digests() == [EMPTY_BUCKET_DIGEST] * DIGEST_BUCKETS
    with pytest.raises(ValueError):
        snapshots.KeptStatus.of({**status, ids[0][:-1]: "valid"})


def test_a_kept_status_saved_under_its_old_name_reads_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Snapshots saved before KeptStatus moved to node/store/kept_status.py name it as snapshots' `_kept_status`:
    they still read back (no full fold after the upgrade), and nothing else of that module is let in."""
    status = {CID.for_block(bytes([i])).raw: ("valid", "final")[i % 2] for i in range(40)}
    kept = snapshots.KeptStatus.of(status)

    def _kept_status(*parts: object) -> None:  # stands for the function that was there
        raise AssertionError("never called: only named")

    _kept_status.__module__, _kept_status.__qualname__ = snapshots.__name__, "_kept_status"
    monkeypatch.setattr(snapshots, "_kept_status", _kept_status, raising=False)
    monkeypatch.setattr(snapshots.KeptStatus, "__reduce__",
                        lambda self: (_kept_status, (self.width, self.names, self.bounds, self.ids, self.codes)))
    old = pickle.dumps(kept, protocol=5)
    assert b"_kept_status" in old and b"node.store.kept_status" not in old
    monkeypatch.undo()
    again = snapshots._Unpickler(io.BytesIO(old)).load()
    assert isinstance(again, snapshots.KeptStatus) and again == status
    with pytest.raises(pickle.UnpicklingError):
        snapshots._Unpickler(io.BytesIO(old.replace(b"_kept_status", b"_Stoppable__"))).load()
