"""A ledger's time zone (its rules' `timezone`, SPEC.md §14): founded from the dashboard, shown on its pages,
used by its CSV export and by a motion's "Closes on" day. Real store, the dashboard over a loopback socket.

Pacific/Auckland is 12 or 13 hours ahead of UTC, so a day or time shown in UTC would differ from the one
expected here for most of every day.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from loopback_api import KEY, Api, owner_dashboard, page_text

from node.store.store import Store
from node.web.i18n import day
from protocol import CID

ZONE = "Pacific/Auckland"


@asynccontextmanager
async def dashboard(tmp_path: Path) -> AsyncIterator[Api]:
    store = await Store.open(tmp_path / "tally.sqlite3", key=KEY)
    try:
        async with owner_dashboard(store) as api:
            yield api
    finally:
        await store.close()


async def post(api: Api, path: str, form: dict[str, str]) -> str:
    """Send a dashboard form; where it redirects to."""
    page = await page_text(api, "/")
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token is not None
    async with api.client.post(path, data={"csrf": token.group(1), **form}, allow_redirects=False) as resp:
        assert resp.status == 303, await resp.text()
        return resp.headers["Location"]


async def test_a_ledger_in_its_time_zone(tmp_path: Path) -> None:
    async with dashboard(tmp_path) as api:
        # A zone this node's tz database does not know is refused when founding (the protocol checks only the
        # spelling), so nobody founds a ledger whose dates they cannot see.
        assert await post(api, "/ledgers", {"name": "Mars coop", "timezone": "Mars/Olympus_Mons"}) == "/"
        assert "bad_rules: timezone: Mars/Olympus_Mons" in await page_text(api, "/")
        ledger = (await post(api, "/ledgers", {"name": "Kiwi coop", "timezone": ZONE})).removeprefix("/ledgers/")
        status, state = await api.call("GET", f"/ledgers/{ledger}/state")
        assert status == 200 and state["rules"]["timezone"] == ZONE, state
        assert f"<dd>{ZONE}</dd>" in await page_text(api, f"/ledgers/{ledger}")

        # A contribution without a date: the CSV's date and time are its entry's ts in the ledger's zone.
        status, made = await api.call("POST", f"/ledgers/{ledger}/contributions",
                                      json={"action": "work", "quantity": "2", "unit": "hour", "note": "roster"})
        assert status == 201, made
        entry = await api.store.get(CID.parse(made["id"]))
        assert entry is not None
        signed = datetime.fromtimestamp(entry.header.ts / 1000, ZoneInfo(ZONE))
        (row,) = [r for r in csv.DictReader(io.StringIO(await page_text(api, f"/ledgers/{ledger}/export.csv")))
                  if r["id"] == made["id"]]
        assert row["date"] == signed.date().isoformat()
        assert row["time"] == signed.isoformat(timespec="milliseconds" if signed.microsecond else "seconds")
        assert row["time"].endswith(("+12:00", "+13:00")), row["time"]
        # Distribution periods still count UTC days (SPEC §17.2): the Shares page says so.
        assert f"A period counts UTC days (as every node does), not days in {ZONE}" in await page_text(
            api, f"/ledgers/{ledger}/shares")
        history = await page_text(api, f"/ledgers/{ledger}/history")
        assert f"<td>{day(signed.date())}</td>" in history  # the day there, as the page's locale writes it

        # "Closes on" 1 March 2030: the vote ends as that day begins in Auckland (NZDT, UTC+13).
        where = await post(api, f"/ledgers/{ledger}/motions", {"title": "Picnic?", "options": "yes\nno",
                                                               "closes": "2030-03-01"})
        motion = where.rsplit("/", 1)[-1]
        status, shown = await api.call("GET", f"/motions/{motion}")
        assert status == 200 and shown["closes"] == "2030-02-28T11:00:00Z", shown
        page = await page_text(api, where)
        assert "closes 3/1/30, 12:00\u202fAM NZDT" in page, page[page.find("closes"):][:120]
