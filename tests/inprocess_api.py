"""The node's HTTP API in process, for route tests: a real store, the real (offline) Replicator, loopback
sockets. The node's identity is `me`; another agent's entries (`other`) are signed with their key and stored
as if a peer had sent them (`Store.ingest`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from node.app import build_app
from node.http.context import ApiConfig
from node.store.store import Store
from node.sync.replication import Replicator
from protocol import CID, SigningKey, create_entry

TOKEN = "test-token-" + "f" * 32


@dataclass
class InProcessApi:
    client: TestClient[web.Request, web.Application]
    store: Store
    app: web.Application
    replicator: Replicator
    other: SigningKey  # another agent, whose entries arrive as from a peer
    pauses: list[float]  # each wrong token's wait before its 401, in order (recorded, not waited)

    async def call(self, method: str, path: str, body: Any = None, *, token: str | None = TOKEN
                   ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.client.request(method, f"/api/v1{path}", json=body, headers=headers) as resp:
            return resp.status, await resp.json()

    async def created(self, path: str, body: Any = None) -> str:
        status, data = await self.call("POST", path, {} if body is None else body)
        assert status == 201 and set(data) == {"id"}, data
        return str(data["id"])

    async def other_writes(self, ledger: str, kind: str, body: dict[str, Any]) -> str:
        """An entry of the other agent's, arriving as from a peer."""
        lid = CID.parse(ledger)
        head = await self.store.head(lid, self.other.public_key)
        entry = create_entry(self.other, ledger=lid, seq=1 if head is None else head.seq + 1,
                             prev=None if head is None else head.id, ts=1, kind=kind, body=body)
        assert (await self.store.ingest([entry])).stored == (entry,)
        return str(entry.id)


@asynccontextmanager
async def inprocess_api(path: Path, me: SigningKey, other: SigningKey) -> AsyncIterator[InProcessApi]:
    store = await Store.open(path / "tally.sqlite3", key=me)
    replicator = Replicator(store, me, peers=[], offline=True)
    await replicator.start()
    pauses: list[float] = []

    async def pause(seconds: float) -> None:  # waited for real by `tally run` (tests/node/http/test_owner_auth.py)
        pauses.append(seconds)

    app = build_app(store, replicator, ApiConfig(me.did, TOKEN, "test", pause=pause))
    client = TestClient(TestServer(app, host="127.0.0.1", port=0))
    await client.start_server()
    try:
        yield InProcessApi(client, store, app, replicator, other, pauses)
    finally:
        await client.close()
        await replicator.stop()
        await store.close()


def code_of(result: tuple[int, Any]) -> tuple[int, str]:
    status, data = result
    return status, data["error"]["code"]
