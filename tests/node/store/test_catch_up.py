"""Writes while a ledger catches up (node/store/states.py `for_write`, node/store/writes.py `unread_by`), on real
SQLite files: after a restart, while the ledger's big fold is read back, and after an upgrade, while it is folded
again, a write is built against the last state the node had when nothing stored since changes what it reads, and
the state is caught up in the background; a write that reads what changed, or that this node refuses, gets the
code the current state gives."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from test_fold_readback import ANA, saved_ledger

from node.store import snapshots
from node.store import states as states_module
from node.store.ledgers import load_state
from node.store.states import LedgerStates
from node.store.store import Store
from node.store.writes import LocalWrites, unread_by
from protocol import CID, Entry, LocalError, SigningKey, ledger_ops
from protocol.requests import Admit, Contribute, Endorse, Name
from protocol.state import INVALID, LedgerState
from protocol.writes import AppendRequest

BO = SigningKey(bytes(range(1, 33)))
HELD_S = 0.3  # how long a test looks at a write that must wait for the current state


def clock() -> Callable[[], int]:
    ticks = iter(range(10_000, 1_000_000))
    return lambda: next(ticks)


def held(release: asyncio.Event, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """`call`, answering only once `release` is set."""
    async def wait_then(*args: Any) -> Any:
        await release.wait()
        return await call(*args)
    return wait_then


async def waits(write: Awaitable[Entry]) -> asyncio.Future[Entry]:
    """`write` started, and still waiting HELD_S later (for the current state)."""
    started = asyncio.ensure_future(write)
    await asyncio.sleep(HELD_S)
    assert not started.done(), started
    return started


async def refused(write: Awaitable[Entry]) -> str:
    with pytest.raises(LocalError) as caught:
        await write
    return caught.value.code


async def check_caught_up(store: Store, states: LedgerStates, ledger: CID, written: list[Entry]) -> LedgerState:
    """The state the node catches up to is the one computed from scratch, and no entry written meanwhile is
    invalid."""
    state = await states.get(ledger)
    assert state is not None and state == await load_state(store, ledger)
    assert all(state.status[e.id.raw] != INVALID for e in written)
    return state


async def test_writes_while_a_big_fold_is_read_back_do_not_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """A restart: the state is read back, its big fold only once the first write arrives (and here, held). The
    writes after it (a contribution, a name, a correction) are built against the state read back (nothing they
    read changed), then folded in; an endorsement of the contribution just written (not in that state) and a
    refused admission wait for the current state and get its code."""
    path = tmp_path / "ana.sqlite3"
    ledger, before = await saved_ledger(path, 200)
    async with await Store.open(path, key=ANA) as store:
        release = asyncio.Event()
        monkeypatch.setattr(store, "fold_part", held(release, store.fold_part))
        states = LedgerStates(store, defer_entries=len(before.status))
        writes = LocalWrites(store, states, ANA.did, clock())
        try:
            with caplog.at_level(logging.INFO, logger="node.store.states"):
                written = [await writes.submit(Name(ledger=ledger, name="Ana"))]  # the state read back: current
                assert ledger.raw in states._loading and not states.folded()  # its fold being read back, held
                for request in (Contribute(ledger=ledger, action="work", quantity="2", unit="hour", note="brakes"),
                                Name(ledger=ledger, name="Ana Silva"),
                                Contribute(ledger=ledger, action="work", quantity="3", unit="hour",
                                           corrects=before.contributions[0].id)):
                    written.append(await asyncio.wait_for(writes.submit(request), HELD_S * 10))
                assert not states.folded()
                said = [r.getMessage() for r in caplog.records]
                assert said.count("a write built against the ledger's last state") == 3, said
                own = await waits(writes.submit(Endorse(entry=written[1].id, verdict="accept")))
                again = await waits(writes.submit(Admit(ledger=ledger, agent=ANA.did)))
                release.set()
                assert await refused(own) == "self_endorsement"
                assert await refused(again) == "already_member"
            state = await check_caught_up(store, states, ledger, written)
            assert state.names[ANA.did] == "Ana Silva" and state.contribution(written[1].id) is not None
            said = [r.getMessage() for r in caplog.records]
            assert "ledger fold read back" in said and "ledger folded" not in said, said
        finally:
            states.close()


async def test_writes_after_an_upgrade_do_not_wait_for_the_ledger_folded_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An upgrade changed protocol's code: the kept fold is stale, the state (same records) is current. The first
    write reads it back; the ledger is folded again (held here) in the background while the next writes are built
    against that state; an endorsement of a contribution written meanwhile waits for the fold and gets its code."""
    path = tmp_path / "ana.sqlite3"
    ledger, before = await saved_ledger(path, 50)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE snapshots SET fold = fold || ' before-the-upgrade'")
    async with await Store.open(path, key=ANA) as store:
        release = asyncio.Event()
        monkeypatch.setattr(states_module, "fold_ledger", held(release, states_module.fold_ledger))
        states = LedgerStates(store)
        writes = LocalWrites(store, states, ANA.did, clock())
        try:
            written = [await writes.submit(Name(ledger=ledger, name="Ana"))]
            for request in (Contribute(ledger=ledger, action="work", quantity="1", unit="hour"),
                            Name(ledger=ledger, name="Ana S")):
                written.append(await asyncio.wait_for(writes.submit(request), HELD_S * 10))
            assert not states.folded()
            own = await waits(writes.submit(Endorse(entry=written[1].id, verdict="accept")))
            release.set()
            assert await refused(own) == "self_endorsement"
            state = await check_caught_up(store, states, ledger, written)
            assert state.names[ANA.did] == "Ana S" and len(state.status) == len(before.status) + 3
        finally:
            states.close()


