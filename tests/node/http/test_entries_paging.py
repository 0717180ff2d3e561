"""Paging of a ledger's entries: Store.log_page and GET /api/v1/ledgers/{id}/entries?limit=&after=."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from node.app import build_app
from node.http.context import MAX_PAGE_ENTRIES, ApiConfig
from node.store.store import Store
from node.sync.replication import Replicator
from node.views import entry_row
from protocol import CID, GENESIS_KIND, LocalError, SigningKey, create_entry
from protocol.writes import AppendRequest

TOKEN = "test-token-" + "x" * 32
KEY = SigningKey(bytes(range(32)))
OTHER = SigningKey(bytes(range(1, 33)))
OWNER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(tmp_path / "tally.sqlite3", key=KEY)
    try:
        yield store
    finally:
        await store.close()


async def ledger_with_two_chains(store: Store, mine: int, theirs: int) -> CID:
    """A public ledger with `mine` entries of KEY after its genesis and `theirs` of OTHER."""
    genesis = await store.append(AppendRequest(None, GENESIS_KIND, {"name": "L", "visibility": "public"}, 1))
    await store.append_batch([AppendRequest(genesis.id, "note.text", {"n": n}, 2 + n) for n in range(mine)])
    prev = None
    others = []
    for seq in range(1, theirs + 1):
        entry = create_entry(OTHER, ledger=genesis.id, seq=seq, prev=prev, ts=seq, kind="note.text", body={"n": seq})
        others.append(entry)
        prev = entry.id
    assert len((await store.ingest(others)).stored) == theirs
    return genesis.id


async def test_store_pages_follow_log_order(store: Store) -> None:
    ledger = await ledger_with_two_chains(store, mine=6, theirs=5)
    everything = [e async for e in store.log(ledger)]
    assert len(everything) == 12
    for limit in (1, 2, 5, 12, 50):
        pages, after = [], None
        while True:
            page = await store.log_page(ledger, limit, after=after)
            pages += page
            if len(page) < limit:
                break
            after = page[-1].id
        assert [e.id for e in pages] == [e.id for e in everything], limit
    mine = [e async for e in store.log(ledger, KEY.public_key)]
    assert await store.log_page(ledger, 100, author=KEY.public_key, after=mine[2].id) == mine[3:]
    assert await store.log_page(ledger, 2, author=KEY.public_key) == mine[:2]
    theirs = [e async for e in store.log(ledger, OTHER.public_key)]
    for after, author in ((theirs[0].id, KEY.public_key), (CID.for_block(b"\xa0"), None)):
        with pytest.raises(LocalError) as refused:  # of another chain than `author`; not stored
            await store.log_page(ledger, 10, author=author, after=after)
        assert refused.value.code == "unknown_entry"


@pytest.fixture
async def client(store: Store) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    replicator = Replicator(store, KEY, peers=[], offline=True)
    await replicator.start()
    client = TestClient(TestServer(build_app(store, replicator, ApiConfig(KEY.did, TOKEN, "t")), host="127.0.0.1"))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
        await replicator.stop()


async def get(client: TestClient[web.Request, web.Application], path: str, **params: str) -> tuple[int, Any]:
    async with client.get(f"/api/v1{path}", params=params, headers=OWNER) as resp:
        return resp.status, await resp.json()


async def test_api_pages_with_limit_and_after(
    store: Store, client: TestClient[web.Request, web.Application]
) -> None:
    ledger = await ledger_with_two_chains(store, mine=4, theirs=3)
    path = f"/ledgers/{ledger}/entries"
    every = [entry_row(e) async for e in store.log(ledger)]
    status, whole = await get(client, path)
    assert status == 200 and whole == {"entries": every}  # one page: no `next`
    rows, params = [], {"limit": "3"}
    while True:
        status, page = await get(client, path, **params)
        assert status == 200 and len(page["entries"]) <= 3
        rows += page["entries"]
        if "next" not in page:
            break
        assert page["next"] == page["entries"][-1]["id"]
        params = {"limit": "3", "after": page["next"]}
    assert rows == every
    status, page = await get(client, path, limit="8")
    assert status == 200 and page == {"entries": every}  # exactly all of them: no `next` either
    status, page = await get(client, path, author=OTHER.did, limit="2")
    assert [r["seq"] for r in page["entries"]] == [1, 2] and page["next"] == page["entries"][1]["id"]
    status, page = await get(client, path, author=OTHER.did, limit="2", after=page["next"])
    assert [r["seq"] for r in page["entries"]] == [3] and "next" not in page


async def test_api_paging_refusals(store: Store, client: TestClient[web.Request, web.Application]) -> None:
    ledger = await ledger_with_two_chains(store, mine=1, theirs=0)
    path = f"/ledgers/{ledger}/entries"
    for bad in ("0", str(MAX_PAGE_ENTRIES + 1), "-1", "x", "", "1.5", "٣"):
        status, data = await get(client, path, limit=bad)
        assert (status, data["error"]["code"]) == (400, "bad_request"), bad
    status, data = await get(client, path, after=str(CID.for_block(b"\xa0")))
    assert (status, data["error"]["code"]) == (404, "unknown_entry")
    status, data = await get(client, path, after="nope")
    assert (status, data["error"]["code"]) == (400, "bad_cid")
    status, data = await get(client, path, limit=str(MAX_PAGE_ENTRIES))
    assert status == 200 and len(data["entries"]) == 2
