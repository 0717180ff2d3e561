"""The HTTP API (node/http/ledger.py) over real loopback sockets and a real SQLite store.

Most tests run the API over the real Replicator (offline, no peers). A few need
a replicator in a state the real one only reaches with live peers (catching up,
given peers, a recorded sync call); those use `FakeReplication`, a small object
with the same surface as node.sync.replication.Replicator, used ONLY in this file.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import inprocess_cli
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from conftest import TallyRunner, last_line
from loopback_api import KEY, TOKEN, Api, running_api

from node.app import build_app
from node.home import Home
from node.http.context import AUTH_DELAY_MAX_S, AUTH_DELAY_S, MAX_REQUEST_BYTES, ApiConfig
from node.http.errors import STATUS
from node.nodefile import NodeFile, write_node_file
from node.store.store import Store
from node.sync.healing import HealRecord
from node.sync.replication import PeerInfo, Replicator
from node.views import entry_row, ledger_row
from protocol import CID, CODES, ForkProof, SigningKey, create_entry

OTHER = SigningKey(bytes(range(1, 33)))
OWNER = {"Authorization": f"Bearer {TOKEN}"}


class FakeReplication:
    """Test double with node.sync.replication.Replicator's public surface (see the module docstring)."""

    def __init__(self, *, catching_up: bool = False, peers: list[PeerInfo] | None = None) -> None:
        self.catching_up = catching_up
        self.followed: list[CID] = []
        self.sync_calls = 0
        self._peers = peers or []
        self.healing = HealRecord()

    async def follow(self, ledger: CID) -> None:
        self.followed.append(ledger)

    def add_peer(self, url: str, found: str, expected_remote: str | None = None) -> None:
        self.added = [*getattr(self, "added", []), (url, found)]

    def peers(self) -> list[PeerInfo]:
        return list(self._peers)

    def refuse_link(self, request: web.Request) -> web.Response | None:
        return None

    async def handle_sync(self, request: web.Request) -> web.StreamResponse:
        self.sync_calls += 1
        return web.Response(text="sync reached")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(tmp_path / "tally.sqlite3", key=KEY)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def api(store: Store) -> AsyncIterator[Api]:
    replicator = Replicator(store, KEY, peers=[], offline=True)
    await replicator.start()
    try:
        async with running_api(store, replicator) as api:
            yield api
    finally:
        await replicator.stop()


def assert_error(status: int, data: Any, want_status: int, want_code: str) -> None:
    assert (status, data["error"]["code"]) == (want_status, want_code), data
    assert set(data) == {"error"} and set(data["error"]) == {"code", "message"}
    assert isinstance(data["error"]["message"], str) and data["error"]["message"]


# ---- reads and writes ------------------------------------------------------------


async def test_identity_is_public(api: Api) -> None:
    status, data = await api.call("GET", "/identity", token=None)
    assert status == 200
    assert data == {"id": KEY.did, "version": "test", "protocol": 1}


async def test_create_list_and_get_ledgers(api: Api) -> None:
    status, data = await api.call("POST", "/ledgers", json={"name": "  Bike coop "})
    assert status == 201
    members = data["id"]
    assert CID.parse(members) and members.startswith("bafyrei")
    public = await api.ledger("Open network", "public")
    rows = {str(i.id): ledger_row(i) for i in await api.store.ledgers()}
    assert rows[members]["name"] == "Bike coop" and rows[members]["visibility"] == "members"
    assert rows[members]["founder"] == KEY.did

    status, data = await api.call("GET", "/ledgers")
    assert status == 200 and {r["id"]: r for r in data["ledgers"]} == rows
    status, data = await api.call("GET", f"/ledgers/{members}")
    assert status == 200 and data == rows[members]
    # without the token: public ledgers only; a members-only ledger is answered like an unknown one
    status, data = await api.call("GET", "/ledgers", token=None)
    assert status == 200 and data == {"ledgers": [rows[public]]}
    status, data = await api.call("GET", f"/ledgers/{public}", token=None)
    assert status == 200 and data == rows[public]
    missing = str(CID.for_block(b"\xa0"))
    hidden = await api.call("GET", f"/ledgers/{members}", token=None)
    unknown = await api.call("GET", f"/ledgers/{missing}", token=None)
    assert_error(*hidden, 404, "unknown_ledger")
    assert_error(*unknown, 404, "unknown_ledger")
    assert hidden[1]["error"]["message"].replace(members, "X") == unknown[1]["error"]["message"].replace(missing, "X")


