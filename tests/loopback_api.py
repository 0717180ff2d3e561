"""The API over a real loopback socket (aiohttp's test server) and a real store, for the API's and the
dashboard's tests: `running_api` serves `build_app` as the owner KEY with TOKEN."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from node.app import build_app
from node.http.context import ApiConfig, Replication
from node.store.states import LedgerStates
from node.store.store import Store
from node.sync.replication import Replicator
from protocol import SigningKey

TOKEN = "test-token-" + "x" * 32
KEY = SigningKey(bytes(range(32)))


@dataclass
class Api:
    client: TestClient[web.Request, web.Application]
    store: Store
    replication: Replication
    pauses: list[float]  # each wrong token's wait before its 401, in order (recorded, not waited)

    async def call(self, method: str, path: str, *, token: str | None = TOKEN, **kw: Any) -> tuple[int, Any]:
        headers = dict(kw.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.client.request(method, f"/api/v1{path}", headers=headers, **kw) as resp:
            assert resp.content_type == "application/json", (resp.status, await resp.text())
            return resp.status, await resp.json()

    async def ledger(self, name: str = "Bike coop", visibility: str = "members") -> str:
        status, data = await self.call("POST", "/ledgers", json={"name": name, "visibility": visibility})
        assert status == 201, data
        return str(data["id"])


@asynccontextmanager
async def running_api(
    store: Store, replication: Replication, *, clock: list[float] | None = None
) -> AsyncIterator[Api]:
    monotonic = (lambda: clock[0]) if clock is not None else None
    pauses: list[float] = []

    async def pause(seconds: float) -> None:  # the waits themselves: tests/node/http/test_owner_auth.py
        pauses.append(seconds)

    config = ApiConfig(KEY.did, TOKEN, "test", pause=pause, **({"monotonic": monotonic} if monotonic else {}))
    client = TestClient(TestServer(build_app(store, replication, config), host="127.0.0.1", port=0))
    await client.start_server()
    try:
        yield Api(client, store, replication, pauses)
    finally:
        await client.close()


@asynccontextmanager
async def owner_dashboard(store: Store, states: LedgerStates | None = None) -> AsyncIterator[Api]:
    """The dashboard of `store`'s node (offline, its ledgers' states kept current: `states` if given, which the
    caller closes), logged in as its owner through a one-time link: `api.client` carries the session cookie."""
    own = states is None
    states = LedgerStates(store) if states is None else states
    try:
        async with running_api(store, Replicator(store, KEY, peers=[], offline=True, states=states)) as api:
            status, link = await api.call("POST", "/login-links", json={})
            assert status == 201, link
            async with api.client.get(link["path"], allow_redirects=False) as resp:
                assert resp.status == 303
            yield api
    finally:
        if own:
            states.close()


async def page_text(api: Api, path: str) -> str:
    """A page that must answer 200, as text."""
    async with api.client.get(path) as resp:
        body = await resp.text()
        assert resp.status == 200, body[-2000:]
        return body
