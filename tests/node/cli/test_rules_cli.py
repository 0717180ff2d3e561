"""`tally ledger create --rules FILE` and POST /api/v1/ledgers with `rules`: real homes, real stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import TallyRunner, last_line, tally_executable

from node.app import build_app
from node.http.context import ApiConfig
from node.store.store import Store
from node.sync.replication import Replicator
from protocol import SigningKey
from protocol.rules import Rules

START_TIMEOUT_S = 90.0
TOKEN = "test-token-" + "r" * 32
KEY = SigningKey(bytes(range(7, 39)))
OTHER = SigningKey(bytes(range(8, 40))).did

RULES_TOML = """
purpose = "Repair bikes together"
visibility = "members"
founders = ["{creator}", "{other}"]
units = ["hour", "euro", "day"]
[validation]
accept = 2
reject = 1
[rates.work]
hour = "20"
[rates."work:engineering"]
hour = "30"
[rates.transfer]
euro = "1"
[rates.use]
day = "25"
[[buckets]]
name = "reserve"
percent = "10"
recipient = "ledger"
[[buckets]]
name = "members"
percent = "90"
mode = "straight"
claims = "equity"
[voting]
min = 0
max = 5
blank = "zero"
"""


def init(tally: TallyRunner) -> str:
    r = tally("init")
    assert r.returncode == 0, r.stderr
    return last_line(r.stdout)


def ledgers(tally: TallyRunner) -> list[dict[str, Any]]:
    r = tally("ledger", "list", "--json")
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def genesis_body(tally: TallyRunner, ledger: str) -> dict[str, Any]:
    r = tally("log", "--ledger", ledger, "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 1 and rows[0]["kind"] == "ledger.genesis"
    body: dict[str, Any] = rows[0]["body"]
    return body


def write(tmp_path: Path, text: str, name: str = "rules.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def expected(did: str, name: str = "Bike coop", *, public: bool = False) -> dict[str, Any]:
    import tomllib

    config = tomllib.loads(RULES_TOML.format(creator=did, other=OTHER))
    return Rules.from_config(config, name=name, creator=did, public=public).to_body()


# ---- the CLI, writing to the store itself -----------------------------------------------------


def test_create_with_a_rules_file(tally: TallyRunner, tmp_path: Path) -> None:
    did = init(tally)
    rules = write(tmp_path, RULES_TOML.format(creator=did, other=OTHER))
    r = tally("ledger", "create", "Bike coop", "--rules", rules)
    assert r.returncode == 0, r.stderr
    ledger = last_line(r.stdout)
    body = genesis_body(tally, ledger)
    assert body == expected(did)
    assert body["founders"] == sorted([did, OTHER]) and body["rates"]["work:engineering"] == {"hour": "30"}
    assert body["buckets"][0] == {"name": "reserve", "percent": "10", "recipient": "ledger", "mode": "straight",
                                  "claims": "equity", "actions": []}
    assert Rules.from_body(body).to_body() == body
    [row] = ledgers(tally)
    assert (row["id"], row["name"], row["visibility"]) == (ledger, "Bike coop", "members")


def test_create_without_rules_writes_the_defaults(tally: TallyRunner) -> None:
    did = init(tally)
    r = tally("ledger", "create", "  Tool library ", "--public")
    assert r.returncode == 0, r.stderr
    body = genesis_body(tally, last_line(r.stdout))
    assert body == Rules.from_config({}, name="Tool library", creator=did, public=True).to_body()
    assert ledgers(tally)[0]["visibility"] == "public"


def test_public_flag_and_file_visibility(tally: TallyRunner, tmp_path: Path) -> None:
    did = init(tally)
    members = write(tmp_path, RULES_TOML.format(creator=did, other=OTHER))
    public = write(tmp_path, RULES_TOML.format(creator=did, other=OTHER).replace('"members"', '"public"'), "pub.toml")
    r = tally("ledger", "create", "Forced", "--rules", members, "--public")
    assert r.returncode == 0, r.stderr
    r = tally("ledger", "create", "From file", "--rules", public)
    assert r.returncode == 0, r.stderr
    assert {row["name"]: row["visibility"] for row in ledgers(tally)} == {"Forced": "public", "From file": "public"}


BAD_FILES = [
    # (file text or None for a missing file, code, text the message must hold)
    (None, "bad_rules", "cannot read"),
    ("units = [\n", "bad_rules", "not TOML"),
    ("founders = 'a'\nfounders = 'b'\n", "bad_rules", "not TOML"),
    ("[validation]\nacept = 2\n", "unknown_rule_key", "validation.acept"),
    ("[[buckets]]\nname = \"m\"\npercent = \"100\"\nrecipent = \"ledger\"\n", "unknown_rule_key",
     "buckets[0].recipent"),
    ("[rates.work]\nhour = 20.5\n", "bad_quantity", "rates.work.hour"),
    ("[rates.wrok]\nhour = \"1\"\n", "unknown_action", "rates.wrok"),
    ("[rates.work]\nkm = \"1\"\n", "unknown_unit", "rates.work.km"),
    ("[[buckets]]\nname = \"m\"\npercent = \"90\"\n", "bad_rules", "buckets"),
    ("[[buckets]]\nname = \"m\"\npercent = \"100\"\nrecipient = \"bob\"\n", "unknown_bucket_recipient",
     "buckets[0].recipient"),
    ("founders = [\"did:key:z6Mknope\"]\n", "bad_did", "founders[0]"),
    ("[validation]\naccept = 0\n", "bad_rules", "validation.accept"),
    ("[voting]\nmin = 5\nmax = 5\n", "bad_rules", "voting.min"),
    ("x = " + "[" * 500 + "]" * 500 + "\n", "bad_rules", "nest"),  # parsed, it would exhaust the parser's stack
    ("x = " + "{a = " * 500 + "1" + "}" * 500 + "\n", "bad_rules", "nest"),
]


@pytest.mark.parametrize(("text", "code", "needle"), BAD_FILES, ids=[f"{c}:{n}" for _, c, n in BAD_FILES])
def test_bad_files_are_refused_and_nothing_is_appended(
    tally: TallyRunner, tmp_path: Path, text: str | None, code: str, needle: str
) -> None:
    init(tally)
    path = str(tmp_path / "missing.toml") if text is None else write(tmp_path, text)
    r = tally("ledger", "create", "Bike coop", "--rules", path)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stderr.startswith(f"error: {code}: "), r.stderr
    assert needle in r.stderr and r.stdout == ""
    assert ledgers(tally) == []


def test_a_file_that_is_not_utf8(tally: TallyRunner, tmp_path: Path) -> None:
    init(tally)
    path = tmp_path / "rules.toml"
    path.write_bytes(b"purpose = \"\xff\"\n")
    r = tally("ledger", "create", "Bike coop", "--rules", str(path))
    assert r.returncode == 1 and r.stderr.startswith("error: bad_rules: "), r.stderr
    assert ledgers(tally) == []


def test_the_unknown_key_is_named_in_full(tally: TallyRunner, tmp_path: Path) -> None:
    init(tally)
    path = write(tmp_path, "[voting]\nmin = 0\nquorom = \"0.5\"\n")
    r = tally("ledger", "create", "Bike coop", "--rules", path)
    assert r.returncode == 1
    assert r.stderr.startswith("error: unknown_rule_key: voting.quorom: "), r.stderr


def test_the_name_is_still_checked_first(tally: TallyRunner, tmp_path: Path) -> None:
    init(tally)
    r = tally("ledger", "create", "   ", "--rules", str(tmp_path / "missing.toml"))
    assert r.returncode == 1 and r.stderr.startswith("error: bad_body: "), r.stderr


# ---- through a running node ---------------------------------------------------------------------


@pytest.fixture
def running(home: Path, tally: TallyRunner) -> Iterator[str]:
    """`tally run` on a free loopback port; yields this home's did."""
    did = init(tally)
    env = {k: v for k, v in os.environ.items() if k != "TALLY_HOME"}
    log = (home.parent / "node.log").open("wb")
    proc = subprocess.Popen(
        [tally_executable(), "--home", str(home), "run", "--listen", "127.0.0.1:0", "--offline", "--no-mdns"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert proc.poll() is None, (home.parent / "node.log").read_text()
            assert time.monotonic() < deadline, "the node did not start"
            try:
                info = json.loads((home / "node.json").read_text())
            except (OSError, ValueError):
                info = None
            if info and info["pid"] == proc.pid:
                break
            time.sleep(0.05)
        yield did
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_create_with_rules_through_a_running_node(
    tally: TallyRunner, home: Path, tmp_path: Path, running: str
) -> None:
    rules = write(tmp_path, RULES_TOML.format(creator=running, other=OTHER))
    r = tally("ledger", "create", "Bike coop", "--rules", rules, "--public")
    assert r.returncode == 0, r.stderr
    ledger = last_line(r.stdout)
    address = json.loads((home / "node.json").read_text())["address"]
    token = (home / "api.token").read_text().strip()
    request = urllib.request.Request(f"{address}/api/v1/ledgers/{ledger}/entries",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=60) as resp:
        data = json.loads(resp.read())
    [row] = data["entries"]
    assert row["body"] == expected(running, public=True)
    # refused before the node is asked: the error is the same, nothing is written
    bad = write(tmp_path, "[validation]\nacept = 2\n", "bad.toml")
    r = tally("ledger", "create", "Other", "--rules", bad)
    assert r.returncode == 1 and r.stderr.startswith("error: unknown_rule_key: validation.acept: "), r.stderr


# ---- the API ----------------------------------------------------------------------------------


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], Store]]:
    store = await Store.open(tmp_path / "tally.sqlite3", key=KEY)
    replicator = Replicator(store, KEY, peers=[], offline=True)
    await replicator.start()
    app = build_app(store, replicator, ApiConfig(KEY.did, TOKEN, "test"))
    test_client = TestClient(TestServer(app, host="127.0.0.1", port=0))
    await test_client.start_server()
    try:
        yield test_client, store
    finally:
        await test_client.close()
        await replicator.stop()
        await store.close()