async def test_create_ledger_location_header(api: Api) -> None:
    async with api.client.post("/api/v1/ledgers", json={"name": "L"}, headers=OWNER) as resp:
        assert resp.status == 201
        ledger = (await resp.json())["id"]
        assert resp.headers["Location"] == f"/api/v1/ledgers/{ledger}"


async def test_append_and_read_entries(api: Api) -> None:
    members = await api.ledger()
    body = {"text": "fixed the brakes", "n": 3, "big": 2**63, "link": {"/": members}, "blob": {"/": {"bytes": "aGk"}}}
    status, data = await api.call("POST", f"/ledgers/{members}/entries", json={"kind": "note.text", "body": body})
    assert status == 201 and data["seq"] == 2
    stored = [e async for e in api.store.log(CID.parse(members))]
    assert [str(e.id) for e in stored][1] == data["id"]

    status, data = await api.call("GET", f"/ledgers/{members}/entries")
    assert status == 200 and data == {"entries": [entry_row(e) for e in stored]}
    assert data["entries"][1]["body"] == body
    status, data = await api.call("GET", f"/ledgers/{members}/entries", params={"author": KEY.did})
    assert status == 200 and len(data["entries"]) == 2
    status, data = await api.call("GET", f"/ledgers/{members}/entries", params={"author": OTHER.did})
    assert status == 200 and data == {"entries": []}
    assert_error(*await api.call("GET", f"/ledgers/{members}/entries", params={"author": "did:key:zNope"}),
                 400, "bad_did")
    # members-only entries are hidden without the token; public ones are readable
    assert_error(*await api.call("GET", f"/ledgers/{members}/entries", token=None), 404, "unknown_ledger")
    public = await api.ledger("Open", "public")
    status, data = await api.call("GET", f"/ledgers/{public}/entries", token=None)
    assert status == 200 and [r["kind"] for r in data["entries"]] == ["ledger.genesis"]


async def test_writes_need_the_token(api: Api) -> None:
    public = await api.ledger("Open", "public")
    before = await api.store.count()
    for token in (None, "wrong", TOKEN + "x", ""):
        for method, path, body in (
            ("POST", "/ledgers", {"name": "x"}),
            ("POST", f"/ledgers/{public}/entries", {"kind": "note.text", "body": {}}),
            ("POST", "/follow", {"ledger": public}),
            ("GET", "/forks", None),
            ("GET", "/peers", None),
        ):
            assert_error(*await api.call(method, path, token=token, json=body), 401, "unauthorized")
    # another scheme, or a token with no scheme, is refused as well
    for header in (f"Basic {TOKEN}", TOKEN, f"Bearer{TOKEN}"):
        status, data = await api.call("POST", "/ledgers", token=None, json={"name": "x"},
                                      headers={"Authorization": header})
        assert_error(status, data, 401, "unauthorized")
    assert await api.store.count() == before


async def test_a_wrong_token_is_refused_even_for_public_reads(api: Api) -> None:
    public = await api.ledger("Open", "public")
    assert_error(*await api.call("GET", f"/ledgers/{public}", token="wrong"), 401, "unauthorized")
    assert (await api.call("GET", f"/ledgers/{public}", token=None))[0] == 200


async def test_follow(api: Api) -> None:
    other = str(CID.for_block(b"\xa1\x61\x61\x01"))  # a ledger this node has never seen
    status, data = await api.call("POST", "/follow", json={"ledger": other})
    assert status == 200 and data == {"ledger": other, "following": True}
    assert CID.parse(other) in await api.store.replicated()
    status, data = await api.call("POST", "/follow", json={"ledger": other})  # idempotent
    assert status == 200
    assert_error(*await api.call("POST", "/follow", json={"ledger": "bafynope"}), 400, "bad_cid")
    assert_error(*await api.call("POST", "/follow", json={}), 400, "bad_request")


