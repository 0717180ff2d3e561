"""Closing a vote before the time its members were told (SPEC.md §18.1, §18.8).

Version 2 rules forbid it to everyone (tests/protocol/test_governance.py). Version 1 rules let the proposer,
and there a node asks first: the API and CLI only with `early`, the dashboard only from a form that says
who has not voted yet and that everyone will see it; then every member's node shows it was closed early, by
whom and when, on the motion, in the motions list and (for two weeks) in "Waiting for you". Real store, the
dashboard over a loopback socket.
"""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

from loopback_api import KEY, Api, owner_dashboard, page_text

from node.store.store import Store
from protocol import GENESIS_KIND, SigningKey
from protocol.entry import Entry, create_entry
from protocol.rules import Rules

BOB = SigningKey(hashlib.sha256(b"early-close-bob").digest())
DAY_MS = 86_400_000


async def post(api: Api, path: str, form: dict[str, str]) -> str:
    """Send a dashboard form; where it redirects to."""
    token = re.search(r'name="csrf" value="([^"]+)"', await page_text(api, "/"))
    assert token is not None
    async with api.client.post(path, data={"csrf": token.group(1), **form}, allow_redirects=False) as resp:
        assert resp.status == 303, await resp.text()
        return resp.headers["Location"]


async def test_a_version_1_proposer_closes_early_only_when_they_say_so(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "tally.sqlite3", key=KEY) as store, owner_dashboard(store) as api:
        status, made = await api.call("POST", "/ledgers", json={"name": "Old coop", "rules": {"version": 1}})
        assert status == 201, made
        ledger = made["id"]
        status, made = await api.call("POST", f"/ledgers/{ledger}/motions",
                                      json={"title": "Paint it green?", "options": ["yes", "no"],
                                            "closes": "2090-03-01"})
        assert status == 201, made
        motion = made["id"]
        status, refused = await api.call("POST", f"/motions/{motion}/close", json={})
        assert (status, refused["error"]["code"]) == (409, "motion_not_closed"), refused

        assert "before then only you can close it, and every member sees it was early" in await page_text(
            api, f"/ledgers/{ledger}/motions")
        page = f"/ledgers/{ledger}/motions/{motion}"
        form = await page_text(api, page)
        assert "day(s) before" in form and "every member's node will show that you closed it early" in form
        assert "0 of 1 members have voted." in form and "Not yet: you." in form
        assert 'name="confirm" value="early"' in form
        # A plain confirmation (a form made before the vote's time was known, or forged) closes nothing early.
        assert await post(api, f"{page}/close", {"confirm": "yes"}) == page
        assert "motion_not_closed: " in await page_text(api, page)
        status, shown = await api.call("GET", f"/motions/{motion}")
        assert shown["closed"] is False

        assert await post(api, f"{page}/close", {"confirm": "early"}) == page
        status, shown = await api.call("GET", f"/motions/{motion}")
        assert shown["closed"] is True and shown["closed_early"] is True and shown["closed_by"] == KEY.did
        closed = await page_text(api, page)
        assert "It was closed early: " in closed and "Closed by you at " in closed
        assert "closed early" in await page_text(api, f"/ledgers/{ledger}/motions")
        # The proposer closed it: nothing about it waits for them.
        assert "was closed early by" not in await page_text(api, "/")


def _bobs_ledger_with_an_early_closing() -> tuple[Entry, list[Entry]]:
    """A version 1 ledger of Bob (who proposed a motion and closed it ten days early) with this node's owner as
    a founding member."""
    rules = Rules.from_config({"version": 1, "founders": [BOB.did, KEY.did]}, name="Bob's coop", creator=BOB.did)
    now = int(time.time() * 1000)
    genesis = create_entry(BOB, ledger=None, seq=1, prev=None, ts=now - 60_000, kind=GENESIS_KIND,
                           body=rules.to_body())
    closes = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((now + 10 * DAY_MS) / 1000))
    motion = create_entry(BOB, ledger=genesis.id, seq=2, prev=genesis.id, ts=now - 50_000, kind="gov.motion",
                          body={"title": "Move the market?", "options": ["yes", "no"], "closes": closes,
                                "member": genesis.id})
    ballot = create_entry(BOB, ledger=genesis.id, seq=3, prev=motion.id, ts=now - 40_000, kind="gov.vote",
                          body={"motion": motion.id, "scores": {"yes": 5}, "member": genesis.id})
    closing = create_entry(BOB, ledger=genesis.id, seq=4, prev=ballot.id, ts=now - 30_000, kind="gov.close",
                           body={"motion": motion.id, "ballots": [ballot.id], "member": genesis.id})
    about = create_entry(BOB, ledger=genesis.id, seq=5, prev=closing.id, ts=now - 20_000, kind="member.about",
                         body={"name": "Bob", "member": genesis.id})
    return motion, [genesis, motion, ballot, closing, about]


async def test_every_member_is_told_that_a_vote_was_closed_early(tmp_path: Path) -> None:
    motion, entries = _bobs_ledger_with_an_early_closing()
    async with await Store.open(tmp_path / "tally.sqlite3", key=KEY) as store:
        assert len((await store.ingest(entries)).stored) == len(entries)
        async with owner_dashboard(store) as api:
            landing = await page_text(api, "/")
            assert "“Move the market?” in Bob's coop was closed early by Bob: yes won" in landing
            assert "<title>(1) Your ledgers" in landing  # it counts among what waits for the member
            page = await page_text(api, f"/ledgers/{entries[0].id}/motions/{motion.id}")
            assert "Closed by Bob at " in page and "It was closed early: 10 day(s) before " in page
