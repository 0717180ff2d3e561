"""Real hosts for tests: Linux network namespaces on one switch, made by `scripts/lab.sh`.

Host i is namespace `<prefix>h<i>` at 10.77.0.<i>; the prefix is per test process (TALLY_LAB_PREFIX, else
from this process's pid; under pytest-xdist the worker's name is added to a given prefix) so two runs on one
machine, or two workers of one run, do not take each other's hosts. Every host sees the
same filesystem, so homes live in a temp dir and reads run from here, in this process (tests/inprocess_cli.py:
`tally init`, `tally log` from the store, `tally peers` over the node's local channel, a Unix socket, which the
polling loops ask many times, and a `tally` process costs ~0.6 s of CPU to start), while commands that write
through a node run inside its host.
`lab()` skips (with the reason) where the machine cannot make a lab: not root, no `ip netns`. It always
takes the lab down again, and first prunes labs whose test run has ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from inprocess_cli import run_cli

REPO = Path(__file__).resolve().parents[2]
LAB_SH = REPO / "scripts" / "lab.sh"


def lab_prefix() -> str:
    """lab.sh's namespace prefix for this process: a given one (plus the xdist worker's name, e.g. `gw1-`, as each
    worker makes labs of its own), else `t<pid>-`, which is a worker's own already."""
    given, worker = os.environ.get("TALLY_LAB_PREFIX"), os.environ.get("PYTEST_XDIST_WORKER")
    if not given:
        return f"t{os.getpid()}-"
    return f"{given}{worker}-" if worker else given


#: lab.sh's namespace prefix and the process the lab belongs to (`lab.sh prune` removes labs of ended runs)
LAB_ENV = {"TALLY_LAB_PREFIX": lab_prefix(), "TALLY_LAB_OWNER": str(os.getpid())}
PORT = 7410
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


def tally_executable() -> str:
    """The installed console script next to this interpreter, by absolute path (hosts keep the cwd, not PATH)."""
    candidate = Path(sys.executable).with_name("tally")
    found = str(candidate) if candidate.exists() else shutil.which("tally")
    if not found:
        raise RuntimeError("the `tally` console script is not installed (pip install -e '.[test]')")
    return os.path.abspath(found)