async def test_forks_and_peers(api: Api) -> None:
    ledger = CID.parse(await api.ledger("Open", "public"))
    assert await api.call("GET", "/forks") == (200, {"forks": []})
    a = create_entry(OTHER, ledger=ledger, seq=1, prev=None, ts=1, kind="note.text", body={"v": 1})
    b = create_entry(OTHER, ledger=ledger, seq=1, prev=None, ts=1, kind="note.text", body={"v": 2})
    await api.store.ingest([a])
    await api.store.ingest([b])
    status, data = await api.call("GET", "/forks")
    assert status == 200 and len(data["forks"]) == 1
    row = data["forks"][0]
    proof = ForkProof.decode(base64.b64decode(row["proof"]))
    assert row == {
        "author": OTHER.did, "ledger": str(ledger), "seq": 1,
        "a": str(proof.a.id), "b": str(proof.b.id), "proof": row["proof"],
    }
    assert {row["a"], row["b"]} == {str(a.id), str(b.id)}
    no_healing = {"rounds": 0, "last_round": None, "waiting": 0, "restored": 0, "asked": []}  # an offline replicator
    assert await api.call("GET", "/peers") == (200, {"peers": [], "healing": no_healing})


# ---- error paths ---------------------------------------------------------------


async def test_request_bodies_are_checked(api: Api) -> None:
    ledger = await api.ledger()
    path = f"/ledgers/{ledger}/entries"
    before = await api.store.count()
    raw_cases = {
        b"not json": "bad_request",
        b"[1, 2]": "bad_request",
        b'"text"': "bad_request",
        b"\xff\xfe{}": "bad_request",
        b"": "bad_request",
        b'{"kind": "note.text"}': "bad_request",  # no body
        b'{"body": {}}': "bad_request",  # no kind
        b'{"kind": 7, "body": {}}': "bad_request",
        b'{"kind": "note.text", "body": {}, "extra": 1}': "bad_request",
        b'{"kind": "note.text", "body": {"q": 1.5}}': "bad_body",
        b'{"kind": "note.text", "body": {"q": 1e3}}': "bad_body",
        b'{"kind": "note.text", "body": {"q": 1.0}}': "bad_body",
        b'{"kind": "note.text", "body": {"q": NaN}}': "bad_body",
        b'{"kind": "note.text", "body": {"q": -Infinity}}': "bad_body",
        b'{"kind": "note.text", "body": {"a": 1, "a": 2}}': "bad_body",
        b'{"kind": "note.text", "body": {"big": 18446744073709551616}}': "bad_body",
        b'{"kind": "note.text", "body": [1]}': "bad_body",
        b'{"kind": "note.text", "body": {"/": "bafynope"}}': "bad_body",
        b'{"kind": "Bad Kind", "body": {}}': "bad_field",
        b'{"kind": "ledger.genesis", "body": {"name": "x"}}': "bad_genesis",
        b"[" * 10_000 + b"]" * 10_000: "bad_request",
    }
    for raw, code in raw_cases.items():
        status, data = await api.call("POST", path, data=raw, headers={"Content-Type": "application/json"})
        assert_error(status, data, 400, code)
    # lengths count what was sent, as the OpenAPI schema does, before spaces at either end are trimmed
    for body in ({"name": ""}, {"name": " "}, {"name": "x" * 201}, {"name": "\n" + "x" * 200},
                 {"name": "x", "visibility": "secret"}, {"name": "x", "visibility": ""}):
        assert_error(*await api.call("POST", "/ledgers", json=body), 400, "bad_body")
    for name in ("x" * 81, " " + "x" * 80, "", " "):
        assert_error(*await api.call("POST", f"/ledgers/{ledger}/about", json={"name": name}), 400, "bad_field")
    assert_error(*await api.call("POST", "/ledgers", json={"name": 1}), 400, "bad_request")
    assert await api.store.count() == before