async def post(client: TestClient[Any, Any], body: Any) -> tuple[int, Any]:
    async with client.post("/api/v1/ledgers", json=body, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        return resp.status, await resp.json()


async def test_api_creates_a_ledger_with_rules(client: tuple[TestClient[Any, Any], Store]) -> None:
    import tomllib

    test_client, store = client
    config = tomllib.loads(RULES_TOML.format(creator=KEY.did, other=OTHER))
    status, data = await post(test_client, {"name": "Bike coop", "rules": config})
    assert status == 201, data
    [info] = await store.ledgers()
    assert str(info.id) == data["id"] and info.visibility == "members"
    genesis = await store.genesis(info.id)
    assert genesis is not None and genesis.body == expected(KEY.did)
    # no rules: the defaults, and the top-level visibility still works
    status, data = await post(test_client, {"name": "Tools", "visibility": "public"})
    assert status == 201, data
    genesis = await store.genesis(next(i.id for i in await store.ledgers() if i.name == "Tools"))
    assert genesis is not None
    assert genesis.body == Rules.from_config({}, name="Tools", creator=KEY.did, public=True).to_body()


@pytest.mark.parametrize(
    ("body", "code", "needle"),
    [
        ({"name": "L", "rules": {"validation": {"acept": 2}}}, "unknown_rule_key", "validation.acept"),
        ({"name": "L", "rules": {"rates": {"work": {"hour": 20.5}}}}, "bad_quantity", "rates.work.hour"),
        ({"name": "L", "rules": {"rates": {"work": {"hour": 1e3}}}}, "bad_quantity", "rates.work.hour"),
        ({"name": "L", "rules": {"buckets": [{"name": "m", "percent": "100", "recipient": "x"}]}},
         "unknown_bucket_recipient", "buckets[0].recipient"),
        ({"name": "L", "rules": {"founders": [OTHER]}}, "bad_rules", "founders"),
        ({"name": "L", "rules": {"units": 5}}, "bad_rules", "units"),
        ({"name": "L", "rules": "units = []"}, "bad_request", "rules"),
        ({"name": "L", "visibility": "members", "rules": {"visibility": "public"}}, "bad_request", "visibility"),
        ({"name": "", "rules": {}}, "bad_body", "name"),
    ],
)
async def test_api_refuses_bad_rules(
    client: tuple[TestClient[Any, Any], Store], body: dict[str, Any], code: str, needle: str
) -> None:
    test_client, store = client
    status, data = await post(test_client, body)
    assert (status, data["error"]["code"]) == (400, code), data
    assert needle in data["error"]["message"]
    assert await store.ledgers() == []