def unavailable() -> str | None:
    """Why no lab can be made here, or None."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "the lab needs root (it creates network namespaces)"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        return f"`ip netns` is unavailable: {r.stderr.strip()}"
    return None


def ip(i: int) -> str:
    return f"10.77.0.{i}"


def url(i: int) -> str:
    return f"http://{ip(i)}:{PORT}"


@dataclass
class LabNode:
    host: int
    home: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    started: float

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"h{self.host}'s node did not stop on {sig.name}; log:\n{self.log()}") from None


@dataclass
class Lab:
    hosts: int
    tmp: Path
    tally: str = field(default_factory=tally_executable)
    nodes: list[LabNode] = field(default_factory=list)
    helpers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def sh(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(LAB_SH), *args], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, env=_env(None))

    def cut(self, i: int) -> None:
        self._check(self.sh("cut", str(i)))

    def heal(self, i: int) -> None:
        self._check(self.sh("heal", str(i)))

    def isolate(self, i: int) -> None:
        self._check(self.sh("isolate", str(i)))

    def _check(self, r: subprocess.CompletedProcess[str]) -> None:
        assert r.returncode == 0, f"lab.sh failed: {r.stdout}{r.stderr}"

    def exec(self, i: int, *cmd: str, timeout: float = 60,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(LAB_SH), "exec", str(i), *cmd], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, env=_env(env))

    def spawn(self, i: int, *cmd: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """A long-running helper process inside host i, ended when the lab goes down."""
        with log.open("wb") as out:
            proc = subprocess.Popen(["bash", str(LAB_SH), "exec", str(i), *cmd], stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT, env=_env(env))
        self.helpers.append(proc)
        return proc

    def home(self, name: str) -> Path:
        return self.tmp / name

    def init(self, home: Path) -> str:
        r = run_cli(home, "init", timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip().splitlines()[-1]

    def tally_in(self, i: int, home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`tally --home HOME ARGS…` run inside host i (so it reaches the node running there)."""
        return self.exec(i, self.tally, "--home", str(home), *args, timeout=timeout)

    def ok(self, i: int, home: Path, *args: str) -> str:
        """Run a writing command on host i, retrying while the node is catching up; its last line."""
        deadline = time.monotonic() + 60
        while True:
            r = self.tally_in(i, home, *args)
            if r.returncode == 0:
                return r.stdout.strip().splitlines()[-1]
            if "catching_up" not in r.stderr or time.monotonic() > deadline:
                raise AssertionError(f"h{i}: tally {' '.join(args)}: {r.stderr}")
            time.sleep(0.3)

    def start(self, i: int, home: Path, *extra: str, listen: bool = True, wait: bool = True) -> LabNode:
        log_path = self.tmp / f"h{i}-{time.monotonic_ns()}.log"
        args = ["run", *(["--listen", f"{ip(i)}:{PORT}"] if listen else []), *extra]
        with log_path.open("wb") as out:
            # lab.sh and `ip netns exec` exec the command: the process is the node itself
            proc = subprocess.Popen(["bash", str(LAB_SH), "exec", str(i), self.tally, "--home", str(home), *args],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=out, env=_env(None))
        node = LabNode(i, home, proc, log_path, time.monotonic())
        self.nodes.append(node)
        if wait:
            self.wait_started(node)
        return node

    def wait_started(self, node: LabNode) -> None:
        deadline = node.started + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert node.alive(), f"h{node.host}'s node exited with {node.proc.returncode}: {node.log()}"
            with contextlib.suppress(OSError, ValueError):
                if json.loads((node.home / "node.json").read_text())["pid"] == node.proc.pid:
                    return
            time.sleep(0.05)
        raise AssertionError(f"h{node.host}'s node wrote no node.json within {START_TIMEOUT_S} s: {node.log()}")

    def peers(self, node: LabNode) -> list[dict[str, Any]]:
        """The node's peers as `tally peers --json` lists them, asked over its local channel."""
        r = run_cli(node.home, "peers", "--json", timeout=60)
        assert r.returncode == 0, r.stderr
        return [json.loads(line) for line in r.stdout.splitlines()]

    def entries(self, home: Path, ledger: str) -> list[str]:
        """The ids of a ledger's entries in a home's store (read directly, from any host)."""
        r = run_cli(home, "log", "--ledger", ledger, "--json", timeout=60)
        if r.returncode != 0:
            return []  # e.g. unknown_ledger: nothing synced yet
        return [json.loads(line)["id"] for line in r.stdout.splitlines()]


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TALLY_HOME"}
    env.update(LAB_ENV)
    env.update(extra or {})
    return env


def wait_for(what: str, check: Callable[[], object], timeout: float, every: float = 0.25) -> float:
    """Poll `check` until it is truthy; the seconds it took. Fails naming `what`."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(every)


@contextlib.contextmanager
def lab(hosts: int, tmp: Path) -> Iterator[Lab]:
    """A lab of `hosts` hosts for the duration of the block; skips where none can be made."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    the_lab = Lab(hosts, tmp)
    the_lab.sh("prune")  # leftovers of interrupted runs; labs of runs still going are left alone
    the_lab.sh("down")  # this run's own, should an earlier lab of it have outlived its block
    r = the_lab.sh("up", str(hosts))
    try:
        if r.returncode != 0:
            pytest.skip(f"lab.sh up failed here: {r.stderr.strip() or r.stdout.strip()}")
        yield the_lab
    finally:
        for node in the_lab.nodes:
            if node.alive():
                node.proc.send_signal(signal.SIGTERM)
        for node in the_lab.nodes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(timeout=STOP_TIMEOUT_S)
        the_lab.sh("down", timeout=120)  # ends whatever still runs inside the lab
        for proc in [*(n.proc for n in the_lab.nodes), *the_lab.helpers]:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
