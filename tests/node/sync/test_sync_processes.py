"""Replication between real `tally run` processes, each with its own home, over loopback.

What only whole nodes show: the CLI beside a running node (`tally log --json`, `tally forks
--json`, `tally append` answering `catching_up`), separate logs, and homes restored from an
old copy. Waits poll the nodes' HTTP API with generous deadlines (machines are shared).
The in-process scenarios (relays, live push, cut links, hostile peers) are in test_sync.py;
writes without the token are refused in test_api.py::test_writes_need_the_token, and once
more here against a node that replicates.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import signal
import socket
import socketserver
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import TallyRunner, last_line
from inprocess_cli import TEST_THREAD_PREFIX
from running_nodes import http, spawn, token, until

from node.home import Home
from node.store.store import Store
from node.sync.replication import Replicator
from protocol import CID, GENESIS_KIND, ForkProof, SigningKey
from protocol.writes import AppendRequest, genesis_body

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 90.0
DEADLINE_S = 60.0  # generous: each wait normally ends within a few seconds
POLL_S = 0.1  # these waits poll twice as often as running_nodes' default

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@dataclass
class Node:
    """A `tally run` process."""

    name: str
    proc: subprocess.Popen[bytes]
    home: Path
    log_path: Path
    address: str

    @property
    def token(self) -> str:
        return token(self.home)

    def log(self) -> str:
        return self.log_path.read_text()

    def call(self, method: str, path: str, body: Any = None, *, token: bool = True) -> tuple[int, Any]:
        return http(self.address + "/api/v1" + path, method=method, body=body, token=self.token if token else None)

    def create_ledger(self, name: str, visibility: str = "public") -> str:
        status, data = self.call("POST", "/ledgers", {"name": name, "visibility": visibility})
        assert status == 201, (status, data)
        return str(data["id"])

    def append(self, ledger: str, body: dict[str, Any]) -> tuple[str, int]:
        status, data = self.call("POST", f"/ledgers/{ledger}/entries", {"kind": "note.text", "body": body})
        assert status == 201, (self.name, status, data)
        return str(data["id"]), int(data["seq"])

    def follow(self, ledger: str) -> None:
        status, data = self.call("POST", "/follow", {"ledger": ledger})
        assert status == 200, (status, data)

    def entries(self, ledger: str) -> int:
        """How many entries of `ledger` the node holds (0 while it lacks the ledger)."""
        status, data = self.call("GET", f"/ledgers/{ledger}")
        return int(data["entries"]) if status == 200 else 0

    def forks(self) -> list[dict[str, Any]]:
        status, data = self.call("GET", "/forks")
        assert status == 200, (status, data)
        return list(data["forks"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.name} did not stop on SIGTERM; log:\n{self.log()}") from None
            assert code == 0, f"{self.name} exited with {code}; log:\n{self.log()}"


Starter = Callable[..., Node]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Starter]:
    """`start(name, home, *args)`: `tally run` on a free loopback port, no mDNS; killed at teardown if still up."""
    running: list[Node] = []

    def run(name: str, home: Path, *extra: str) -> Node:
        log_path = tmp_path / f"{name}-{time.monotonic_ns()}.log"
        # unlike running_nodes.start, no --offline unless asked: a safe restore needs a node without it
        proc, address = spawn(home, ["--no-mdns", *extra], log_path, who=name, timeout=START_TIMEOUT_S)
        node = Node(name, proc, home, log_path, address)
        running.append(node)
        return node

    try:
        yield run
    finally:
        for node in running:
            if node.proc.poll() is None:
                node.proc.kill()
                node.proc.wait()


def init(tally: TallyRunner, home: Path) -> str:
    r = tally("init", home_dir=home)
    assert r.returncode == 0, r.stderr
    return last_line(r.stdout)


def log_rows(tally: TallyRunner, home: Path, ledger: str) -> list[dict[str, Any]]:
    r = tally("log", "--ledger", ledger, "--json", home_dir=home)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def forks_of(tally: TallyRunner, home: Path) -> list[dict[str, Any]]:
    r = tally("forks", "--json", home_dir=home)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def old_copy(home: Path, to: Path) -> None:
    """Copy a home while its node runs, as a backup would: the files, and the store as of now
    (SQLite's online backup, consistent even mid-write; copying the file itself could tear)."""
    shutil.copytree(home, to, ignore=shutil.ignore_patterns("tally.sqlite3*", "node.json"))
    with sqlite3.connect(home / "tally.sqlite3") as src, sqlite3.connect(to / "tally.sqlite3") as dst:
        src.backup(dst)
    src.close()
    dst.close()


def restore(copy: Path, home: Path) -> None:
    shutil.rmtree(home)
    shutil.copytree(copy, home)


# --- convergence --------------------------------------------------------------------------------------------------


def test_three_processes_converge_and_a_members_only_ledger_stays_home(
        tally: TallyRunner, tmp_path: Path, start: Starter) -> None:
    homes = {n: tmp_path / n for n in "abc"}
    dids = {n: init(tally, h) for n, h in homes.items()}
    a = start("a", homes["a"], "--offline")
    public = a.create_ledger("Coop")
    secret = a.create_ledger("Board", "members")
    secret_ids = [a.append(secret, {"minutes": i})[0] for i in range(3)]
    for i in range(4):
        a.append(public, {"from": "a", "i": i})
    b = start("b", homes["b"], "--peer", a.address)
    c = start("c", homes["c"], "--peer", a.address, "--peer", b.address)  # a full mesh
    nodes = [a, b, c]
    b.follow(public)
    b.follow(secret)  # b learned the id somehow; it is no member
    c.follow(public)
    until(lambda: b.entries(public) == c.entries(public) == 5, "b and c have the ledger", poll=POLL_S,
          logs=nodes)

    # every node writes; everything reaches everyone
    for i in range(5):
        for node in nodes:
            node.append(public, {"from": node.name, "i": i})
    total = 5 + 3 * 5
    until(lambda: all(n.entries(public) == total for n in nodes), f"{total} entries everywhere", poll=POLL_S,
          logs=nodes)
    rows = {n.name: log_rows(tally, n.home, public) for n in nodes}
    assert len(rows["a"]) == total and rows["a"] == rows["b"] == rows["c"]
    assert {r["author"] for r in rows["a"]} == set(dids.values())
    assert all(forks_of(tally, n.home) == [] for n in nodes)

    # the members-only ledger never left a: b stores nothing of it, says nothing of it
    r = tally("log", "--ledger", secret, home_dir=b.home)
    assert r.returncode == 1 and r.stderr.startswith("error: unknown_ledger: "), r.stderr
    assert b.call("GET", f"/ledgers/{secret}")[0] == 404
    assert not any(entry_id in b.log() for entry_id in secret_ids)
    assert a.entries(secret) == 4 and b.entries(secret) == 0

    # a write without the owner's token is refused, and stores nothing anywhere
    status, data = b.call("POST", f"/ledgers/{public}/entries", {"kind": "note.text", "body": {}}, token=False)
    assert (status, data["error"]["code"]) == (401, "unauthorized")
    # b answered after refusing: had it stored the entry, b's count would show it now (and only b could
    # pass it on), so there is nothing to wait for
    assert all(n.entries(public) == total for n in nodes)
    for node in nodes:
        node.stop()


# --- restoring an old copy of a home --------------------------------------------------------------------------------


def history(tally: TallyRunner, tmp_path: Path, start: Starter, followers: str) -> tuple[Node, str, Path, list[Node]]:
    """Node a founds a public ledger and writes seq 1..10 of its chain; `followers` (names) run
    with `--peer a` and hold all ten. A copy of a's home is taken when its chain was at seq 5."""
    homes = {n: tmp_path / n for n in "a" + followers}
    for home in homes.values():
        init(tally, home)
    a = start("a", homes["a"], "--offline")
    ledger = a.create_ledger("Coop")
    for i in range(2, 6):
        assert a.append(ledger, {"i": i})[1] == i
    copy = tmp_path / "a-at-seq-5"
    old_copy(a.home, copy)
    for i in range(6, 11):
        assert a.append(ledger, {"i": i})[1] == i
    others = [start(n, homes[n], "--peer", a.address) for n in followers]
    for node in others:
        node.follow(ledger)
    until(lambda: all(n.entries(ledger) == 10 for n in others), "the followers hold a's ten entries",
          poll=POLL_S, logs=[a, *others])
    a.stop()
    return a, ledger, copy, others


def check_fork(row: dict[str, Any], did: str, ledger: str, ids: set[str]) -> None:
    assert (row["author"], row["ledger"], row["seq"]) == (did, ledger, 6), row
    assert {row["a"], row["b"]} == ids, row
    proof = ForkProof.decode(base64.b64decode(row["proof"]))  # verifies both signed headers
    assert (proof.author, proof.seq, str(proof.a.ledger_id)) == (did, 6, ledger)
    assert {str(proof.a.id), str(proof.b.id)} == ids


def test_an_old_copy_run_offline_forks_and_every_node_proves_it(
        tally: TallyRunner, tmp_path: Path, start: Starter) -> None:
    a, ledger, copy, (b, c) = history(tally, tmp_path, start, "bc")
    did = last_line(tally("id", home_dir=a.home).stdout)
    original_6 = next(r["id"] for r in log_rows(tally, b.home, ledger) if r["author"] == did and r["seq"] == 6)

    restore(copy, a.home)
    restored = start("a-restored", a.home, "--offline")  # no peers, no safe restore: it believes seq 5 is its last
    r = tally("append", "--ledger", ledger, "--kind", "note.text", "--body", '{"i": "6 again"}', home_dir=a.home)
    assert r.returncode == 0, r.stderr
    forked_6 = last_line(r.stdout)
    assert next(x for x in log_rows(tally, a.home, ledger) if x["id"] == forked_6)["seq"] == 6
    restored.stop()

    # now it meets the others (still --offline: it signs no more, but it syncs)
    restored = start("a-restored", a.home, "--offline", "--peer", b.address, "--peer", c.address)
    nodes = [restored, b, c]
    until(lambda: all(len(n.forks()) == 1 for n in nodes), "every node knows the fork", poll=POLL_S, logs=nodes)
    for node in nodes:
        [row] = forks_of(tally, node.home)  # `tally forks --json`, beside the running node
        check_fork(row, did, ledger, {original_6, forked_6})
    # the fork's second entry is not stored in the chain of those that had the first
    assert [x["id"] for x in log_rows(tally, b.home, ledger) if x["seq"] == 6] == [original_6]
    for node in nodes:
        node.stop()
    for node in nodes:
        r = tally("verify", home_dir=node.home)
        assert r.returncode == 0 and "1 known fork(s)" in r.stdout, (node.name, r.stdout, r.stderr)


class ProxyServer(socketserver.ThreadingTCPServer):
    """Each connection on a daemon thread named as the test's own, so a connection that arrives while an
    in-process `tally` command runs is not taken for a thread the command left running (tests/inprocess_cli.py)."""

    daemon_threads = True

    def process_request(self, request: Any, client_address: Any) -> None:
        threading.Thread(target=self.process_request_thread, args=(request, client_address),
                         name=f"{TEST_THREAD_PREFIX}route-connection", daemon=True).start()


class SlowRoute:
    """A TCP proxy to `upstream` (host, port) that holds each new connection `delay` seconds
    before it forwards anything: a peer that is reachable but slow to answer, so the
    restored node stays in safe restore long enough to be asked for writes."""

    def __init__(self, upstream: tuple[str, int], delay: float) -> None:
        self.upstream = upstream
        self.delay = delay
        self.server = ProxyServer(("127.0.0.1", 0), self._handler())
        self.address = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, name=f"{TEST_THREAD_PREFIX}route", daemon=True).start()

    def _handler(self) -> type[socketserver.BaseRequestHandler]:
        route = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                time.sleep(route.delay)
                with socket.create_connection(route.upstream) as up:
                    back = threading.Thread(target=pipe, args=(up, self.request), name=f"{TEST_THREAD_PREFIX}pipe",
                                            daemon=True)
                    back.start()
                    pipe(self.request, up)
                    back.join(timeout=5)

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def test_a_safe_restore_catches_up_before_it_signs(tally: TallyRunner, tmp_path: Path, start: Starter) -> None:
    a, ledger, copy, (b,) = history(tally, tmp_path, start, "b")
    restore(copy, a.home)
    host, port = b.address.removeprefix("http://").rsplit(":", 1)
    route = SlowRoute((host, int(port)), delay=3.0)
    try:
        restored = start("a-restored", a.home, "--peer", route.address)  # no --offline: safe restore
        nodes = [restored, b]
        # b has not answered yet: writes are held, through the API and through `tally append`
        status, data = restored.call("POST", f"/ledgers/{ledger}/entries", {"kind": "note.text", "body": {}})
        assert (status, data["error"]["code"]) == (409, "catching_up"), data
        refused = 0
        deadline = time.monotonic() + DEADLINE_S
        while True:
            r = tally("append", "--ledger", ledger, "--kind", "note.text", "--body", '{"i": 11}', home_dir=a.home)
            if r.returncode == 0:
                break
            assert r.returncode == 1 and r.stderr.startswith("error: catching_up: "), r.stderr
            refused += 1
            assert time.monotonic() < deadline, f"still catching up after {DEADLINE_S} s"
            time.sleep(0.2)
        print(f"safe restore: `tally append` answered catching_up {refused} time(s), then appended")
        assert refused >= 1
        rows = log_rows(tally, a.home, ledger)
        assert [x["seq"] for x in rows] == list(range(1, 12))  # it learned 6..10 back first: no second seq 6
        assert rows[-1]["id"] == last_line(r.stdout)
        until(lambda: b.entries(ledger) == 11, "b has seq 11", poll=POLL_S, logs=nodes)
        assert log_rows(tally, b.home, ledger) == rows
        assert restored.forks() == [] and b.forks() == []
        assert forks_of(tally, a.home) == [] and forks_of(tally, b.home) == []
        for node in nodes:
            node.stop()
    finally:
        route.close()


