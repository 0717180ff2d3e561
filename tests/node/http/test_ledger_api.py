"""The ledger's routes of the HTTP API (state, history, members, leave, contributions, endorsements)
over a real store, the real (offline) Replicator and loopback sockets.

The node's identity is Ana, the lone founder. Ben's entries are signed with his key and stored
as if a peer had sent them (`Store.ingest`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from inprocess_api import InProcessApi, code_of, inprocess_api

from node.http.context import STATES
from protocol import CID, SigningKey

ANA = SigningKey(bytes(range(40, 72)))
BEN = SigningKey(bytes(range(41, 73)))
RULES = {"validation": {"accept": 1, "reject": 1}, "rates": {"work": {"hour": "25"}}}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[InProcessApi]:
    async with inprocess_api(tmp_path, ANA, BEN) as api:
        yield api


async def test_the_api_shares_the_replicators_state_cache(api: InProcessApi) -> None:
    assert api.app[STATES] is api.replicator.states


async def test_members_contributions_endorsements_and_leaving(api: InProcessApi) -> None:
    status, data = await api.call("POST", "/ledgers", {"name": "Bike coop", "rules": RULES})
    assert status == 201
    ledger = data["id"]
    admission = await api.created(f"/ledgers/{ledger}/members", {"agent": BEN.did})
    status, state = await api.call("GET", f"/ledgers/{ledger}/state")
    assert status == 200 and state["members"] == sorted([ANA.did, BEN.did]) and len(state["digest"]) == 64
    assert code_of(await api.call("POST", f"/ledgers/{ledger}/members", {"agent": BEN.did})) == (
        409, "already_member")

    mine = await api.created(f"/ledgers/{ledger}/contributions", {
        "action": "work", "quantity": "6", "unit": "hour", "at": "2026-11-02", "note": "brakes"})
    bens = await api.other_writes(ledger, "vf.event", {
        "action": "work", "effortQuantity": {"hasNumericalValue": "4", "hasUnit": "hour"},
        "member": CID.parse(admission)})
    await api.other_writes(ledger, "vf.endorse", {"event": CID.parse(mine), "verdict": "accept",
                                                "member": CID.parse(admission)})
    assert code_of(await api.call("POST", f"/entries/{mine}/endorsements", {"verdict": "accept"})) == (
        403, "self_endorsement")
    await api.created(f"/entries/{bens}/endorsements", {"verdict": "reject", "note": "4 h?"})
    assert code_of(await api.call("POST", f"/entries/{bens}/endorsements", {"verdict": "reject"})) == (
        409, "duplicate_endorsement")
    await api.created(f"/entries/{bens}/endorsements", {"verdict": "accept"})  # a changed verdict
    assert code_of(await api.call("POST", f"/entries/{admission}/endorsements", {"verdict": "accept"})) == (
        404, "not_contribution")

    status, data = await api.call("GET", f"/ledgers/{ledger}/history")
    assert status == 200
    rows = {r["id"]: r for r in data["contributions"]}
    assert (rows[mine]["status"], rows[mine]["claim"], rows[mine]["accepts"]) == ("final", "150", [BEN.did])
    assert (rows[bens]["status"], rows[bens]["accepts"], rows[bens]["rejects"]) == ("final", [ANA.did], [])
    status, data = await api.call("GET", f"/ledgers/{ledger}/history?agent={BEN.did}&status=final")
    assert [r["id"] for r in data["contributions"]] == [bens]
    # Ben's event gives no time: its entry's ts (1 ms after the epoch) stands in.
    status, data = await api.call("GET", f"/ledgers/{ledger}/history?until=2026-11-01&action=work")
    assert [r["id"] for r in data["contributions"]] == [bens]
    status, data = await api.call("GET", f"/ledgers/{ledger}/history?since=2026-11-02&until=2026-11-02&agent=")
    assert [r["id"] for r in data["contributions"]] == [mine]
    status, state = await api.call("GET", f"/ledgers/{ledger}/state")
    assert state["totals"][BEN.did] == {"quantities": {"work": {"hour": "4"}}, "claim": "100"}

    await api.created(f"/ledgers/{ledger}/leave")
    assert code_of(await api.call("POST", f"/ledgers/{ledger}/contributions", {
        "action": "work", "quantity": "1", "unit": "hour"})) == (403, "not_member")
    status, state = await api.call("GET", f"/ledgers/{ledger}/state")
    assert state["members"] == [BEN.did] and state["left"] == [ANA.did]


REFUSED = [
    ({"action": "work", "quantity": 2.5, "unit": "hour"}, 400, "bad_quantity"),
    ({"action": "work", "quantity": "1e3", "unit": "hour"}, 400, "bad_quantity"),
    ({"action": "work", "quantity": "2", "unit": "km"}, 400, "unknown_unit"),
    ({"action": "wrok", "quantity": "2", "unit": "hour"}, 400, "unknown_action"),
    ({"action": "work", "quantity": "2", "unit": "hour", "from": "2026-11-03", "to": "2026-11-02"}, 400,
     "bad_time_range"),
    ({"action": "work", "quantity": "2", "unit": "hour", "at": "2026-11-03", "to": "2026-11-04"}, 400,
     "bad_time_range"),
    ({"action": "work", "quantity": "2", "unit": "hour", "at": "yesterday"}, 400, "bad_time"),
    ({"action": "work", "quantity": "2", "unit": "hour", "receiver": "nobody"}, 400, "bad_agent"),
    ({"action": "work", "quantity": "2", "unit": "hour", "provider": BEN.did}, 400, "not_party"),
    ({"action": "work", "quantity": "2", "unit": "hour", "colour": "red"}, 400, "bad_request"),
    ({"action": "work", "unit": "hour"}, 400, "bad_request"),
    ({"action": "work", "quantity": "2", "unit": "hour", "corrects": "nope"}, 400, "bad_cid"),
]


@pytest.mark.parametrize(("body", "status", "code"), REFUSED, ids=[f"{c}-{i}" for i, (_, _, c) in enumerate(REFUSED)])
async def test_refused_contributions_append_nothing(api: InProcessApi, body: dict[str, Any], status: int,
                                                    code: str) -> None:
    _, data = await api.call("POST", "/ledgers", {"name": "Bike coop", "rules": RULES})
    ledger = data["id"]
    before = await api.store.count()
    assert code_of(await api.call("POST", f"/ledgers/{ledger}/contributions", body)) == (status, code)
    assert await api.store.count() == before


async def test_access(api: InProcessApi) -> None:
    _, data = await api.call("POST", "/ledgers", {"name": "Secret coop"})
    secret = data["id"]
    _, data = await api.call("POST", "/ledgers", {"name": "Tool library", "visibility": "public"})
    public = data["id"]
    for path in ("state", "history"):
        assert code_of(await api.call("GET", f"/ledgers/{secret}/{path}", token=None)) == (404, "unknown_ledger")
        status, _ = await api.call("GET", f"/ledgers/{public}/{path}", token=None)
        assert status == 200
    assert code_of(await api.call("POST", f"/ledgers/{public}/members", {"agent": BEN.did}, token=None)) == (
        401, "unauthorized")
    assert code_of(await api.call("POST", f"/ledgers/{public}/leave", {}, token=None)) == (401, "unauthorized")
    assert code_of(await api.call("GET", f"/ledgers/{public}/history?status=done")) == (400, "bad_request")
    assert code_of(await api.call("GET", f"/ledgers/{public}/history?since=tomorrow")) == (400, "bad_time")
    assert code_of(await api.call("GET", f"/ledgers/{public}/history?author=x")) == (400, "bad_request")
    assert code_of(await api.call("GET", f"/ledgers/{public}/history?action=wrok")) == (400, "unknown_action")
    unknown = "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua"
    assert code_of(await api.call("GET", f"/ledgers/{unknown}/state")) == (404, "unknown_ledger")
    assert code_of(await api.call("POST", f"/entries/{unknown}/endorsements", {"verdict": "accept"})) == (
        404, "unknown_entry")
    assert code_of(await api.call("POST", f"/entries/{public}/endorsements", {"verdict": "maybe"})) == (
        400, "bad_request")
