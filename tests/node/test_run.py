"""`tally run` as a real process on a loopback port, and the CLI beside it."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import TallyRunner, last_line
from running_nodes import http, spawn, token

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 90.0

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@dataclass
class Node:
    proc: subprocess.Popen[bytes]
    home: Path
    log_path: Path
    address: str

    def log(self) -> str:
        return self.log_path.read_text()

    def get(self, path: str, token: str | None = None) -> tuple[int, Any]:
        return http(self.address + path, token=token)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the node did not stop on {sig.name}; log:\n{self.log()}") from None


def start(home: Path, *extra: str) -> Node:
    log_path = home.parent / f"node-{time.monotonic_ns()}.log"
    proc, address = spawn(home, ["--offline", "--no-mdns", *extra], log_path, who="the node",
                          timeout=START_TIMEOUT_S)
    return Node(proc, home, log_path, address)


@pytest.fixture
def did(tally: TallyRunner) -> str:
    r = tally("init")
    assert r.returncode == 0, r.stderr
    return last_line(r.stdout)


@pytest.fixture
def node(home: Path, did: str) -> Iterator[Node]:
    n = start(home)
    try:
        yield n
    finally:
        if n.proc.poll() is None:
            n.proc.kill()
            n.proc.wait()


def requests_in_log(node: Node, method: str, path: str) -> int:
    return sum(1 for line in node.log().splitlines()
               if " request " in line and f"method={method} " in line and f"path={path} " in line
               and " status=2" in line)


def test_run_serves_and_the_cli_writes_through_it(tally: TallyRunner, home: Path, did: str, node: Node) -> None:
    # node.json: private from creation, names this process and the port it really got
    mode = stat.S_IMODE((home / "node.json").stat().st_mode)
    assert mode == 0o600, oct(mode)
    info = json.loads((home / "node.json").read_text())
    assert set(info) == {"address", "pid", "started", "socket"} and isinstance(info["started"], int)
    port = int(info["address"].rsplit(":", 1)[1])
    assert port != 0 and info["address"] == f"http://127.0.0.1:{port}"
    assert f"address=http://127.0.0.1:{port} " in node.log() and f" port={port} " in node.log()
    status, ident = node.get("/api/v1/identity")
    assert status == 200 and ident["id"] == did and ident["protocol"] == 1 and ident["version"]

    # writes while the node runs go through its API (the node logs each request)
    r = tally("ledger", "create", "Bike coop")
    assert r.returncode == 0, r.stderr
    ledger = last_line(r.stdout)
    assert requests_in_log(node, "POST", "/api/v1/ledgers") == 1
    ids = []
    for i in range(3):
        r = tally("append", "--ledger", ledger, "--kind", "note.text", "--body", json.dumps({"i": i}))
        assert r.returncode == 0, r.stderr
        ids.append(last_line(r.stdout))
    assert requests_in_log(node, "POST", f"/api/v1/ledgers/{ledger}/entries") == 3
    r = tally("append", "--ledger", ledger, "--kind", "note.text", "--body", '{"q": 1.5}')
    assert r.returncode == 1 and r.stderr.startswith("error: bad_body: ")
    r = tally("follow", ledger)
    assert r.returncode == 0 and last_line(r.stdout) == ledger, r.stderr
    assert requests_in_log(node, "POST", "/api/v1/follow") == 1

    # reads go straight to SQLite, and see the node's writes
    r = tally("log", "--ledger", ledger, "--json")
    assert r.returncode == 0, r.stderr
    assert [json.loads(line)["id"] for line in r.stdout.splitlines()][1:] == ids
    r = tally("ledger", "list", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["entries"] == 4
    r = tally("peers", "--json")
    assert r.returncode == 0 and r.stdout == "", r.stderr
    r = tally("forks", "--json")
    assert r.returncode == 0 and r.stdout == ""
    assert node.get(f"/api/v1/ledgers/{ledger}")[0] == 404  # members-only: hidden from a neighbour
    status, row = node.get(f"/api/v1/ledgers/{ledger}", token=token(home))
    assert status == 200 and row["entries"] == 4

    assert node.stop(signal.SIGTERM) == 0
    assert not (home / "node.json").exists()
    log = node.log()
    assert "signal=SIGTERM" in log and " stopped" in log
    assert token(home) not in log and (home / "identity.key").read_text().strip() not in log
    r = tally("verify")
    assert r.returncode == 0 and "4 entries verified" in r.stdout, r.stdout + r.stderr
    # with the node gone, writes go straight to the store again
    r = tally("append", "--ledger", ledger, "--kind", "note.text", "--body", "{}")
    assert r.returncode == 0, r.stderr
    r = tally("peers")
    assert r.returncode == 1 and r.stderr.startswith("error: not_running: ")


def test_sigint_stops_cleanly(tally: TallyRunner, home: Path, node: Node) -> None:
    r = tally("ledger", "create", "Coop", "--public")
    assert r.returncode == 0, r.stderr
    status, data = node.get("/api/v1/ledgers")
    assert status == 200 and [row["id"] for row in data["ledgers"]] == [last_line(r.stdout)]
    assert node.stop(signal.SIGINT) == 0
    assert not (home / "node.json").exists()
    assert "signal=SIGINT" in node.log()
    assert tally("verify").returncode == 0


def test_writes_in_flight_at_sigterm_are_kept(tally: TallyRunner, home: Path, node: Node) -> None:
    ledger = last_line(tally("ledger", "create", "Coop").stdout)
    url = f"{node.address}/api/v1/ledgers/{ledger}/entries"

    def post(i: int) -> str | None:
        try:
            status, data = http(url, method="POST", body={"kind": "note.text", "body": {"i": i}}, token=token(home))
        except OSError:
            return None  # refused or cut off at shutdown: not acknowledged, so nothing is promised
        return str(data["id"]) if status == 201 else None

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(post, i) for i in range(200)]
        futures[5].result(timeout=120)
        node.proc.send_signal(signal.SIGTERM)
        acknowledged = {f.result(timeout=120) for f in futures} - {None}
    assert node.proc.wait(timeout=STOP_TIMEOUT_S) == 0
    r = tally("log", "--ledger", ledger, "--json")
    stored = {json.loads(line)["id"] for line in r.stdout.splitlines()}
    assert acknowledged and acknowledged <= stored
    assert tally("verify").returncode == 0


def test_a_stale_node_file_is_ignored(tally: TallyRunner, home: Path, did: str) -> None:
    ledger = last_line(tally("ledger", "create", "Coop").stdout)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for pid in (dead.pid, os.getpid()):  # a dead pid; a live pid that is no node
        (home / "node.json").write_text(json.dumps(
            {"address": f"http://127.0.0.1:{closed_port}", "pid": pid, "started": 0}))
        started = time.monotonic()
        r = tally("append", "--ledger", ledger, "--kind", "note.text", "--body", "{}")
        assert r.returncode == 0, r.stderr
        r = tally("peers")
        assert r.returncode == 1 and r.stderr.startswith("error: not_running: "), r.stderr
        assert time.monotonic() - started < 60
    # a node starts over a stale node.json
    n = start(home)
    try:
        assert n.get("/api/v1/identity")[1]["id"] == did
        assert json.loads((home / "node.json").read_text())["pid"] == n.proc.pid
    finally:
        assert n.stop() == 0
    assert not (home / "node.json").exists()


def test_one_node_per_home(tally_process: TallyRunner, home: Path, node: Node) -> None:
    r = tally_process("run", "--listen", "127.0.0.1:0", "--offline")
    assert r.returncode == 1 and r.stderr.startswith("error: already_running: "), r.stderr
    assert json.loads((home / "node.json").read_text())["pid"] == node.proc.pid
    assert node.get("/api/v1/identity")[0] == 200


def test_listen_errors(tally_process: TallyRunner, home: Path, did: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = tally_process("run", "--listen", f"127.0.0.1:{port}", "--offline")
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith("error: listen_failed: "), r.stderr
    assert not (home / "node.json").exists()
    for bad in ("7410", "host:", ":7410", "127.0.0.1:70000", "127.0.0.1:x"):
        r = tally_process("run", "--listen", bad)
        assert r.returncode == 2 and "usage" in r.stderr, (bad, r.stderr)
