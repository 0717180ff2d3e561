"""Owner auth that an attacker cannot lock (SPEC.md §12 "Access"): wrong tokens are throttled per address, the
right token always works, and every route answers a wrong token with the same 401."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from inprocess_api import TOKEN, InProcessApi, inprocess_api

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
    status, data = await api.call("POST", "/ledgers", {"name": "Bike coop"})  # …the owner is not
    assert status == 201, data
    assert (await api.call("GET", "/ledgers"))[0] == 200
    # and the guesses stay throttled meanwhile
    assert (await api.call("GET", "/identity", token="guess-26"))[0] == 429
    assert TOKEN not in str(await api.call("GET", "/identity", token="guess-27"))
