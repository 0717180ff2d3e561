"""The dashboard's forms while a ledger catches up (node/store/states.py `for_write` and `shown`): after a restart
(its fold read back), an upgrade (its fold stale, the ledger folded again) or a version upgrade (its state too
saved by the version before, maybe a few entries behind the ledger), held here until the test lets it go. The
everyday forms (a contribution, a verdict, a name) answer at once, with the codes the API gives, and the page each
redirects to shows the ledger's last state at once, saying which entries it does not count yet (and, after a
version upgrade, that the version before counted it); an admission waits for the current state. Once the ledger
has caught up, each entry is there, counted once. A real store on disk, the real dashboard over a loopback socket,
the forms with their session and CSRF token."""

from __future__ import annotations

import asyncio
import hashlib
import re
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from loopback_api import KEY, Api, owner_dashboard, page_text

from node.store import since as since_module
from node.store import snapshots
from node.store import states as states_module
from node.store.ledgers import load_state
from node.store.states import LedgerStates
from node.store.store import Store
from protocol import CID, GENESIS_KIND, SigningKey, ledger_ops
from protocol.rules import Rules
from protocol.state import INVALID, PENDING, LedgerState
from protocol.writes import AppendRequest

BEN = SigningKey(hashlib.sha256(b"forms-catch-up-ben").digest())
HELD_S = 0.3  # how long a test looks at a request that must wait for the current state
PROMPT_S = 5.0  # a request that must not wait for the catch-up answers within this (it is held, not slow)


async def saved_ledger(path: Path, contributions: int) -> tuple[CID, LedgerState]:
    """Ana's and Ben's ledger (Ana's node: KEY), with Ben's `contributions` for Ana to validate, its state and
    fold saved in a snapshot."""
    ben_path = path.with_name("ben.sqlite3")
    async with await Store.open(path, key=KEY) as store, await Store.open(ben_path, key=BEN) as ben:
        states = LedgerStates(store)
        try:
            rules = Rules.from_config({"founders": [KEY.did, BEN.did], "rates": {"work": {"hour": "20"}}},
                                      name="Bike coop", creator=KEY.did)
            genesis = await store.append(AppendRequest(None, GENESIS_KIND, rules.to_body(), 1))
            await ben.ingest([genesis])
            state = await states.get(genesis.id)
            assert state is not None
            await store.ingest(await ben.append_batch([
                ledger_ops.contribute(state, BEN.did, action="work", quantity="1", unit="hour", ts=ts,
                                      note=f"shift {ts}") for ts in range(2, 2 + contributions)]))
            state = await states.get(genesis.id)
            assert state is not None and len(state.contributions) == contributions
            assert await states.save(genesis.id)
            return genesis.id, state
        finally:
            states.close()


