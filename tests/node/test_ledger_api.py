"""The ledger's routes of the HTTP API (state, history, members, leave, contributions, endorsements)
over a real store, the real (offline) Replicator and loopback sockets.

The node's identity is Ana, the lone founder. Ben's entries are signed with his key and stored
as if a peer had sent them (`Store.ingest`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from node.api import STATES, ApiConfig, build_app
from node.replication import Replicator
from node.store import Store
from protocol import CID, SigningKey, create_entry

TOKEN = "test-token-" + "l" * 32
ANA = SigningKey(bytes(range(40, 72)))
BEN = SigningKey(bytes(range(41, 73)))
RULES = {"validation": {"accept": 1, "reject": 1}, "rates": {"work": {"hour": "25"}}}


@dataclass
class Api:
    client: TestClient[web.Request, web.Application]
    store: Store
    app: web.Application
    replicator: Replicator

    async def call(self, method: str, path: str, body: Any = None, *, token: str | None = TOKEN
                   ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.client.request(method, f"/api/v1{path}", json=body, headers=headers) as resp:
            return resp.status, await resp.json()

    async def created(self, path: str, body: Any = None) -> str:
        status, data = await self.call("POST", path, {} if body is None else body)
        assert status == 201 and set(data) == {"id"}, data
        return str(data["id"])

    async def ben_writes(self, ledger: str, kind: str, body: dict[str, Any]) -> str:
        """An entry of Ben's, arriving as from a peer."""
        lid = CID.parse(ledger)
        head = await self.store.head(lid, BEN.public_key)
        entry = create_entry(BEN, ledger=lid, seq=1 if head is None else head.seq + 1,
                             prev=None if head is None else head.id, ts=1, kind=kind, body=body)
        result = await self.store.ingest([entry])
        assert result.stored == (entry,)
        return str(entry.id)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    store = await Store.open(tmp_path / "tally.sqlite3", key=ANA)
    replicator = Replicator(store, ANA, peers=[], offline=True)
    await replicator.start()
    app = build_app(store, replicator, ApiConfig(ANA.did, TOKEN, "test"))
    client = TestClient(TestServer(app, host="127.0.0.1", port=0))
    await client.start_server()
    try:
        yield Api(client, store, app, replicator)
    finally:
        await client.close()
        await replicator.stop()
        await store.close()


def code_of(result: tuple[int, Any]) -> tuple[int, str]:
    status, data = result
    return status, data["error"]["code"]


async def test_the_api_shares_the_replicators_state_cache(api: Api) -> None:
    assert api.app[STATES] is api.replicator.states


async def test_members_contributions_endorsements_and_leaving(api: Api) -> None:
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
    bens = await api.ben_writes(ledger, "vf.event", {
        "action": "work", "effortQuantity": {"hasNumericalValue": "4", "hasUnit": "hour"},
        "member": CID.parse(admission)})
    await api.ben_writes(ledger, "vf.endorse", {"event": CID.parse(mine), "verdict": "accept",
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
async def test_refused_contributions_append_nothing(api: Api, body: dict[str, Any], status: int, code: str) -> None:
    _, data = await api.call("POST", "/ledgers", {"name": "Bike coop", "rules": RULES})
    ledger = data["id"]
    before = await api.store.count()
    assert code_of(await api.call("POST", f"/ledgers/{ledger}/contributions", body)) == (status, code)
    assert await api.store.count() == before


async def test_access(api: Api) -> None:
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
