"""Real `tally run` processes for tests: each on its own home, on loopback, linked with --peer, driven
through the real CLI (which writes through the running node) and the real HTTP API."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import last_line, tally_executable

START_TIMEOUT_S = 60.0
DEADLINE_S = 60.0  # generous: convergence usually takes well under a second
POLL_S = 0.2


def run(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TALLY_HOME"}
    return subprocess.run([tally_executable(), "--home", str(home), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def ok(home: Path, *args: str) -> str:
    """Run a command that must succeed; its last line of stdout."""
    r = run(home, *args)
    assert r.returncode == 0, (args, r.stderr)
    return last_line(r.stdout)


def until(check: Callable[[], Any], what: str, timeout: float = DEADLINE_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(POLL_S)


@dataclass
class Node:
    name: str
    home: Path
    did: str
    proc: subprocess.Popen[bytes]
    address: str

    @property
    def token(self) -> str:
        return (self.home / "api.token").read_text().strip()

    def api(self, method: str, path: str, body: dict[str, Any] | None = None, *, owner: bool = True
            ) -> tuple[int, Any]:
        """An API call (with the owner's token unless `owner=False`): (status, JSON answer)."""
        headers = {"Authorization": f"Bearer {self.token}"} if owner else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(f"{self.address}/api/v1{path}", data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=60) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def state(self, ledger: str) -> dict[str, Any] | None:
        status, data = self.api("GET", f"/ledgers/{ledger}/state")
        return data if status == 200 else None


def start(name: str, home: Path, did: str, *peers: str, extra: Iterable[str] = ()) -> Node:
    """Start `tally run` on `home` (initialized) on a free loopback port; returns once node.json is written."""
    log_path = home.parent / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if k != "TALLY_HOME"}
    args = [tally_executable(), "--home", str(home), "run", "--listen", "127.0.0.1:0", "--offline", "--no-mdns",
            *extra]
    for peer in peers:
        args += ["--peer", peer]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{name}'s node exited with {proc.returncode}: {log_path.read_text()}")
        try:
            info = json.loads((home / "node.json").read_text())
        except (OSError, ValueError):
            info = None
        if info and info["pid"] == proc.pid:
            return Node(name, home, did, proc, info["address"])
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise AssertionError(f"{name}'s node wrote no node.json within {START_TIMEOUT_S} s")


def start_all(root: Path, names: Iterable[str]) -> dict[str, Node]:
    """Initialize and start one node per name under `root`, each peering the ones before it."""
    started: dict[str, Node] = {}
    try:
        for name in names:
            home = root / name
            did = ok(home, "init")
            started[name] = start(name, home, did, *(n.address for n in started.values()))
    except BaseException:
        stop_all(started.values())
        raise
    return started


def stop_all(nodes: Iterable[Node]) -> None:
    nodes = list(nodes)
    for node in nodes:
        if node.proc.poll() is None:
            node.proc.terminate()
    for node in nodes:
        try:
            node.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait()


def coop(nodes: dict[str, Node], founder: str, name: str, *, public: bool = False) -> str:
    """A ledger `founder` founds and admits the others to; they follow it. Returns its id once every node
    sees every member."""
    lead = nodes[founder]
    ledger = ok(lead.home, "ledger", "create", name, *(["--public"] if public else []))
    for node in nodes.values():
        if node.name != founder:
            ok(lead.home, "member", "admit", ledger, node.did)
            ok(node.home, "follow", ledger)
    everyone = sorted(n.did for n in nodes.values())
    for node in nodes.values():
        until(lambda node=node: (s := node.state(ledger)) is not None and sorted(s["members"]) == everyone,
              f"{name}'s members at {node.name}")
    return ledger
