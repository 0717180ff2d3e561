"""`<home>/tally.toml`: parsing, refusals naming the key, flags over the file, and config peers in a
running node (how they were found, safe restore, reconnecting with backoff)."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TallyRunner, last_line, tally_executable
from running_nodes import until

from node.config import CONFIG_FILE, Config, Limits, load, parse
from protocol import LocalError

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
START_TIMEOUT_S = 90.0


# ---- the file ------------------------------------------------------------------


def test_no_file_means_defaults(tmp_path: Path) -> None:
    assert load(tmp_path) == Config() == Config(("0.0.0.0", 7410), (), True, Limits(32, 30.0))


def test_every_key(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text(
        'listen = "10.1.2.3:7500"\n'
        'peers = ["https://coop-b.example:7410", "http://192.168.1.20:7410", "https://coop-b.example:7410"]\n'
        "mdns = false\n"
        'trusted_proxies = ["127.0.0.1", "::1", "0:0:0:0:0:0:0:1"]\n'
        "[limits]\nmax_mdns_peers = 5\nshutdown_timeout_s = 2.5\nheal_retry_s = 0.5\n"
    )
    assert load(tmp_path) == Config(
        ("10.1.2.3", 7500), ("https://coop-b.example:7410", "http://192.168.1.20:7410"), False,
        Limits(5, 2.5, heal_retry_s=0.5), ("127.0.0.1", "::1"),
    )


def test_the_readme_example_is_valid_and_documents_every_key() -> None:
    section = README[README.index("### The config file: `tally.toml`"):]
    example = re.search(r"```toml\n(.*?)```", section, flags=re.S)
    assert example, "README.md's tally.toml section has a ```toml example"
    import tomllib

    config = parse(tomllib.loads(example.group(1)))
    assert config.peers and config.limits == Limits(32, 30.0)
    assert config.trusted_proxies == ("127.0.0.1",)
    for key in ("listen", "peers", "mdns", "[limits]", "max_mdns_peers", "shutdown_timeout_s", "heal_retry_s",
                "trusted_proxies"):
        assert f"`{key}`" in README, key


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('peer = ["http://a:1"]\n', "unknown key 'peer'"),
        ("[limits]\nmax_peers = 3\n", "unknown key 'limits.max_peers'"),
        ("[mdns]\nenabled = true\n", "mdns must be a boolean"),
        ('mdns = "no"\n', "mdns must be a boolean"),
        ('peers = "http://a:1"\n', "peers must be an array"),
        ("peers = [1]\n", r"peers\[0\] must be a string"),
        ('peers = ["ftp://a"]\n', r"peers\[0\]: 'ftp://a' is not an http"),
        ('peers = ["http://"]\n', r"peers\[0\]"),
        ('peers = ["http://a:99999"]\n', r"peers\[0\]"),
        ("listen = 7410\n", "listen must be a string"),
        ('listen = "7410"\n', "listen: expected HOST:PORT"),
        ("limits = 3\n", "limits must be a table"),
        ("[limits]\nmax_mdns_peers = -1\n", "limits.max_mdns_peers must be"),
        ("[limits]\nmax_mdns_peers = 1.5\n", "limits.max_mdns_peers must be an integer"),
        ("[limits]\nshutdown_timeout_s = 0\n", "limits.shutdown_timeout_s must be"),
        ('[limits]\nshutdown_timeout_s = "30"\n', "limits.shutdown_timeout_s must be a number"),
        ("[limits]\nheal_retry_s = 0.01\n", r"limits.heal_retry_s must be in \[0.1, 3600\]"),
        ("[limits]\nheal_retry_s = inf\n", "limits.heal_retry_s must be"),
        ("[limits]\nheal_retry_s = true\n", "limits.heal_retry_s must be a number"),
        ("listen = \n", "not valid TOML"),
        ('trusted_proxies = "127.0.0.1"\n', "trusted_proxies must be an array"),
        ('trusted_proxies = ["proxy.example"]\n', r"trusted_proxies\[0\] must be an IP address"),
        ("trusted_proxies = [1]\n", r"trusted_proxies\[0\] must be an IP address"),
    ],
)
def test_refused_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / CONFIG_FILE).write_text(text)
    with pytest.raises(LocalError) as caught:
        load(tmp_path)
    assert caught.value.code == "bad_config"
    assert re.search(message, caught.value.message), caught.value.message
    assert str(tmp_path / CONFIG_FILE) in caught.value.message


def test_tally_run_refuses_a_bad_config(tally: TallyRunner, tally_process: TallyRunner, home: Path) -> None:
    assert tally("init").returncode == 0
    (home / CONFIG_FILE).write_text('listen = "127.0.0.1:0"\nmdns = false\npeerz = []\n')
    r = tally_process("run")
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: bad_config: ") and "'peerz'" in r.stderr, r.stderr
    assert not (home / "node.json").exists()
    r = tally_process("run", "--peer", "not a url", "--no-mdns")
    assert r.returncode == 2 and "usage" in r.stderr


# ---- config peers in a running node ----------------------------------------------------


class FakePeer:
    """A TCP listener on loopback that notes when each connection comes, then closes it at once
    (a peer that is down) or holds it without a word (a peer that never answers)."""

    def __init__(self, *, hold: bool) -> None:
        self.hold = hold
        self.times: list[float] = []
        self._held: list[socket.socket] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.times.append(time.monotonic())
            if self.hold:
                self._held.append(conn)
            else:
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._held:
            conn.close()
        self._sock.close()


@pytest.fixture
def down_peer() -> Iterator[FakePeer]:
    peer = FakePeer(hold=False)
    yield peer
    peer.close()


@pytest.fixture
def silent_peer() -> Iterator[FakePeer]:
    peer = FakePeer(hold=True)
    yield peer
    peer.close()


class Node:
    def __init__(self, home: Path, *extra: str) -> None:
        self.home = home
        self.log_path = home.parent / f"node-{time.monotonic_ns()}.log"
        env = {k: v for k, v in os.environ.items() if k != "TALLY_HOME"}
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen([tally_executable(), "--home", str(home), "run", *extra],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env)
        self.started = time.monotonic()
        deadline = self.started + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the node exited with {self.proc.returncode}: {self.log()}"
            try:
                info = json.loads((home / "node.json").read_text())
            except (OSError, ValueError):
                info = None
            if info and info["pid"] == self.proc.pid:
                self.address = str(info["address"])
                return
            time.sleep(0.05)
        raise AssertionError(f"no node.json within {START_TIMEOUT_S} s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def dial_times(peer: FakePeer) -> list[float]:
    """When each dial came; aiohttp may retry a connection the server closed at once: connections within
    0.3 s are one dial."""
    came = list(peer.times)
    return [t for i, t in enumerate(came) if i == 0 or t - came[i - 1] > 0.3]


def peers_json(tally: TallyRunner) -> list[dict[str, object]]:
    r = tally("peers", "--json")
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_config_peers_are_dialed_with_backoff_and_listed_as_config(
    tally: TallyRunner, home: Path, down_peer: FakePeer, silent_peer: FakePeer
) -> None:
    assert tally("init").returncode == 0
    (home / CONFIG_FILE).write_text(
        f'listen = "127.0.0.1:0"\npeers = ["{down_peer.url}"]\nmdns = true\n[limits]\nshutdown_timeout_s = 5\n'
    )
    # listen from the file; --no-mdns over `mdns = true`; a --peer flag adds to the file's peers
    node = Node(home, "--no-mdns", "--offline", "--peer", silent_peer.url)
    try:
        assert node.address.startswith("http://127.0.0.1:") and not node.address.endswith(":7410")
        assert " peers=2 " in node.log() and " mdns=false" in node.log()
        assert "mdns started" not in node.log()
        # the down peer is dialed at about 0, 1, 3 and 7 s: wait for the fourth dial
        until(lambda: len(dial_times(down_peer)) >= 4, "four dials of the down peer")
        rows = {row["address"]: row for row in peers_json(tally)}
        assert rows[down_peer.url]["found"] == "config" and rows[silent_peer.url]["found"] == "flag"
        assert rows[down_peer.url]["connected"] is False and rows[down_peer.url]["errors"]
        r = tally("peers")
        assert r.returncode == 0, r.stderr
        human = {line.split("\t")[1]: line.split("\t") for line in r.stdout.splitlines()}
        assert human[down_peer.url][2] == "config" and human[silent_peer.url][2] == "flag"
        assert human[down_peer.url][3] == "disconnected"
    finally:
        assert node.stop() == 0
    # Exponential backoff with jitter (1 s, 2 s, 4 s … each ×0.8–1.2): a peer that is down is not hammered.
    times = dial_times(down_peer)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert 3 <= len(times) <= 5, times
    assert 0.7 <= gaps[0] <= 1.6, gaps
    for shorter, longer in itertools.pairwise(gaps):
        assert 1.25 <= longer / shorter <= 3.2, gaps


def test_config_peers_count_for_safe_restore(tally: TallyRunner, home: Path, silent_peer: FakePeer) -> None:
    assert tally("init").returncode == 0
    (home / CONFIG_FILE).write_text(f'listen = "127.0.0.1:0"\nmdns = false\npeers = ["{silent_peer.url}"]\n')
    node = Node(home)  # not --offline: it waits to catch up from its configured peer
    try:
        r = tally("ledger", "create", "Coop")
        assert r.returncode == 1 and r.stderr.startswith("error: catching_up: "), r.stderr
    finally:
        assert node.stop() == 0
    node = Node(home, "--offline")  # the flag lets a node start without waiting
    try:
        r = tally("ledger", "create", "Coop")
        assert r.returncode == 0 and last_line(r.stdout).startswith("bafy"), r.stderr
    finally:
        assert node.stop() == 0
