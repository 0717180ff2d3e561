"""Owner auth that an attacker cannot lock (SPEC.md §12 "Access"): wrong tokens are throttled per address, the
right token always works, and every route answers a wrong token with the same 401."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from inprocess_api import TOKEN, InProcessApi, inprocess_api
from running_nodes import Node, ok, start, stop_all

from node.http.context import AUTH_DELAY_MAX_S, AUTH_DELAY_S, AUTH_FAILURES_MAX, AUTH_SLOWED_MAX, AuthFailures
from protocol import SigningKey

ANA = SigningKey(bytes(range(60, 92)))
BEN = SigningKey(bytes(range(61, 93)))
#: Routes that need no token, one that reads, and one that writes.
ROUTES = [("GET", "/identity"), ("GET", "/openapi.json"), ("GET", "/ledgers"), ("POST", "/ledgers")]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[InProcessApi]:
    async with inprocess_api(tmp_path, ANA, BEN) as api:
        yield api


async def test_every_route_answers_a_wrong_token_with_the_same_401(api: InProcessApi) -> None:
    answers = [await api.call(method, path, {"name": "x"} if method == "POST" else None, token="guess")
               for method, path in ROUTES]
    assert all(a == answers[0] for a in answers), answers
    assert answers[0] == (401, {"error": {"code": "unauthorized", "message": "wrong API token"}})
    # without a token, the public routes answer and the owner's refuse
    assert (await api.call("GET", "/identity", token=None))[0] == 200
    assert (await api.call("GET", "/openapi.json", token=None))[0] == 200
    assert (await api.call("POST", "/ledgers", {"name": "x"}, token=None))[0] == 401


async def test_25_wrong_tokens_then_the_right_one_works(api: InProcessApi) -> None:
    statuses = [(await api.call("GET", "/identity", token=f"guess-{i}"))[0] for i in range(25)]
    assert statuses == [401] * 20 + [429] * 5  # the address is throttled…
    assert api.pauses == [AUTH_DELAY_S] * 20  # (each a new guess: the shortest wait; a 429 waits for nothing)
    status, data = await api.call("POST", "/ledgers", {"name": "Bike coop"})  # …the owner is not
    assert status == 201, data
    assert (await api.call("GET", "/ledgers"))[0] == 200
    # and the guesses stay throttled meanwhile
    assert (await api.call("GET", "/identity", token="guess-26"))[0] == 429
    assert TOKEN not in str(await api.call("GET", "/identity", token="guess-27"))


def test_each_wrong_guess_waits_longer_when_it_comes_back() -> None:
    now = [0.0]
    failures = AuthFailures(AUTH_FAILURES_MAX, 60.0, lambda: now[0])
    same = [failures.delay("stale-token") for _ in range(7)]
    assert same == [AUTH_DELAY_S * 2 ** i for i in range(6)] + [AUTH_DELAY_MAX_S]
    assert failures.delay("another") == AUTH_DELAY_S  # counted per guess, not per sender
    now[0] = 61.0
    assert failures.delay("stale-token") == AUTH_DELAY_S  # the window passed


def guess(node: Node, token: str, client: str | None) -> int:
    """GET /identity with `token`, as a reverse proxy forwarding for `client` would send it: the status."""
    headers = {"Authorization": f"Bearer {token}"}
    if client is not None:
        headers["X-Forwarded-For"] = client
    request = urllib.request.Request(f"{node.address}/api/v1/identity", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[Node]:
    """A real node told that loopback is its reverse proxy (the test's requests play the proxy)."""
    home = tmp_path / "ana"
    did = ok(home, "init")
    (home / "tally.toml").write_text('trusted_proxies = ["127.0.0.1"]\n')
    node = start("ana", home, did)
    try:
        yield node
    finally:
        stop_all([node])


def test_behind_a_trusted_proxy_each_client_is_throttled_for_itself(proxied: Node) -> None:
    attacker, neighbour = "203.0.113.7", "203.0.113.8"
    statuses = [guess(proxied, f"guess-{i}", attacker) for i in range(AUTH_FAILURES_MAX + 2)]
    assert statuses == [401] * AUTH_FAILURES_MAX + [429] * 2
    # the neighbour behind the same proxy, with a stale token, is told it is wrong, not throttled for the attacker
    assert guess(proxied, "stale", neighbour) == 401
    # the owner, through the same proxy, from the attacker's own address even, is never refused
    assert guess(proxied, proxied.token, attacker) == 200
    # what a client writes before the hop the proxy added is not believed: the attacker stays throttled
    assert guess(proxied, "guess-x", f"198.51.100.1, {attacker}") == 429
    assert "Traceback" not in proxied.log()


def test_a_node_not_behind_a_proxy_ignores_x_forwarded_for(tmp_path: Path) -> None:
    home = tmp_path / "ben"
    node = start("ben", home, ok(home, "init"))
    try:
        statuses = [guess(node, f"guess-{i}", f"198.51.100.{i}") for i in range(AUTH_FAILURES_MAX + 1)]
        assert statuses == [401] * AUTH_FAILURES_MAX + [429]  # one address: loopback's
        assert guess(node, node.token, None) == 200
    finally:
        stop_all([node])


def test_wrong_tokens_waiting_at_once_are_bounded_and_the_owner_still_answered(proxied: Node) -> None:
    """Waiting answers hold connections: beyond AUTH_SLOWED_MAX of them a wrong token gets 429 at once, so guesses
    from many clients cannot take up the connections the owner needs."""
    clients = [f"192.0.2.{i}" for i in range(AUTH_SLOWED_MAX + 16)]
    with ThreadPoolExecutor(len(clients)) as pool:
        answers = pool.map(lambda c: guess(proxied, "same-guess", c), clients)  # the same guess: 8 s waits
        assert guess(proxied, proxied.token, clients[0]) == 200
        statuses = list(answers)
    assert set(statuses) == {401, 429}, statuses
    assert statuses.count(401) >= AUTH_SLOWED_MAX
