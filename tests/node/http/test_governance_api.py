"""The governance and pledge routes of the HTTP API (node/http/governance.py) over a real store, the real
(offline) Replicator and loopback sockets. The node's identity is Ana, a founder with Ben; Ben's entries are
signed with his key and stored as if a peer had sent them (`Store.ingest`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from inprocess_api import InProcessApi, code_of, inprocess_api

from protocol import CID, SigningKey

ANA = SigningKey(bytes(range(50, 82)))
BEN = SigningKey(bytes(range(51, 83)))


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[InProcessApi]:
    async with inprocess_api(tmp_path, ANA, BEN) as api:
        yield api


async def coop(api: InProcessApi, visibility: str = "members") -> str:
    rules = {"founders": sorted([ANA.did, BEN.did]), "rates": {"work": {"hour": "20"}, "transfer": {"euro": "1"}},
             "visibility": visibility}
    return await api.created("/ledgers", {"name": "Fund", "rules": rules})


async def test_a_motion_over_the_api(api: InProcessApi) -> None:
    ledger = await coop(api)
    motion = await api.created(f"/ledgers/{ledger}/motions", {"title": "Raise", "amend": {
        "rates": {"work": {"hour": "30"}}}})
    await api.other_writes(ledger, "gov.vote", {"motion": CID.parse(motion), "scores": {"yes": 4, "no": 1},
                                              "member": CID.parse(ledger)})
    await api.created(f"/motions/{motion}/votes", {"scores": {"yes": 2, "no": 3}})
    assert code_of(await api.call("POST", f"/motions/{motion}/votes", {"scores": {"maybe": 1}})) == \
        (400, "unknown_option")
    assert code_of(await api.call("POST", f"/motions/{motion}/votes", {"scores": {"yes": 9}})) == \
        (400, "vote_out_of_range")
    status, shown = await api.call("GET", f"/motions/{motion}")
    assert status == 200 and shown["options"] == ["yes", "no"] and shown["winner"] is None
    assert shown["totals"] == {"yes": 6, "no": 4} and shown["leading"] == "yes"
    closing = await api.created(f"/motions/{motion}/close")
    assert code_of(await api.call("POST", f"/motions/{motion}/close", {})) == (409, "motion_closed")
    status, listed = await api.call("GET", f"/ledgers/{ledger}/motions")
    assert status == 200
    [row] = listed["motions"]
    assert (row["closing"], row["winner"], row["amended"]) == (closing, "yes", True)
    status, state = await api.call("GET", f"/ledgers/{ledger}/state")
    assert state["rules"]["rates"]["work"]["hour"] == "30" and state["amendments"] == [closing]
    assert [m["id"] for m in state["motions"]] == [motion]
    # Members-only: without the token the motion is unknown.
    assert code_of(await api.call("GET", f"/motions/{motion}", token=None)) == (404, "unknown_entry")
    bad = await api.call("POST", f"/ledgers/{ledger}/motions", {"title": "x", "amend": {"rates": {"use": {"km": 1}}}})
    assert code_of(bad) == (400, "bad_amendment")
    assert code_of(await api.call("POST", f"/ledgers/{ledger}/motions", {"title": "x", "options": ["a"]})) == \
        (400, "bad_motion")


async def test_pledges_over_the_api(api: InProcessApi) -> None:
    ledger = await coop(api, "public")
    pledge = await api.created(f"/ledgers/{ledger}/pledges", {
        "amount": "0.10", "unit": "euro", "per": "m2", "basis": 300, "every": "month", "start": "2027-01"})
    for day in ("2027-01-03", "2027-02-03"):
        await api.created(f"/ledgers/{ledger}/contributions", {
            "action": "transfer", "quantity": "30", "unit": "euro", "fulfills": pledge, "at": day})
    assert code_of(await api.call("POST", f"/ledgers/{ledger}/pledges", {
        "amount": "1", "unit": "euro", "every": "week", "start": "2027-01"})) == (400, "bad_pledge")
    status, data = await api.call("GET", f"/ledgers/{ledger}/pledges?as_of=2027-03-15", token=None)
    assert status == 200
    [row] = data["pledges"]
    assert (row["id"], row["due"], row["paid"], row["arrears"]) == (pledge, "90", "60", "30")
    assert [p["period"] for p in row["periods"]] == ["2027-01", "2027-02", "2027-03"]
    assert code_of(await api.call("GET", f"/ledgers/{ledger}/pledges?as_of=20270315")) == (400, "bad_time")
    status, entry = await api.call("GET", f"/entries/{pledge}", token=None)  # a public ledger's entry
    assert status == 200 and entry["kind"] == "vf.commitment"


async def test_a_pledge_rises_by_a_percent_or_by_a_step_said_with_its_unit(api: InProcessApi) -> None:
    ledger = await coop(api, "public")
    base = {"amount": "0.10", "unit": "euro", "per": "m2", "basis": 300, "every": "month", "start": "2027-01"}
    indexed = await api.created(f"/ledgers/{ledger}/pledges", {**base, "escalate": "+5%/year"})
    stepped = await api.created(f"/ledgers/{ledger}/pledges", {**base, "escalate": "+0.05 euro/year"})
    for ambiguous in ("+0.05/year", "0.05", "+0.05 hour/year"):
        assert code_of(await api.call("POST", f"/ledgers/{ledger}/pledges", {**base, "escalate": ambiguous})) == \
            (400, "bad_pledge")
    status, data = await api.call("GET", f"/ledgers/{ledger}/pledges?as_of=2029-01-15", token=None)
    assert status == 200
    rows = {row["id"]: row for row in data["pledges"]}
    assert (rows[indexed]["indexation"], rows[indexed]["escalate"]) == ("5", "0")
    assert (rows[stepped]["indexation"], rows[stepped]["escalate"]) == ("0", "0.05")
    # 2029: two full years. 30 × 1.05² = 33.075 → 33.08 (half up); (0.10 + 2 × 0.05) × 300 = 60.
    assert rows[indexed]["periods"][-1] == {"period": "2029-01", "due": "33.08", "paid": "0", "arrears": rows[
        indexed]["arrears"]}
    assert rows[stepped]["periods"][-1]["due"] == "60"
