"""The CLI's client for a running node's API.

An API error comes back as the TallyError it was on the node (same code, same
message), so the CLI prints `error: <code>: <message>` as if it had done the
work itself.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any, Final

import aiohttp

from protocol import CID, CODES, LocalError, to_json_value

#: Where the API's routes live (node/http/ and the client alike); here, so the CLI reads no server module.
API_PREFIX: Final = "/api/v1"
REQUEST_TIMEOUT_S: Final = 120.0  # a write waits for its fsync, on a machine that may be busy


def _connector(socket: str | None) -> aiohttp.BaseConnector | None:
    """The local channel (a Unix socket) when the node has one and it is there, else TCP (None)."""
    return aiohttp.UnixConnector(path=socket) if socket is not None and os.path.exists(socket) else None


async def answers_as(address: str, did: str, timeout_s: float, *, socket: str | None = None) -> bool:
    """True if the node at `address` (or on its local channel `socket`) answers `GET /api/v1/identity` with
    `did` within the timeout."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s),
                                  connector=_connector(socket)) as session,
            session.get(f"{address}{API_PREFIX}/identity") as resp,
        ):
            if resp.status != 200:
                return False
            data = await resp.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError, ValueError):
        return False
    return isinstance(data, dict) and data.get("id") == did


class NodeClient:
    """`async with NodeClient(address, token) as node: await node.append(…)`."""

    def __init__(self, address: str, token: str | None, timeout_s: float = REQUEST_TIMEOUT_S, *,
                 socket: str | None = None) -> None:
        self.address = address.rstrip("/")
        # No token: a call anyone may make (an invitation's redemption at another node, node/http/invites.py).
        self._headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._socket = socket  # the node's local channel, preferred when there
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> NodeClient:
        self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers,
                                              connector=_connector(self._socket))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One API call; its JSON answer, or the node's error raised as a TallyError."""
        if self._session is None:
            raise RuntimeError("use NodeClient in `async with`")
        url = f"{self.address}{API_PREFIX}{path}"
        try:
            async with self._session.request(method, url, json=body) as resp:
                try:
                    data = await resp.json(content_type=None)
                except ValueError:
                    data = None
                status = resp.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise LocalError("not_running", f"the node at {self.address} did not answer: {exc or type(exc).__name__}"
                             ) from None
        if status >= 400:
            raise _as_error(status, data)
        return data

    async def create_ledger(self, name: str, visibility: str) -> str:
        data = await self.call("POST", "/ledgers", {"name": name, "visibility": visibility})
        return str(data["id"])

    async def append(self, ledger: CID, kind: str, body: dict[str, Any]) -> str:
        data = await self.call("POST", f"/ledgers/{ledger}/entries", {"kind": kind, "body": to_json_value(body)})
        return str(data["id"])

    async def follow(self, ledger: CID) -> None:
        await self.call("POST", "/follow", {"ledger": str(ledger)})

    async def peers(self) -> list[dict[str, Any]]:
        data = await self.call("GET", "/peers")
        return list(data["peers"])


def _as_error(status: int, data: Any) -> LocalError:
    try:
        code, message = data["error"]["code"], data["error"]["message"]
    except (TypeError, KeyError):
        return LocalError("internal", f"the node answered HTTP {status} without an error body")
    if not isinstance(code, str) or code not in CODES:  # a newer node's code: keep it in the message
        return LocalError("internal", f"the node refused the call: {code}: {message}")
    return LocalError(code, str(message))
