"""A real `tally run`, stopped with SIGTERM and started again: the ledger's state and its fold are saved as it
stops and read back as it starts, and the writes after the restart are folded into the fold read back (the
node never folds the ledger from scratch again)."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TallyRunner, last_line
from running_nodes import http, spawn, token

from node.home import Home
from node.store.store import Store
from protocol import CID
from protocol.writes import AppendRequest

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 90.0
LOG_TIMEOUT_S = 120.0

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


class Node:
    def __init__(self, home: Path) -> None:
        self.log_path = home.parent / f"node-{time.monotonic_ns()}.log"
        self.proc, self.address = spawn(home, ["--offline", "--no-mdns"], self.log_path, who="the node",
                                        timeout=START_TIMEOUT_S)
        self.token = token(home)

    def log(self) -> str:
        return self.log_path.read_text()

    def said(self, message: str) -> int:
        """How many log lines carry `message` (the log's `msg` field)."""
        return sum(1 for line in self.log().splitlines() if f" {message} " in f"{line} ")

    def wait_for(self, message: str) -> None:
        deadline = time.monotonic() + LOG_TIMEOUT_S
        while not self.said(message):
            assert time.monotonic() < deadline, f"the node never logged {message!r}:\n{self.log()}"
            time.sleep(0.1)

    def post(self, path: str, body: object) -> tuple[int, object]:
        return http(self.address + path, method="POST", body=body, token=self.token)

    def state(self, ledger: str) -> dict[str, object]:
        status, state = http(f"{self.address}/api/v1/ledgers/{ledger}/state", token=self.token)
        assert status == 200, state
        assert isinstance(state, dict)
        return state

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            assert self.proc.wait(timeout=STOP_TIMEOUT_S) == 0
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the node did not stop on SIGTERM; log:\n{self.log()}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_writes_after_a_restart_go_into_the_fold_read_back(tally: TallyRunner, home: Path) -> None:
    r = tally("init")
    assert r.returncode == 0, r.stderr
    node = Node(home)
    try:
        r = tally("ledger", "create", "Bike coop")
        assert r.returncode == 0, r.stderr
        ledger = last_line(r.stdout)
        for i in range(5):
            assert node.post(f"/api/v1/ledgers/{ledger}/about", {"name": f"Ana {i}"})[0] == 201
        before = node.state(ledger)
        node.stop()
    finally:
        node.kill()
    assert node.said("ledger folded") == 1 and node.said("ledger snapshot saved")
    with sqlite3.connect(home / "tally.sqlite3") as db:
        fold, parts, entries = db.execute("SELECT fold, fold_parts, entries FROM snapshots").fetchone()
    assert fold.startswith("pickle-5/") and parts >= 1 and entries == 6

    node = Node(home)
    try:
        # The first write reads the state back; the next ones fold into the fold read back meanwhile.
        assert node.post(f"/api/v1/ledgers/{ledger}/about", {"name": "Ana after"})[0] == 201
        assert node.post(f"/api/v1/ledgers/{ledger}/about", {"name": "Ana again"})[0] == 201
        after = node.state(ledger)
        assert after["names"] != before["names"] and "Ana again" in str(after["names"])
        node.wait_for("ledger fold read back")
        node.stop()
    finally:
        node.kill()
    assert node.said("ledger snapshot restored") == 1
    assert node.said("ledger folded") == 0, node.log()  # never from scratch
    with sqlite3.connect(home / "tally.sqlite3") as db:
        assert db.execute("SELECT entries FROM snapshots").fetchone()[0] == 8  # saved again as it stopped
    r = tally("state", ledger, "--json")
    assert r.returncode == 0 and "Ana again" in r.stdout, r.stdout + r.stderr


async def notes(home: Path, ledger: str, count: int) -> None:
    """`count` notes appended to the ledger on the home's own store (no node runs on it)."""
    async with await Store.open(Home(home).store_path, key=Home(home).load_key()) as store:
        for start in range(0, count, 5_000):
            await store.append_batch([AppendRequest(CID.parse(ledger), "note.text", {"text": "fixed a bike", "n": n},
                                                    1_700_000_000_000 + n) for n in range(start, start + 5_000)])


def test_a_sigterm_while_a_snapshot_is_saved_stops_the_node_and_keeps_the_state(tally: TallyRunner,
                                                                                 home: Path) -> None:
    """SIGTERM as soon as a ledger of 20,000 entries is folded, while its snapshot is being saved (the state and
    its fold pickled in threads): the node exits (within a generous deadline; a save holds the interpreter lock
    for one bucket's sort at a time, never for a whole pickling), and the state after a restart is the one
    before, whether that save was finished or given up."""
    assert tally("init").returncode == 0
    r = tally("ledger", "create", "Bike coop")
    assert r.returncode == 0, r.stderr
    ledger = last_line(r.stdout)
    asyncio.run(notes(home, ledger, 20_000))
    node = Node(home)
    try:
        before = node.state(ledger)  # folded now: its first snapshot is saved from now on
        node.stop()  # asserts the exit (0) within STOP_TIMEOUT_S
    finally:
        node.kill()
    assert node.said("ledger folded") == 1
    node = Node(home)
    try:
        assert node.state(ledger) == before
        node.stop()
    finally:
        node.kill()


def test_writes_after_an_upgrade_do_not_wait_for_the_ledger_folded_again(tally: TallyRunner, home: Path) -> None:
    """A real `tally run` whose kept fold another version of protocol's code saved (the upgrade case): it is stale,
    so the ledger is folded again, in the background; the write after the first is built against the state read
    back meanwhile (the node says so), a refused one gets the code it always gets, and every write counts once the
    ledger is folded again."""
    assert tally("init").returncode == 0
    r = tally("ledger", "create", "Bike coop")
    assert r.returncode == 0, r.stderr
    ledger = last_line(r.stdout)
    node = Node(home)
    try:
        assert node.post(f"/api/v1/ledgers/{ledger}/about", {"name": "Ana"})[0] == 201
        node.state(ledger)
        node.stop()
    finally:
        node.kill()
    with sqlite3.connect(home / "tally.sqlite3") as db:
        assert db.execute("SELECT fold_parts FROM snapshots").fetchone()[0] >= 1
        db.execute("UPDATE snapshots SET fold = fold || ' before-the-upgrade'")

    node = Node(home)
    try:
        assert node.post(f"/api/v1/ledgers/{ledger}/about", {"name": "Ana after"})[0] == 201  # the state read back
        status, made = node.post(f"/api/v1/ledgers/{ledger}/contributions",
                                 {"action": "work", "quantity": "2", "unit": "hour"})
        assert status == 201, made
        assert node.post(f"/api/v1/ledgers/{ledger}/about", {"name": "Ana again"})[0] == 201
        assert isinstance(made, dict)
        status, answer = node.post(f"/api/v1/entries/{made['id']}/endorsements", {"verdict": "accept"})
        assert status == 403 and isinstance(answer, dict) and answer["error"]["code"] == "self_endorsement", answer
        state = node.state(ledger)
        assert "Ana again" in str(state["names"]) and made["id"] in str(state), state
        node.stop()
    finally:
        node.kill()
    # (the stale fold is found so once or twice: the catch-up after the first write may look at the snapshot again)
    assert node.said("ledger fold not read back") >= 1 and node.said("ledger folded") == 1, node.log()
    # The contribution is (the ledger is folded again from then on); the next write too, if that is not done.
    log = node.log()
    assert 0 <= log.find("a write built against the ledger's last state") < log.find("ledger folded"), log
