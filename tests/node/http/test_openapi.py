"""The API's OpenAPI document (GET /api/v1/openapi.json): complete, valid, and true of a live node.

The last test runs schemathesis (its CLI, as a user would) against a real `tally run`
process (its wrong-token waits answered at once: unpaused_node.py) over every operation:
examples, coverage, fuzzing and stateful phases (following the document's links, e.g. found
ledger -> append entry -> endorse), with a bounded number of examples. It must find no server error, and no response
that breaks the document (status, content type, headers, body schema, error code).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from inprocess_cli import run_cli
from openapi_spec_validator import validate

from node.app import build_app
from node.http.context import ApiConfig, api_routes
from node.http.errors import STATUS
from node.http.openapi import Access, Operation, Param, UndocumentedRoute, openapi_document, operation_of
from node.store.store import Store
from node.sync.replication import Replicator
from protocol import CODES, SigningKey

TOKEN = "test-token-" + "x" * 32
KEY = SigningKey(bytes(range(32)))
SCHEMATHESIS_EXAMPLES = 100  # per operation and phase
SCHEMATHESIS_TIMEOUT_S = 900.0  # generous: ~60 s on a quiet machine, 4 min and more on a busy one
UNPAUSED_NODE = Path(__file__).with_name("unpaused_node.py")


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[web.Application]:
    store = await Store.open(tmp_path / "tally.sqlite3", key=KEY)
    replicator = Replicator(store, KEY, peers=[], offline=True)
    await replicator.start()
    try:
        yield build_app(store, replicator, ApiConfig(KEY.did, TOKEN, "9.8.7"))
    finally:
        await replicator.stop()
        await store.close()


@pytest.fixture
async def client(app: web.Application) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    client = TestClient(TestServer(app, host="127.0.0.1", port=0))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


def document(app: web.Application) -> dict[str, Any]:
    return openapi_document(api_routes(app), version="9.8.7", status=STATUS)


async def test_served_without_a_token_and_valid_openapi_3_1(
    app: web.Application, client: TestClient[web.Request, web.Application]
) -> None:
    async with client.get("/api/v1/openapi.json") as resp:
        assert resp.status == 200 and resp.content_type == "application/json"
        served = await resp.json()
    assert served == document(app)
    assert served["openapi"] == "3.1.0" and served["info"]["version"] == "9.8.7"
    validate(served)  # raises on an invalid document


def test_every_route_is_described(app: web.Application) -> None:
    paths = document(app)["paths"]
    routes = [r for r in api_routes(app) if r.method != "HEAD"]
    assert len(routes) >= 10
    for route in routes:
        assert operation_of(route.handler) is not None, f"{route.method} {route.resource}: no @Operation"
        assert route.resource is not None
        described = paths[route.resource.canonical][route.method.lower()]
        assert described["summary"] and described["responses"] and described["operationId"]
    assert "/api/v1/openapi.json" in paths and "/api/v1/identity" in paths


def test_a_route_without_a_description_cannot_be_published(app: web.Application) -> None:
    async def undocumented(request: web.Request) -> web.Response:
        return web.json_response({})

    bare = web.Application()
    bare.router.add_get("/api/v1/nothing", undocumented)
    with pytest.raises(UndocumentedRoute, match=r"GET /api/v1/nothing: handler .*undocumented.* @Operation"):
        openapi_document(bare.router.routes(), version="1", status=STATUS)

    async def misdescribed(request: web.Request) -> web.Response:
        return web.json_response({})

    Operation("x", {"type": "object"})(misdescribed)
    bare = web.Application()
    bare.router.add_get("/api/v1/things/{thing}", misdescribed)
    with pytest.raises(UndocumentedRoute, match=r"path parameters \['thing'\] but described \[\]"):
        openapi_document(bare.router.routes(), version="1", status=STATUS)

    async def linked(request: web.Request) -> web.Response:
        return web.json_response({})

    Operation("y", {"type": "object"}, links={"Gone": {"operationId": "gone"}})(linked)
    bare = web.Application()
    bare.router.add_get("/api/v1/linked", linked)
    with pytest.raises(UndocumentedRoute, match="unknown operation 'gone'"):
        openapi_document(bare.router.routes(), version="1", status=STATUS)

    with pytest.raises(ValueError, match="unknown error codes"):
        Operation("z", None, errors=("no_such_code",))
    with pytest.raises(ValueError, match="where is"):
        Param("p", "header", {}, "")


def test_error_codes_come_from_codes_and_sit_under_their_status(app: web.Application) -> None:
    doc = document(app)
    error = doc["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["properties"]["code"]["enum"] == sorted(CODES)
    assert error["additionalProperties"] is False
    seen: set[str] = set()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert "500" in op["responses"], (method, path)  # `internal`, everywhere
            for status, response in op["responses"].items():
                if int(status) < 400:
                    continue
                codes = response["content"]["application/json"]["schema"]["allOf"][1]["properties"]["error"][
                    "properties"]["code"]["enum"]
                assert codes and all(STATUS.get(code, 500) == int(status) for code in codes), (method, path, status)
                seen.update(codes)
            if op["security"]:  # a token is checked: a wrong one is 401, too many wrong ones 429
                assert {"401", "429"} <= set(op["responses"]), (method, path)
    assert {"unauthorized", "unknown_ledger", "bad_cid", "catching_up", "oversize", "internal"} <= seen


def test_access_is_described_as_security() -> None:
    async def h(request: web.Request) -> web.Response:
        return web.json_response({})

    for access, security in ((Access.PUBLIC, []), (Access.OPTIONAL, [{}, {"bearerToken": []}]),
                             (Access.OWNER, [{"bearerToken": []}])):
        app = web.Application()
        app.router.add_get("/x", Operation("x", {"type": "object"}, access=access)(h), allow_head=False)
        op = openapi_document(app.router.routes(), version="1", status=STATUS)["paths"]["/x"]["get"]
        assert op["security"] == security
        assert "401" in op["responses"]  # a wrong token is refused on every route, public ones too


# ---- schemathesis against a live `tally run` ------------------------------------------


@dataclass
class LiveNode:
    proc: subprocess.Popen[bytes]
    address: str
    token: str
    log_path: Path


def _http(url: str, *, token: str | None = None, body: Any = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def live_node(tmp_path: Path) -> Iterator[LiveNode]:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "TALLY_HOME"}
    assert run_cli(home, "init").returncode == 0
    log_path = tmp_path / "node.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(UNPAUSED_NODE), "--home", str(home), "run", "--listen", "127.0.0.1:0", "--offline",
             "--no-mdns"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                info = json.loads((home / "node.json").read_text())
                if info["pid"] == proc.pid:
                    break
            except (OSError, ValueError):
                pass
            assert time.monotonic() < deadline, f"no node.json: {log_path.read_text()}"
            time.sleep(0.05)
        yield LiveNode(proc, info["address"], (home / "api.token").read_text().strip(), log_path)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_schema_violation(live_node: LiveNode, tmp_path: Path) -> None:
    api = f"{live_node.address}/api/v1"
    # Some data to read from the start: a public and a members-only ledger with entries.
    for visibility in ("public", "members"):
        seed = {"name": "Seed", "visibility": visibility}
        status, created = _http(f"{api}/ledgers", token=live_node.token, body=seed)
        assert status == 201, created
        for n in range(3):
            status, data = _http(f"{api}/ledgers/{created['id']}/entries", token=live_node.token,
                                 body={"kind": "note.text", "body": {"n": n, "text": "seed"}})
            assert status == 201, data
    started = time.monotonic()
    # positive_data_acceptance is left out: a schema cannot say which strings are real CIDs, stored
    # ledgers or valid rules, so schema-valid requests are rightly refused (400, 404) all the time.
    result = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{api}/openapi.json",
         "--checks", "all", "--exclude-checks", "positive_data_acceptance",
         "--max-examples", str(SCHEMATHESIS_EXAMPLES), "--workers", "1", "--request-timeout", "30",
         "--generation-database", "none", "--no-color", "--header", f"Authorization: Bearer {live_node.token}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=SCHEMATHESIS_TIMEOUT_S,
        env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false"},
    )
    elapsed = time.monotonic() - started
    report = result.stdout[-20000:] + result.stderr[-5000:]
    assert result.returncode == 0, report
    assert "generated" in result.stdout and " failure" not in result.stdout.split("SUMMARY")[-1], report
    assert live_node.proc.poll() is None, "the node died under schemathesis"
    internal = [line for line in live_node.log_path.read_text().splitlines() if "internal error" in line]
    assert not internal, internal[:5]
    refused = [line for line in live_node.log_path.read_text().splitlines() if "refused token" in line]
    print(f"schemathesis: {elapsed:.1f} s, {len(refused)} wrong tokens;", result.stdout.strip().splitlines()[-1])
