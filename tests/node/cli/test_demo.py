"""`tally demo` as a newcomer runs it: a real `python -m node.cli.main demo` process that starts three real
`tally run` children, seeds a demo coop through their APIs and prints each node's login link.

The test reads the links from its stdout, checks the coop on all three nodes through their APIs (with the
tokens of the homes): the ledger with three members, contributions (some final), the passed amendment, a
recorded distribution and one state digest everywhere; follows a login link; then stops the demo with
SIGINT and checks it exits 0 and its three nodes are gone. Two shorter runs: SIGTERM while it is still
seeding removes its temporary folder; a node that cannot start (its port is taken) fails the demo with
exit 1, naming the node and its log.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from running_nodes import until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

READY_TIMEOUT_S = 180.0  # the machine may be slow and busy; here the demo is ready in a few seconds
STOP_TIMEOUT_S = 90.0
NAMES = ("alice", "bob", "carol")
READY = "Ctrl-C stops the three nodes."


class Lines:
    """The lines a pipe gives, read on a thread, so the test can wait for one with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def until(self, wanted: Callable[[str], bool], timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {what} within {timeout} s; so far:\n" + "\n".join(self.seen)) from None
            if line is None:
                raise AssertionError(f"the output ended before {what}:\n" + "\n".join(self.seen))
            self.seen.append(line)
            if wanted(line):
                return line


def start_demo(*args: str, env_extra: dict[str, str] | None = None, stderr: Any = subprocess.PIPE
               ) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "TALLY_HOME"}
    env.update(env_extra or {})
    return subprocess.Popen([sys.executable, "-m", "node.cli.main", "demo", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)


def stop(proc: subprocess.Popen[str], sig: signal.Signals) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"the demo did not stop within {STOP_TIMEOUT_S} s of {sig.name}") from None


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def reap(proc: subprocess.Popen[str], pids: list[int]) -> None:
    """After a failed test: stop the demo and whatever nodes it left."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for pid in pids:
        if not gone(pid):
            os.kill(pid, signal.SIGKILL)


@dataclass
class Shown:
    name: str
    did: str
    dashboard: str
    login: str | None
    home: Path

    @property
    def token(self) -> str:
        return (self.home / "api.token").read_text().strip()

    def api(self, path: str) -> tuple[int, Any]:
        request = urllib.request.Request(f"{self.dashboard.rstrip('/')}/api/v1{path}",
                                         headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=60) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def ok(self, path: str) -> Any:
        status, data = self.api(path)
        assert status == 200, (self.name, path, status, data)
        return data


def parse(lines: list[str], root: Path) -> tuple[str, dict[str, Shown]]:
    ledger = next(m.group(1) for line in lines if (m := re.fullmatch(r'Ledger "Demo Coop": (\S+)', line)))
    shown: dict[str, Shown] = {}
    current: Shown | None = None
    for line in lines:
        if m := re.fullmatch(r"(alice|bob|carol)\s+(did:key:\S+)", line):
            current = shown[m.group(1)] = Shown(m.group(1), m.group(2), "", None, root / m.group(1))
        elif current is not None and (m := re.fullmatch(r"\s+dashboard\s+(\S+)", line)):
            current.dashboard = m.group(1)
        elif current is not None and (m := re.fullmatch(r"\s+login\s+(http://\S+).*", line)):
            current.login = m.group(1)
    assert sorted(shown) == sorted(NAMES), lines
    return ledger, shown


def test_the_demo_seeds_three_nodes_prints_login_links_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    demo_dir = tmp_path / "demo"
    err_path = tmp_path / "demo.err"
    with err_path.open("w") as err:
        proc = start_demo("--dir", str(demo_dir), stderr=err)
    assert proc.stdout is not None
    out = Lines(proc.stdout)
    pids: list[int] = []
    try:
        started = time.monotonic()
        try:
            out.until(lambda line: line == READY, READY_TIMEOUT_S, "login links")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nstderr:\n{err_path.read_text()}") from None
        ready_s = time.monotonic() - started
        assert proc.poll() is None
        ledger, shown = parse(out.seen, demo_dir)
        pids = [json.loads((demo_dir / name / "node.json").read_text())["pid"] for name in NAMES]
        dids = {s.did for s in shown.values()}
        assert len(dids) == 3

        for s in shown.values():
            assert s.dashboard.startswith("http://127.0.0.1:") and s.dashboard.endswith("/")
            assert s.ok("/identity")["id"] == s.did  # the printed did is the node's
            assert s.ok(f"/ledgers/{ledger}")["name"] == "Demo Coop"
            state = s.ok(f"/ledgers/{ledger}/state")
            assert set(state["members"]) == dids, s.name
            assert state["rules"]["visibility"] == "members"
            assert state["invalid"] == [], state["invalid"]
            # The motion passed and its amendment is in effect; later work counts at the new rate.
            [motion] = state["motions"]
            assert motion["closed"] and motion["winner"] == "yes" and motion["amended"] is True
            assert motion["voters"] == 3 and len({json.dumps(b["scores"]) for b in motion["ballots"]}) == 3
            assert state["rules"]["rates"]["work"]["hour"] == "25"
            history = s.ok(f"/ledgers/{ledger}/history")["contributions"]
            assert len(history) >= 10 and {c["provider"] for c in history} == dids
            statuses = [c["status"] for c in history]
            assert statuses.count("final") >= 8 and "pending" in statuses
            assert {c["action"] for c in history} >= {"work", "transfer", "use"}
            days = sorted(c["at"] for c in history)
            assert days[0] < days[-1] and all(d is not None for d in days)  # spread over past weeks
            claims = {(c["quantity"], c["note"]): c["claim"] for c in history}
            assert claims[("6", "Set up the workshop: benches, stands and tools")] == "120"  # before: 20 an hour
            assert claims[("4", "Spring tune-ups for the school")] == "100"  # after the vote: 25 an hour
            entries = s.ok(f"/ledgers/{ledger}/entries")["entries"]
            assert [e["author"] for e in entries if e["kind"] == "ledger.distribution"] == [shown["alice"].did]

        def digests() -> set[str] | None:
            found = {s.ok(f"/ledgers/{ledger}/state")["digest"] for s in shown.values()}
            return found if len(found) == 1 else None

        until(digests, "the same state digest on the three nodes")

        for s in shown.values():  # each login link opens a dashboard session
            assert s.login is not None, f"{s.name}: no login link (POST /api/v1/login-links)"
            url = urllib.parse.urlsplit(s.login)
            assert f"{url.scheme}://{url.netloc}/" == s.dashboard and url.path == "/login"
            conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=60)
            try:
                conn.request("GET", f"{url.path}?{url.query}")
                resp = conn.getresponse()
                resp.read()
                assert resp.status == 303, (s.name, resp.status)
                assert resp.getheader("Set-Cookie"), s.name
            finally:
                conn.close()
        text = "\n".join(out.seen)
        assert f"--home {demo_dir / 'alice'} open" in text and f"history {ledger}" in text

        assert stop(proc, signal.SIGINT) == 0, err_path.read_text()
        assert all(gone(pid) for pid in pids)
        for name in NAMES:  # stopped cleanly (node.json removed), and a --dir is kept
            assert not (demo_dir / name / "node.json").exists()
            assert (demo_dir / name / "identity.key").exists() and (demo_dir / name / "node.log").exists()
        print(f"the demo was ready in {ready_s:.1f} s")
    finally:
        reap(proc, pids)


def _pids(lines: list[str]) -> list[int]:
    return [int(m.group(1)) for line in lines if (m := re.search(r"starting a node on \S+ \(pid (\d+),", line))]


def test_sigterm_while_seeding_stops_the_nodes_and_removes_the_temporary_folder(tmp_path: Path) -> None:
    tmp, run = tmp_path / "tmp", tmp_path / "run"
    tmp.mkdir()
    run.mkdir(mode=0o700)
    # The nodes' local channels live in the user's runtime folder (node/nodefile.py), not the demo's temp folder.
    proc = start_demo(env_extra={"TMPDIR": str(tmp), "XDG_RUNTIME_DIR": str(run)})
    assert proc.stderr is not None
    err = Lines(proc.stderr)
    pids: list[int] = []
    try:
        err.until(lambda line: "alice: founded" in line, READY_TIMEOUT_S, "the ledger founded")
        pids = _pids(err.seen)
        assert len(pids) == 3 and len(list(tmp.iterdir())) == 1
        assert stop(proc, signal.SIGTERM) == 0, "\n".join(err.seen)
        assert all(gone(pid) for pid in pids)
        assert list(tmp.iterdir()) == []
    finally:
        reap(proc, pids)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_the_nodes_stop_when_the_demo_is_killed(tmp_path: Path) -> None:
    proc = start_demo("--dir", str(tmp_path / "demo"))
    assert proc.stderr is not None
    err = Lines(proc.stderr)
    pids: list[int] = []
    try:
        err.until(lambda line: "alice: founded" in line, READY_TIMEOUT_S, "the ledger founded")
        pids = _pids(err.seen)
        assert len(pids) == 3 and not any(gone(pid) for pid in pids)
        proc.kill()  # SIGKILL: the demo gets no chance to stop them itself
        proc.wait()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while not all(gone(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(gone(pid) for pid in pids), "a node outlived the demo"
    finally:
        reap(proc, pids)


def test_a_node_that_cannot_start_fails_the_demo(tmp_path: Path) -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = start_demo("--dir", str(tmp_path / "demo"), "--base-port", str(port))
        try:
            _, stderr = proc.communicate(timeout=READY_TIMEOUT_S)
        finally:
            reap(proc, [])
    finally:
        taken.close()
    assert proc.returncode == 1, stderr
    log = tmp_path / "demo" / "alice" / "node.log"
    assert f"error: not_running: alice's node stopped on its own (exit status 1); its log: {log}" in stderr
    assert "listen_failed" in log.read_text()
    pids = _pids(stderr.splitlines())
    assert len(pids) == 3 and all(gone(pid) for pid in pids)


def test_the_demo_survives_a_node_and_says_how_to_start_it_again(tmp_path: Path) -> None:
    """Once ready, a node that stops leaves the other two running (they show it offline); the demo prints the
    command that starts it again, and that command brings it back."""
    demo_dir = tmp_path / "demo"
    err_path = tmp_path / "demo.err"
    with err_path.open("w") as err:
        proc = start_demo("--dir", str(demo_dir), stderr=err)
    assert proc.stdout is not None
    out = Lines(proc.stdout)
    pids: list[int] = []
    restarted: int | None = None
    try:
        out.until(lambda line: line == READY, READY_TIMEOUT_S, "login links")
        _, shown = parse(out.seen, demo_dir)
        pids = [json.loads((demo_dir / name / "node.json").read_text())["pid"] for name in NAMES]
        os.kill(pids[1], signal.SIGTERM)  # bob's node, stopped cleanly
        said = out.until(lambda line: line.startswith("bob's node stopped"), STOP_TIMEOUT_S, "the demo's report")
        assert "alice and carol keep running and show it offline" in said
        command = out.until(lambda line: line.startswith("  "), STOP_TIMEOUT_S, "the command").strip()
        assert proc.poll() is None and gone(pids[1])
        assert shown["alice"].ok("/identity")["id"] == shown["alice"].did  # the others keep running

        def bob_offline_at(name: str) -> bool:
            peers = shown[name].ok("/peers")["peers"]
            return any(p["id"] == shown["bob"].did and not p["connected"] for p in peers)

        until(lambda: bob_offline_at("alice") and bob_offline_at("carol"), "bob offline at alice's and carol's")
        subprocess.run(["bash", "-c", command], check=True, timeout=60, stdin=subprocess.DEVNULL)
        until(lambda: (demo_dir / "bob" / "node.json").exists() and shown["bob"].api("/identity")[0] == 200,
              "bob's node started again by the printed command", timeout=READY_TIMEOUT_S)
        restarted = json.loads((demo_dir / "bob" / "node.json").read_text())["pid"]
        until(lambda: not bob_offline_at("alice"), "bob back at alice's")
        assert stop(proc, signal.SIGINT) == 0, err_path.read_text()
    finally:
        reap(proc, pids + ([restarted] if restarted is not None else []))
        if restarted is not None and not gone(restarted):
            os.kill(restarted, signal.SIGTERM)
