"""Real `tally run` processes for tests: each on its own home, on loopback, linked with --peer, driven
through the real CLI (in this process; it writes through the running node) and the real HTTP API. Also the CLI on
homes with no node running, and `exchange`, which passes entries between such homes as sync would."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from conftest import last_line, tally_executable
from inprocess_cli import run_cli

from node.home import Home
from node.store.store import Store
from protocol import Entry

START_TIMEOUT_S = 60.0
DEADLINE_S = 60.0  # generous: convergence usually takes well under a second
POLL_S = 0.2
HTTP_TIMEOUT_S = 60.0


def run(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`tally --home HOME ARGS…` in this process (tests/inprocess_cli.py); never raises on its exit code."""
    return run_cli(home, *args, timeout=timeout)


def run_process(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`tally --home HOME ARGS…` as a process (without TALLY_HOME from the environment), for `tally run`'s
    refusals; never raises on its exit code."""
    env = {k: v for k, v in os.environ.items() if k != "TALLY_HOME"}
    return subprocess.run([tally_executable(), "--home", str(home), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def output(home: Path, *args: str) -> str:
    """Run a command that must succeed; its whole stdout."""
    r = run(home, *args)
    assert r.returncode == 0, (args, r.stderr)
    return r.stdout


def ok(home: Path, *args: str) -> str:
    """Run a command that must succeed; its last line of stdout."""
    return last_line(output(home, *args))


def refused(home: Path, code: str, *args: str) -> None:
    """Run a command that must fail with exit 1 and the error `code`."""
    r = run(home, *args)
    assert r.returncode == 1 and r.stderr.startswith(f"error: {code}: "), (args, r.stdout, r.stderr)


class Logged(Protocol):
    """A running node whose log a failed wait shows."""

    name: str

    def log(self) -> str: ...


def until(check: Callable[[], Any], what: str, timeout: float = DEADLINE_S, *, poll: float = POLL_S,
          logs: Iterable[Logged] = ()) -> Any:
    """Poll `check` every `poll` s until it answers something true, and return that; on timeout, fail
    with the tail of each of the `logs` nodes' logs."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            tails = "".join(f"\n--- {n.name}:\n{n.log()[-4000:]}" for n in logs)
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{tails}")
        time.sleep(poll)


def http(url: str, *, method: str = "GET", body: Any = None, token: str | None = None,
         timeout: float = HTTP_TIMEOUT_S) -> tuple[int, Any]:
    """One HTTP request with a JSON body (if any) and a bearer token (if any): (status, JSON answer)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def token(home: Path) -> str:
    """The owner's API token of `home`."""
    return (home / "api.token").read_text().strip()


def spawn(home: Path, run_args: Iterable[str], log_path: Path, *, who: str, timeout: float = START_TIMEOUT_S
          ) -> tuple[subprocess.Popen[bytes], str]:
    """`tally --home HOME run --listen 127.0.0.1:0 RUN_ARGS…` with its stderr in `log_path`, once it has written
    a node.json naming it: (the process, its address). `who` names it in failures; the caller stops it."""
    env = {k: v for k, v in os.environ.items() if k != "TALLY_HOME"}
    args = [tally_executable(), "--home", str(home), "run", "--listen", "127.0.0.1:0", *run_args]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{who} exited with {proc.returncode}: {log_path.read_text()}")
        try:
            info = json.loads((home / "node.json").read_text())
        except (OSError, ValueError):
            info = None
        if info and info["pid"] == proc.pid:
            return proc, str(info["address"])
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise AssertionError(f"{who} wrote no node.json within {timeout} s: {log_path.read_text()}")


@dataclass
class Node:
    name: str
    home: Path
    did: str
    proc: subprocess.Popen[bytes]
    address: str
    log_path: Path

    @property
    def token(self) -> str:
        return token(self.home)

    def log(self) -> str:
        return self.log_path.read_text()

    def api(self, method: str, path: str, body: dict[str, Any] | None = None, *, owner: bool = True,
            timeout: float = HTTP_TIMEOUT_S) -> tuple[int, Any]:
        """An API call (with the owner's token unless `owner=False`): (status, JSON answer)."""
        return http(f"{self.address}/api/v1{path}", method=method, body=body,
                    token=self.token if owner else None, timeout=timeout)

    def state(self, ledger: str) -> dict[str, Any] | None:
        """The ledger's state through the API, or None while this node does not answer it."""
        status, data = self.api("GET", f"/ledgers/{ledger}/state")
        return data if status == 200 else None

    def cli_state(self, ledger: str, *, strict: bool = False) -> dict[str, Any] | None:
        """`tally state --json` on this home, or None when it fails; `strict`: None only while the home
        does not hold the ledger, any other failure fails the test."""
        r = run(self.home, "state", ledger, "--json")
        if strict:
            if r.returncode == 1 and r.stderr.startswith("error: unknown_ledger: "):
                return None
            assert r.returncode == 0, r.stderr
        elif r.returncode != 0:
            return None
        data: dict[str, Any] = json.loads(r.stdout)
        return data

    def motion(self, motion: str) -> dict[str, Any] | None:
        """`tally motion show --json` on this home, or None when it fails."""
        r = run(self.home, "motion", "show", motion, "--json")
        if r.returncode != 0:
            return None
        data: dict[str, Any] = json.loads(r.stdout)
        return data

    def pledges(self, ledger: str, as_of: str) -> list[dict[str, Any]]:
        """`tally pledges --as-of --json` on this home, or [] when it fails."""
        r = run(self.home, "pledges", ledger, "--as-of", as_of, "--json")
        return [json.loads(line) for line in r.stdout.splitlines()] if r.returncode == 0 else []


def start(name: str, home: Path, did: str, *peers: str, extra: Iterable[str] = (),
          timeout: float = START_TIMEOUT_S) -> Node:
    """Start `tally run --offline --no-mdns` on `home` (initialized) on a free loopback port, its log beside
    the home as NAME.log; returns once node.json is written."""
    log_path = home.parent / f"{name}.log"
    args = ["--offline", "--no-mdns", *extra]
    for peer in peers:
        args += ["--peer", peer]
    proc, address = spawn(home, args, log_path, who=f"{name}'s node", timeout=timeout)
    return Node(name, home, did, proc, address, log_path)


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


@contextlib.contextmanager
def running(root: Path, names: Iterable[str]) -> Iterator[dict[str, Node]]:
    """`start_all`, and `stop_all` on the way out."""
    started = start_all(root, names)
    try:
        yield started
    finally:
        stop_all(started.values())


def stop_all(nodes: Iterable[Node]) -> None:
    """SIGTERM every node, then wait for each (30 s, then SIGKILL)."""
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


def exchange(*homes: Path) -> None:
    """Give every home (no node running) every entry the others hold (what peer sync does)."""

    async def run() -> None:
        stores = [await Store.open(Home(h).store_path) for h in homes]
        try:
            entries: dict[bytes, Entry] = {}
            for store in stores:
                for info in await store.ledgers():
                    async for entry in store.log(info.id):
                        entries[entry.id.raw] = entry
            ordered = sorted(entries.values(), key=lambda e: (e.ledger_id.raw, e.header.author, e.seq))
            for store in stores:
                await store.ingest(ordered)
        finally:
            for store in stores:
                await store.close()

    asyncio.run(run())