async def test_a_state_saved_by_the_version_before_checks_writes_until_the_ledger_is_folded_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot saved by another Tally version (same records) is stale, so the ledger is folded again (held
    here); meanwhile a write is built against its state (a state checked as any), and a write it refuses waits
    for the current state and gets its code (the old state is not taken at its word)."""
    path = tmp_path / "ana.sqlite3"
    ledger, before = await saved_ledger(path, 50)
    encoding, _, shape = snapshots.FORMAT.split(" ", 2)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE snapshots SET format = ?, fold = ?", (f"{encoding} tally-0.0.1 {shape}",
                                                                 f"{encoding} tally-0.0.1 {shape} fold-0"))
    async with await Store.open(path, key=ANA) as store:
        release = asyncio.Event()
        monkeypatch.setattr(states_module, "fold_ledger", held(release, states_module.fold_ledger))
        states = LedgerStates(store)
        writes = LocalWrites(store, states, ANA.did, clock())
        try:
            written = [await asyncio.wait_for(writes.submit(Name(ledger=ledger, name="Ana")), HELD_S * 10)]
            own = await waits(writes.submit(Endorse(entry=before.contributions[0].id, verdict="accept")))
            release.set()
            assert await refused(own) == "self_endorsement"
            await check_caught_up(store, states, ledger, written)
        finally:
            states.close()
    with sqlite3.connect(path) as db:  # damaged besides: not used even for a write
        db.execute("UPDATE snapshots SET format = ?, checksum = zeroblob(32)", (f"{encoding} tally-0.0.1 {shape}",))
    async with await Store.open(path, key=ANA) as store:
        snapshot = await store.snapshot(ledger)
        assert snapshot is not None
        assert snapshots.provisional(snapshot, await store.coverage(ledger), ledger) is None


async def test_a_state_kept_a_few_entries_behind_checks_writes_while_the_ledger_catches_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node stopped before it saved its latest state (a few entries stored after the one kept): that state is
    read back for writes, with those entries as stored since, while its fold is read back (held here); a write
    that reads what they changed waits, and gets the current state's code. Too far behind, or with rows missing,
    it is not used."""
    path = tmp_path / "ana.sqlite3"
    ledger, before = await saved_ledger(path, 50)
    async with await Store.open(path, key=ANA) as store:
        stored = await store.append(ledger_ops.contribute(before, ANA.did, action="work", quantity="1", unit="hour",
                                                          ts=90))
        await store.append(ledger_ops.about(before, ANA.did, "Ana", 91))
    async with await Store.open(path, key=ANA) as store:
        release = asyncio.Event()
        monkeypatch.setattr(store, "fold_part", held(release, store.fold_part))
        states = LedgerStates(store)
        writes = LocalWrites(store, states, ANA.did, clock())
        try:
            written = [await asyncio.wait_for(writes.submit(Name(ledger=ledger, name="Ana S")), HELD_S * 10)]
            assert not states.folded()
            own = await waits(writes.submit(Endorse(entry=stored.id, verdict="accept")))  # not in the state kept
            release.set()
            assert await refused(own) == "self_endorsement"
            state = await check_caught_up(store, states, ledger, written)
            assert state.names[ANA.did] == "Ana S"
        finally:
            states.close()
    monkeypatch.setattr(states_module, "SINCE_LAST", 1)  # two entries behind is too far now
    async with await Store.open(path, key=ANA) as store:
        await store.append(ledger_ops.about(before, ANA.did, "Ana again", 92))
        await store.append(ledger_ops.about(before, ANA.did, "Ana once more", 93))
        states = LedgerStates(store)
        release = asyncio.Event()
        monkeypatch.setattr(states_module, "fold_ledger", held(release, states_module.fold_ledger))
        monkeypatch.setattr(store, "fold_part", held(release, store.fold_part))
        writes = LocalWrites(store, states, ANA.did, clock())
        try:
            name = await waits(writes.submit(Name(ledger=ledger, name="Ana T")))
            release.set()
            await name
        finally:
            states.close()