# --- issue 13's push stall --------------------------------------------------------------------------------------------

STALL_ENTRIES = 3000  # three full windows of wants
STALL_PUSHES = 200


async def fill_home(home: Path, entries: int) -> str:
    """A public ledger of `entries` entries in the store of `home` (no node running), as bench_sync builds it."""
    h = Home(home)
    async with await Store.open(h.store_path, key=h.load_key()) as store:
        genesis = await store.append(AppendRequest(None, GENESIS_KIND, genesis_body("Stall", "public"), 1))
        await store.append_batch([AppendRequest(genesis.id, "note.text", {"i": i}, 2) for i in range(entries - 1)])
    return str(genesis.id)


async def sync_once_then_pushes(a: Node, ledger: str, path: Path) -> list[str]:
    """This process's own node (a real store and Replicator) syncs once with `a` while its peer link to `a` comes
    up (the two links overlap), and `a` appends STALL_PUSHES entries through its API one after
    another; the ones that did not reach this node within DEADLINE_S each."""
    key = SigningKey(bytes([77]) * 32)
    async with await Store.open(path, key=key) as store:
        await store.follow(CID.parse(ledger))
        arrived: set[str] = set()
        store.on_new_entries(lambda batch: arrived.update(str(e.id) for e in batch))
        rep = Replicator(store, key, offline=True)
        await rep.start()
        missed: list[str] = []
        try:
            rep.add_peer(a.address, "flag")  # its link comes up while the one-shot sync fetches
            await rep.sync_once(a.address)
            assert await store.count() == STALL_ENTRIES
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {a.token}"}) as session:
                for i in range(STALL_PUSHES):
                    async with session.post(f"{a.address}/api/v1/ledgers/{ledger}/entries",
                                            json={"kind": "note.text", "body": {"push": i}}) as resp:
                        assert resp.status == 201, await resp.text()
                        entry = (await resp.json())["id"]
                    deadline = time.monotonic() + DEADLINE_S
                    while entry not in arrived and time.monotonic() < deadline:
                        await asyncio.sleep(0.005)
                    if entry not in arrived:
                        missed.append(entry)
                        break  # one stalled push is the failure; the rest would wait as long each
        finally:
            await rep.stop()
    return missed


def test_every_push_arrives_after_a_one_shot_sync_and_a_peer_link_to_a_running_node(
    tally: TallyRunner, tmp_path: Path, start: Starter
) -> None:
    """Issue 13's stall as scripts/bench_sync.py met it, between two processes: `tally run` serving a ledger, and a
    node that fetches it with a one-shot sync and then links to it as a peer. It got the entries over the one-shot
    link and so asked nothing on the peer link, which kept it "still fetching" there: every later push was held
    back (SPEC §13.5 step 7: `level` says the peer holds what was advertised, and no missed push is final)."""
    home = tmp_path / "a"
    init(tally, home)
    ledger = asyncio.run(fill_home(home, STALL_ENTRIES))
    a = start("a", home, "--offline")
    missed = asyncio.run(sync_once_then_pushes(a, ledger, tmp_path / "b.sqlite3"))
    assert missed == [], f"push {missed} never arrived; log of a:\n{a.log()[-3000:]}"
    assert a.entries(ledger) == STALL_ENTRIES + STALL_PUSHES
    a.stop()
    assert "Traceback" not in a.log()