async def test_oversize(api: Api) -> None:
    ledger = await api.ledger()
    path = f"/ledgers/{ledger}/entries"
    # the payload is over 16 KiB, the request under 64 KiB: the entry is refused
    status, data = await api.call("POST", path, json={"kind": "note.text", "body": {"x": "y" * 17_000}})
    assert_error(status, data, 413, "oversize")
    # the request itself is over 64 KiB: refused before it is parsed, with or without a length
    big = json.dumps({"kind": "note.text", "body": {"x": "y" * MAX_REQUEST_BYTES}}).encode()
    assert_error(*await api.call("POST", path, data=big), 413, "oversize")

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 4096):
            yield big[i : i + 4096]

    assert_error(*await api.call("POST", path, data=chunks()), 413, "oversize")
    assert await api.store.count() == 1


async def test_unknown_things(api: Api) -> None:
    ledger = await api.ledger()
    missing = str(CID.for_block(b"\xa0"))
    assert_error(*await api.call("GET", f"/ledgers/{missing}"), 404, "unknown_ledger")
    assert_error(*await api.call("GET", f"/ledgers/{missing}/entries"), 404, "unknown_ledger")
    status, data = await api.call("POST", f"/ledgers/{missing}/entries", json={"kind": "note.text", "body": {}})
    assert_error(status, data, 404, "unknown_ledger")
    assert_error(*await api.call("GET", "/ledgers/bafynope"), 400, "bad_cid")
    # an entry id is not a ledger id
    status, data = await api.call("POST", f"/ledgers/{ledger}/entries", json={"kind": "note.text", "body": {}})
    assert_error(*await api.call("GET", f"/ledgers/{data['id']}/entries"), 404, "unknown_ledger")
    # unknown API routes and wrong methods answer JSON too, anywhere under /api/v1
    for path in ("/nope", "/ledgers/x/y/z"):
        assert_error(*await api.call("GET", path), 404, "not_found")
    # outside /api/v1 are the dashboard's pages: an unknown one is an HTML page with the same code
    async with api.client.get("/api/v1/../../etc/passwd") as resp:
        assert resp.status == 404 and "<code>not_found</code>" in await resp.text()
    async with api.client.get("/no/such/page") as resp:
        assert resp.status == 404 and resp.content_type == "text/html"
        assert "<code>not_found</code>" in await resp.text()
    status, data = await api.call("DELETE", "/ledgers")
    assert_error(status, data, 405, "method_not_allowed")
    async with api.client.put("/api/v1/identity") as resp:
        assert resp.status == 405 and "GET" in resp.headers["Allow"]
        assert (await resp.json())["error"]["code"] == "method_not_allowed"


async def test_a_failure_inside_is_a_json_500_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = await Store.open(tmp_path / "tally.sqlite3", key=KEY)
    async with running_api(store, Replicator(store, KEY, peers=[], offline=True)) as api:
        await api.ledger()
        await store.close()  # every later query fails inside the handler
        with caplog.at_level(logging.ERROR, logger="node.app"):
            status, data = await api.call("GET", "/ledgers")
        assert_error(status, data, 500, "internal")
        assert "Traceback" not in json.dumps(data)
        assert "internal error" in caplog.text
        assert any(r.exc_info and getattr(r, "path", None) == "/api/v1/ledgers" for r in caplog.records)


async def test_wrong_tokens_are_rate_limited(store: Store) -> None:
    clock = [1000.0]
    async with running_api(store, Replicator(store, KEY, peers=[], offline=True), clock=clock) as api:
        for _ in range(20):
            assert_error(*await api.call("GET", "/peers", token="guess"), 401, "unauthorized")
        # each 401 waited, twice as long as the one before for the same guess, up to the most
        assert api.pauses == [min(AUTH_DELAY_MAX_S, AUTH_DELAY_S * 2**i) for i in range(20)]
        # the address's guesses are now refused until the window passes; the right token never is
        assert_error(*await api.call("GET", "/peers", token="guess"), 429, "rate_limited")
        assert (await api.call("GET", "/peers"))[0] == 200
        assert (await api.call("GET", "/identity", token=None))[0] == 200  # no token: not a guess
        clock[0] += 61
        assert_error(*await api.call("GET", "/peers", token="guess"), 401, "unauthorized")


def test_every_code_has_a_status() -> None:
    assert set(STATUS) == set(CODES)
    assert all(400 <= s <= 599 for s in STATUS.values())
    assert {STATUS[c] for c in ("bad_body", "bad_request")} == {400}
    assert (STATUS["unauthorized"], STATUS["forbidden"], STATUS["unknown_ledger"], STATUS["not_found"]) == (
        401, 403, 404, 404)
    assert (STATUS["fork"], STATUS["catching_up"], STATUS["oversize"], STATUS["rate_limited"]) == (409, 409, 413, 429)


