"""The scrub a node makes of its store at start (SPEC.md §10) keeps off the event loop: a big store's scrub must not
hold up a member's first page or a write after a restart."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from node.store import checks
from node.store.store import Store
from protocol import GENESIS_KIND, SigningKey
from protocol.writes import AppendRequest

KEY = SigningKey(bytes(range(32)))
ROWS = 2000
SLOW_S = 0.0005  # each row's check: the scrub of ROWS rows takes >= 1 s of it
TICK_S = 0.01
LONGEST_GAP_S = 0.5  # generous for a loaded machine; a scrub checking on the loop holds it >= 1 s in one go


async def test_the_scrub_checks_rows_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.sqlite3"
    async with await Store.open(path, key=KEY) as store:
        ledger = (await store.append(AppendRequest(None, GENESIS_KIND, {"name": "t"}, 1000))).id
        entries = await store.append_batch(
            [AppendRequest(ledger, "note.text", {"i": i}, 2000 + i) for i in range(ROWS - 1)])
    damaged = entries[ROWS // 2].id
    db = sqlite3.connect(path)
    with db:  # one bit of one stored payload flipped: the scrub still reports it, and only it
        (payload,) = db.execute("SELECT payload FROM entries WHERE id = ?", (damaged.raw,)).fetchone()
        flipped = bytes([*payload[:-1], payload[-1] ^ 1])
        db.execute("UPDATE entries SET payload = ? WHERE id = ?", (flipped, damaged.raw))
    db.close()

    loop_thread = threading.get_ident()
    checked_on: list[int] = []
    real_sound = checks.sound

    def slow_sound(rid: bytes, header: bytes, payload: bytes | None) -> bool:
        checked_on.append(threading.get_ident())
        time.sleep(SLOW_S)  # a sleep, not a busy loop: off the loop it lets the loop run, on it it blocks it
        return real_sound(rid, header, payload)

    monkeypatch.setattr(checks, "sound", slow_sound)
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(TICK_S)

    async with await Store.open(path) as store:
        found: list[bytes] = []
        store.on_damaged(found.append)
        task = asyncio.create_task(ticker())
        await asyncio.sleep(TICK_S)
        started = time.monotonic()
        scrubbed = [entry async for entry in store.scrub(chunk=ROWS)]  # one read: on the loop, one long block
        ended = time.monotonic()
        task.cancel()
    assert scrubbed == found == [damaged.raw]
    assert len(checked_on) == ROWS  # every row went through the slow check
    assert loop_thread not in checked_on
    assert ended - started >= ROWS * SLOW_S
    times = [t for t in ticks if started <= t <= ended]
    gaps = [b - a for a, b in zip([started, *times], [*times, ended], strict=True)]
    assert max(gaps) < LONGEST_GAP_S, f"the event loop was held {max(gaps):.3f} s during the scrub"


async def test_a_bug_in_the_check_is_logged_with_its_cause_and_stops_the_scrub(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "s.sqlite3"
    async with await Store.open(path, key=KEY) as store:
        genesis = await store.append(AppendRequest(None, GENESIS_KIND, {"name": "t"}, 1000))

    def broken_sound(rid: bytes, header: bytes, payload: bytes | None) -> bool:
        raise KeyError("a bug in the check")

    monkeypatch.setattr(checks, "sound", broken_sound)
    async with await Store.open(path) as store:
        found: list[bytes] = []
        store.on_damaged(found.append)
        with pytest.raises(sqlite3.OperationalError):  # SQLite passes on only that its function failed
            _ = [entry async for entry in store.scrub()]
    assert found == []  # a bug is not damage: nothing is reported for quarantine
    (record,) = [r for r in caplog.records if r.getMessage() == "scrub check failed on a stored entry"]
    assert record.exc_info is not None and record.exc_info[0] is KeyError
    assert record.__dict__["entry"] == str(genesis.id)
