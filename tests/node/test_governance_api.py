"""The governance and pledge routes of the HTTP API (node/governance_api.py) over a real store, the real
(offline) Replicator and loopback sockets. The node's identity is Ana, a founder with Ben; Ben's entries are
signed with his key and stored as if a peer had sent them (`Store.ingest`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from node.api import ApiConfig, build_app
from node.replication import Replicator
from node.store import Store
from protocol import CID, SigningKey, create_entry

TOKEN = "test-token-" + "g" * 32
ANA = SigningKey(bytes(range(50, 82)))
BEN = SigningKey(bytes(range(51, 83)))


@dataclass
class Api:
    client: TestClient[web.Request, web.Application]
    store: Store

    async def call(self, method: str, path: str, body: Any = None, *, token: str | None = TOKEN
                   ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.client.request(method, f"/api/v1{path}", json=body, headers=headers) as resp:
            return resp.status, await resp.json()

    async def created(self, path: str, body: Any = None) -> str:
        status, data = await self.call("POST", path, {} if body is None else body)
        assert status == 201, data
        return str(data["id"])

    async def ben_writes(self, ledger: str, kind: str, body: dict[str, Any]) -> str:
        lid = CID.parse(ledger)
        head = await self.store.head(lid, BEN.public_key)
        entry = create_entry(BEN, ledger=lid, seq=1 if head is None else head.seq + 1,
                             prev=None if head is None else head.id, ts=1, kind=kind, body=body)
        assert (await self.store.ingest([entry])).stored == (entry,)
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
        yield Api(client, store)
    finally:
        await client.close()
        await replicator.stop()
        await store.close()


def code_of(result: tuple[int, Any]) -> tuple[int, str]:
    status, data = result
    return status, data["error"]["code"]


async def coop(api: Api, visibility: str = "members") -> str:
    rules = {"founders": sorted([ANA.did, BEN.did]), "rates": {"work": {"hour": "20"}, "transfer": {"euro": "1"}},
             "visibility": visibility}
    return await api.created("/ledgers", {"name": "Fund", "rules": rules})


async def test_a_motion_over_the_api(api: Api) -> None:
    ledger = await coop(api)
    motion = await api.created(f"/ledgers/{ledger}/motions", {"title": "Raise", "amend": {
        "rates": {"work": {"hour": "30"}}}})
    await api.ben_writes(ledger, "gov.vote", {"motion": CID.parse(motion), "scores": {"yes": 4, "no": 1},
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


async def test_pledges_over_the_api(api: Api) -> None:
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