async def test_the_token_never_reaches_the_log(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        ledger = await api.ledger()
        await api.call("POST", f"/ledgers/{ledger}/entries", json={"kind": "note.text", "body": {}})
        await api.call("GET", "/peers", token="guess-1234")
    assert "request" in caplog.text and "refused token" in caplog.text
    assert TOKEN not in caplog.text and "guess-1234" not in caplog.text


# ---- with a replicator that is catching up (the fake) -----------------------------


async def test_catching_up_holds_local_writes(store: Store) -> None:
    fake = FakeReplication(catching_up=True)
    async with running_api(store, fake) as api:
        assert_error(*await api.call("POST", "/ledgers", json={"name": "x"}), 409, "catching_up")
        assert await store.count() == 0
        fake.catching_up = False
        ledger = await api.ledger()
        fake.catching_up = True
        status, data = await api.call("POST", f"/ledgers/{ledger}/entries", json={"kind": "note.text", "body": {}})
        assert_error(status, data, 409, "catching_up")
        assert await store.count() == 1
        # reads go on, and following (which signs nothing) is allowed
        assert (await api.call("GET", f"/ledgers/{ledger}/entries"))[0] == 200
        assert (await api.call("POST", "/follow", json={"ledger": ledger}))[0] == 200
        assert fake.followed == [CID.parse(ledger)]
        # refusals that do not depend on the state still come first
        assert_error(*await api.call("POST", "/ledgers", token=None, json={"name": "x"}), 401, "unauthorized")
        fake.catching_up = False
        status, data = await api.call("POST", f"/ledgers/{ledger}/entries", json={"kind": "note.text", "body": {}})
        assert status == 201 and data["seq"] == 2


async def test_catching_up_holds_ledger_writes(store: Store) -> None:
    # The fake has no state cache of its own: the app keeps one.
    fake = FakeReplication()
    async with running_api(store, fake) as api:
        ledger = await api.ledger()
        fake.catching_up = True
        writes = [
            (f"/ledgers/{ledger}/members", {"agent": OTHER.did}),
            (f"/ledgers/{ledger}/contributions", {"action": "work", "quantity": "2", "unit": "hour"}),
            (f"/ledgers/{ledger}/leave", {}),
        ]
        for path, body in writes:
            assert_error(*await api.call("POST", path, json=body), 409, "catching_up")
        assert await store.count() == 1
        status, data = await api.call("GET", f"/ledgers/{ledger}/state")
        assert status == 200 and data["members"] == [KEY.did]
        fake.catching_up = False
        status, data = await api.call("POST", f"/ledgers/{ledger}/contributions", json=writes[1][1])
        assert status == 201 and set(data) == {"id"}
        fake.catching_up = True
        assert_error(*await api.call("POST", f"/entries/{data['id']}/endorsements", json={"verdict": "accept"}),
                     403, "self_endorsement")  # refused by the state before the wait
        status, history = await api.call("GET", f"/ledgers/{ledger}/history")
        assert [r["id"] for r in history["contributions"]] == [data["id"]]


async def test_sync_route_reaches_the_replicator(store: Store) -> None:
    fake = FakeReplication()
    async with running_api(store, fake) as api, api.client.get("/api/v1/sync") as resp:
        assert (resp.status, await resp.text()) == (200, "sync reached")
    assert fake.sync_calls == 1


# ---- the CLI against a node (this API, in-process, with the fake) -------------------


async def run_cli(home: Path, *args: str) -> tuple[int, str, str]:
    """The CLI in process, on a thread of its own while this loop serves the API it calls. The node's store and
    this loop start threads as they answer (a signer, the loop's executor): those are the node's, not the CLI's."""
    r = await asyncio.to_thread(inprocess_cli.run_cli, home, *args, hosted=("store-", "asyncio_"))
    return r.returncode, r.stdout, r.stderr


@pytest.fixture
def initialized(tally: TallyRunner, home: Path) -> Home:
    r = tally("init")
    assert r.returncode == 0, r.stderr
    return Home(home)


async def test_cli_writes_go_through_a_running_node(initialized: Home) -> None:
    home = initialized
    key = home.load_key()
    peer = PeerInfo(did=OTHER.did, address="http://10.0.0.7:7410", found="flag", connected=True,
                    last_sync=1_700_000_000_000, entries_behind=3)
    fake = FakeReplication(catching_up=True, peers=[peer, PeerInfo(did=None, address=None, found="mdns")])
    store = await Store.open(home.store_path, key=key)
    config = ApiConfig(key.did, home.load_token(), "test")
    server = TestServer(build_app(store, fake, config), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        write_node_file(home.path, NodeFile(f"http://127.0.0.1:{server.port}", os.getpid(), 0))
        # catching up: the CLI's writes are refused by the node, with its code
        rc, out, err = await run_cli(home.path, "ledger", "create", "Coop")
        assert (rc, out) == (1, "") and err.startswith("error: catching_up: "), err
        fake.catching_up = False
        rc, out, err = await run_cli(home.path, "ledger", "create", "Coop")
        assert rc == 0, err
        ledger = last_line(out)
        fake.catching_up = True
        rc, out, err = await run_cli(home.path, "append", "--ledger", ledger, "--kind", "note.text", "--body", "{}")
        assert (rc, out) == (1, "") and err.startswith("error: catching_up: "), err
        fake.catching_up = False
        rc, out, err = await run_cli(home.path, "append", "--ledger", ledger, "--kind", "note.text",
                                     "--body", '{"b": {"/": {"bytes": "aGk"}}, "n": -5}')
        assert rc == 0, err
        entry = await store.get(CID.parse(last_line(out)))
        assert entry is not None and entry.body == {"b": b"hi", "n": -5}
        # the node's refusals come back as the CLI's own errors
        rc, _, err = await run_cli(home.path, "append", "--ledger", str(CID.for_block(b"\xa0")), "--kind",
                                   "note.text", "--body", "{}")
        assert rc == 1 and err.startswith("error: unknown_ledger: "), err
        rc, out, err = await run_cli(home.path, "follow", ledger)
        assert (rc, last_line(out)) == (0, ledger) and fake.followed == [CID.parse(ledger)]
        rc, out, err = await run_cli(home.path, "peers", "--json")
        assert rc == 0 and [json.loads(line) for line in out.splitlines()] == [
            peer.as_json(), PeerInfo(did=None, address=None, found="mdns").as_json()]
        rc, out, err = await run_cli(home.path, "peers")
        assert rc == 0
        assert out.splitlines() == [
            f"{OTHER.did}\thttp://10.0.0.7:7410\tflag\tconnected\tlast sync 2023-11-14T22:13:20Z\t3 behind",
            "-\t-\tmdns\tdisconnected\tlast sync never\t0 behind",
        ]
        # a node that answers for another identity is not this home's node
        other_home = home.path.parent / "other"
        other_home.mkdir()
        assert (await run_cli(other_home, "init"))[0] == 0
        write_node_file(other_home, NodeFile(f"http://127.0.0.1:{server.port}", os.getpid(), 0))
        rc, _, err = await run_cli(other_home, "peers")
        assert rc == 1 and err.startswith("error: not_running: "), err
    finally:
        await server.close()
        await store.close()


def test_auth_failures_forget_old_addresses() -> None:
    from node.http.context import AUTH_TRACKED_MAX, AuthFailures

    now = [0.0]
    failures = AuthFailures(2, 60.0, lambda: now[0])
    failures.record("a")
    failures.record("a")
    assert failures.blocked("a") and not failures.blocked("b")
    now[0] = 61.0
    assert not failures.blocked("a")
    for i in range(AUTH_TRACKED_MAX + 10):
        failures.record(f"10.0.{i // 256}.{i % 256}")
        failures.record(f"10.0.{i // 256}.{i % 256}")
    assert failures.blocked(f"10.0.{(AUTH_TRACKED_MAX + 9) // 256}.{(AUTH_TRACKED_MAX + 9) % 256}")
    assert not failures.blocked("10.0.0.0")  # the oldest was forgotten to keep the table bounded
