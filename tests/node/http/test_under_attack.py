"""A real `tally run` under a slowloris attack (SPEC.md §12 "Slow and many clients"): 1,100 half-open HTTP
connections, more than its 1,024 open files, while a real client and the owner are still served."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from running_nodes import Node, http, ok, start, stop_all, until

HALF_OPEN = 1100
PARTIAL = b"GET /api/v1/identity HTTP/1.1\r\nHost: tally\r\nX-Slow: "  # never finished


@contextlib.contextmanager
def open_files_limit(soft: int) -> Iterator[None]:
    """Processes started inside get `soft` open files at most (as a default Linux or a Pi gives them)."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, old[1]), old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


def half_open(address: str, n: int) -> list[socket.socket]:
    """`n` connections that each send the start of a request and nothing more."""
    parts = urlsplit(address)
    socks = []
    for _ in range(n):
        s = socket.create_connection((parts.hostname, parts.port), timeout=30)
        s.sendall(PARTIAL)
        s.setblocking(False)
        socks.append(s)
    return socks


def closed_by_peer(s: socket.socket) -> bool:
    try:
        return s.recv(1024) == b""
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    home = tmp_path / "ana"
    did = ok(home, "init")
    (home / "tally.toml").write_text("[limits]\nheader_timeout_s = 20\n")
    with open_files_limit(1024):
        started = start("ana", home, did)
    try:
        yield started
    finally:
        stop_all([started])


def test_1100_half_open_connections_leave_identity_and_owner_writes_answering(node: Node) -> None:
    socks = half_open(node.address, HALF_OPEN)
    try:
        t0 = time.monotonic()
        status, ident = node.api("GET", "/identity", owner=False, timeout=30)
        identity_s = time.monotonic() - t0
        assert status == 200 and ident["id"] == node.did
        t0 = time.monotonic()
        status, created = node.api("POST", "/ledgers", {"name": "Under attack"}, timeout=30)
        write_s = time.monotonic() - t0
        assert status == 201, created
        print(f"\nwith {HALF_OPEN} half-open connections: identity {identity_s * 1000:.0f} ms, "
              f"owner write {write_s * 1000:.0f} ms, node open files {open_files(node.proc.pid)}")
        # The node kept within its cap (512 connections) and its 1,024 files, closing the oldest half-open ones.
        assert open_files(node.proc.pid) < 1024 - 64
        assert sum(closed_by_peer(s) for s in socks) >= HALF_OPEN - 512
        assert node.proc.poll() is None
        # the owner's CLI writes through the node too
        ledger = ok(node.home, "ledger", "create", "Still here")
        assert node.api("GET", f"/ledgers/{ledger}/state")[0] == 200
    finally:
        for s in socks:
            s.close()
    assert "Traceback" not in node.log()


def test_a_half_open_connection_is_closed_after_the_header_timeout(tmp_path: Path) -> None:
    home = tmp_path / "ben"
    did = ok(home, "init")
    (home / "tally.toml").write_text("[limits]\nheader_timeout_s = 1\n")
    ben = start("ben", home, did)
    try:
        [slow] = half_open(ben.address, 1)
        t0 = time.monotonic()
        until(lambda: closed_by_peer(slow), "the node to close a connection whose headers never came", timeout=30,
              poll=0.1, logs=[ben])
        print(f"\nhalf-open connection closed after {time.monotonic() - t0:.1f} s (header_timeout_s = 1)")
        slow.close()
        # a connection that finishes its request in time is answered, and kept alive while idle
        status, _ = http(f"{ben.address}/api/v1/identity", timeout=30)
        assert status == 200
    finally:
        stop_all([ben])
