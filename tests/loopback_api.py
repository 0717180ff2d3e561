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
from node.store.store import Store
from protocol import SigningKey

TOKEN = "test-token-" + "x" * 32
KEY = SigningKey(bytes(range(32)))


@dataclass
class Api:
    client: TestClient[web.Request, web.Application]
    store: Store
    replication: Replication

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
    config = ApiConfig(KEY.did, TOKEN, "test", **({"monotonic": monotonic} if monotonic else {}))
    client = TestClient(TestServer(build_app(store, replication, config), host="127.0.0.1", port=0))
    await client.start_server()
    try:
        yield Api(client, store, replication)
    finally:
        await client.close()