async def test_what_a_write_reads_of_the_entries_stored_since(tmp_path: Path) -> None:
    """`unread_by`: an everyday write is built against the last state only when no entry stored since changes
    what it reads: another member's name does for a name, not for a contribution; a contribution or an
    endorsement does when the write names it; an admission, or a correction, does for every write."""
    path = tmp_path / "ana.sqlite3"
    ledger, state = await saved_ledger(path, 3)
    async with await Store.open(path, key=ANA) as store:
        first = state.contributions[0].id
        about = await store.append(AppendRequest(ledger, "member.about", {"name": "Ana", "member": ledger}, 50))
        note = await store.append(AppendRequest(ledger, "note.text", {"text": "hello"}, 51))
        admit = await store.append(AppendRequest(ledger, "member.admit", {"agent": BO.did, "member": ledger}, 52))
        event = await store.append(AppendRequest(ledger, "vf.event", {
            "action": "work", "effortQuantity": {"hasNumericalValue": "1", "hasUnit": "hour"}, "member": ledger}, 53))
        correction = await store.append(AppendRequest(ledger, "vf.event", {
            "action": "work", "effortQuantity": {"hasNumericalValue": "1", "hasUnit": "hour"}, "member": ledger,
            "corrects": first}, 54))
        endorsement = await store.append(AppendRequest(ledger, "vf.endorse", {
            "event": first, "verdict": "accept", "member": ledger}, 55))
    name, contribute = Name(ledger=ledger, name="A"), Contribute(ledger=ledger, action="work", quantity="1",
                                                                 unit="hour")
    endorse_first, endorse_event = Endorse(entry=first, verdict="accept"), Endorse(entry=event.id, verdict="accept")
    assert unread_by(name, ANA.did)(state, [about, note, event, endorsement])  # Ana's own name
    assert not unread_by(name, BO.did)(state, [about])  # another member's name
    assert unread_by(contribute, BO.did)(state, [about, note, event, endorsement])
    assert unread_by(endorse_event, ANA.did)(state, [about, endorsement])
    assert not unread_by(endorse_event, ANA.did)(state, [event])  # the contribution it names
    assert not unread_by(endorse_first, ANA.did)(state, [endorsement])  # an endorsement of it
    assert not unread_by(Contribute(ledger=ledger, action="work", quantity="1", unit="hour", corrects=first),
                         ANA.did)(state, [endorsement])
    for changes in (admit, correction):
        assert not any(unread_by(r, ANA.did)(state, [changes]) for r in (name, contribute, endorse_event))
    assert not unread_by(Admit(ledger=ledger, agent=BO.did), ANA.did)(state, [])  # not an everyday write
    assert unread_by(name, ANA.did)(state, [])