def held(release: asyncio.Event, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def wait_then(*args: Any) -> Any:
        await release.wait()
        return await call(*args)
    return wait_then


def hold_folds(monkeypatch: pytest.MonkeyPatch, store: Store) -> asyncio.Event:
    """Hold the store's fold reads and the ledger folds until the event returned is set."""
    release = asyncio.Event()
    monkeypatch.setattr(store, "fold_part", held(release, store.fold_part))
    monkeypatch.setattr(states_module, "fold_ledger", held(release, states_module.fold_ledger))
    return release


async def send(api: Api, path: str, form: dict[str, str], token: str) -> tuple[int, str]:
    """Post a dashboard form as the page does: its status and where it redirects (or its page, refused)."""
    async with api.client.post(path, data={"csrf": token, **form}, allow_redirects=False) as resp:
        return resp.status, resp.headers.get("Location") or await resp.text()


async def prompt(answer: Awaitable[Any]) -> Any:
    return await asyncio.wait_for(answer, PROMPT_S)


async def waits(answer: Awaitable[Any]) -> asyncio.Future[Any]:
    started = asyncio.ensure_future(answer)
    await asyncio.sleep(HELD_S)
    assert not started.done(), started
    return started


@pytest.mark.parametrize("case", ["restart", "upgrade", "version", "version, behind"])
async def test_everyday_forms_and_their_pages_do_not_wait_for_the_ledger_to_catch_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    path = tmp_path / "tally.sqlite3"
    ledger, before = await saved_ledger(path, 40)
    theirs = before.contributions[0]
    behind = int(case.endswith("behind"))  # a node stopped before it saved its last entry, then upgraded
    if behind:
        async with await Store.open(path, key=KEY) as store:
            await store.append(ledger_ops.about(before, KEY.did, "Ana", 500))
    older = case.startswith("version")
    with sqlite3.connect(path) as db:
        if case == "upgrade":  # the kept fold was made by other code: the ledger is folded again
            db.execute("UPDATE snapshots SET fold = fold || ' before-the-upgrade'")
        if older:  # and the state was saved by the Tally version before (same records): shown as such
            encoding, _, shape = snapshots.FORMAT.split(" ", 2)
            db.execute("UPDATE snapshots SET format = ?, fold = ?", (f"{encoding} tally-0.0.1 {shape}",
                                                                     f"{encoding} tally-0.0.1 {shape} fold-0"))
    async with await Store.open(path, key=KEY) as store:
        release = hold_folds(monkeypatch, store)
        states = LedgerStates(store)
        try:
            async with owner_dashboard(store, states) as api:
                base = f"/ledgers/{ledger}"
                first = await prompt(page_text(api, f"{base}/contribute"))  # the state read back
                token = re.search(r'name="csrf" value="([^"]+)"', first)
                assert token is not None
                assert (f"shows it as the Tally version before counted it, without its {behind} newest" in first
                        ) == older
                assert ("still loading" in first) == older and ("is now called Ana" in first) == bool(behind)
                csrf = token.group(1)
                status, where = await prompt(send(api, f"{base}/contribute", {
                    "action": "work", "quantity": "2.5", "unit": "hour", "note": "brakes"}, csrf))
                assert (status, where) == (303, f"{base}/history")
                history = await prompt(page_text(api, where))
                assert "Logged: work 2.5 hour" in history and "still loading" in history
                assert f"its {1 + behind} newest entries" in history and "work 2.5 hour (brakes)" in history
                assert ("the Tally version before" in history) == older
                status, where = await prompt(send(api, f"{base}/endorse", {
                    "entry": str(theirs.id), "verdict": "accept"}, csrf))
                assert (status, where) == (303, f"{base}/queue")
                queue = await prompt(page_text(api, where))
                assert "Accepted." in queue and "accepts a contribution" in queue
                assert f"its {2 + behind} newest" in queue
                status, where = await prompt(send(api, f"{base}/name", {"name": "Ana Silva"}, csrf))
                assert (status, where) == (303, base)
                overview = await prompt(page_text(api, where))
                assert "is now called Ana Silva" in overview and "still loading" in overview
                # Refused against the last state as the API refuses it: at once, with its code, nothing written (a
                # state of the version before is not taken at its word: that refusal waits for the current state).
                unknown = send(api, f"{base}/contribute", {"action": "work", "quantity": "1", "unit": "parsec"}, csrf)
                if older:
                    refused = await waits(unknown)
                else:
                    status, refusal = await prompt(unknown)
                    assert status == 400 and "<code>unknown_unit</code>" in refusal
                home = await prompt(page_text(api, "/"))
                assert "Bike coop is still loading" in home
                assert not states.folded()  # all of it before the catch-up ended
                # An admission reads every member: it waits for the current state.
                admission = await waits(send(api, f"{base}/admit", {"agent": SigningKey(bytes(32)).did}, csrf))
                # A verdict on the contribution just written (not in the last state) waits too, and is refused.
                written = await load_state(store, ledger)  # from scratch, beside the node's states
                assert written is not None
                brakes = next(c.id for c in written.contributions if c.event.note == "brakes")
                mine = await waits(send(api, f"{base}/endorse", {"entry": str(brakes), "verdict": "accept"}, csrf))
                release.set()
                assert (await admission)[0] == 303 and (await mine)[0] == 303
                refusal = ""
                if older:
                    status, refusal = await refused
                    assert status == 400 and "<code>unknown_unit</code>" in refusal
                queue = await page_text(api, f"{base}/queue")
                assert "still loading" not in queue
                # The session's next page says it (the refused contribution's, when that one ended after it).
                assert "self_endorsement: " in queue + refusal
                state = await states.get(ledger)
                assert state is not None and state == await load_state(store, ledger)
                # the three forms' entries and the admission (and the entry the kept state was behind)
                assert len(state.status) == len(before.status) + 4 + behind
                assert all(status != INVALID for status in state.status.values())
                logged = [c for c in state.contributions if c.event.note == "brakes"]
                assert len(logged) == 1 and logged[0].status == PENDING and logged[0].author == KEY.did
                endorsed = state.contribution(theirs.id)
                assert endorsed is not None and KEY.did in endorsed.accepts
                assert state.names[KEY.did] == "Ana Silva"
                history = await page_text(api, f"{base}/history")
                assert "still loading" not in history and history.count(f'data-id="{logged[0].id}"') == 1
        finally:
            states.close()


async def test_pages_show_the_last_state_however_many_entries_arrive_while_it_catches_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """More entries stored during a catch-up than a write can read (SINCE_LAST): the pages still show the last state
    at once, naming the newest entries and counting the rest (in the member's language too), while the node keeps
    only their count and the newest; a write waits for the current state, which then counts every one."""
    path = tmp_path / "tally.sqlite3"
    ledger, before = await saved_ledger(path, 40)
    arriving = states_module.SINCE_LAST + 44
    async with await Store.open(path, key=KEY) as store, \
            await Store.open(path.with_name("ben.sqlite3"), key=BEN) as ben:
        release = hold_folds(monkeypatch, store)
        states = LedgerStates(store)
        try:
            async with owner_dashboard(store, states) as api:
                base = f"/ledgers/{ledger}"
                first = await prompt(page_text(api, f"{base}/history"))  # the state read back, its fold held
                assert "still loading" not in first
                await store.ingest(await ben.append_batch([
                    ledger_ops.contribute(before, BEN.did, action="work", quantity="3", unit="hour", ts=ts,
                                          note=f"late {ts}") for ts in range(100, 100 + arriving)]))
                history = await prompt(page_text(api, f"{base}/history"))
                assert "still loading" in history and f"its {arriving} newest entries" in history
                newest = [f"late {ts}" for ts in range(100 + arriving - 5, 100 + arriving)]
                assert all(f"work 3 hour ({note})" in history for note in newest)
                assert f"late {100 + arriving - 6}" not in history  # the rest counted, not named
                assert f"and {arriving - 5} more entries" in history
                async with api.client.get(base, headers={"Accept-Language": "de"}) as resp:
                    assert resp.status == 200
                    german = await resp.text()
                assert f"und {arriving - 5} weitere Einträge" in german and "wird noch geladen" in german
                state, shown, count, exact = await states.shown(ledger)
                assert state == before and count == arriving and exact
                assert [e.body["note"] for e in shown[-5:] if e.body] == newest
                assert states._last[ledger.raw][1].held() <= 2 * since_module.NEWEST  # not every entry stored since
                assert not states.folded()
                token = re.search(r'name="csrf" value="([^"]+)"', history)
                assert token is not None
                contribution = await waits(send(api, f"{base}/contribute", {
                    "action": "work", "quantity": "1", "unit": "hour", "note": "after"}, token.group(1)))
                release.set()
                assert (await contribution)[0] == 303
                caught_up = await page_text(api, f"{base}/history")
                assert "still loading" not in caught_up and "more entries" not in caught_up
                state = await states.get(ledger)
                assert state is not None and state == await load_state(store, ledger)
                assert len(state.contributions) == len(before.contributions) + arriving + 1
        finally:
            states.close()
