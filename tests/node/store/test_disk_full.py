"""A full disk through the API (SPEC.md §9, §10): a running node whose store cannot grow answers writes with 507
`disk_full`, acknowledges nothing it did not store, keeps every entry it acknowledged, and writes again once
there is room. Two real limits, each on a real `tally run` and its real SQLite file:

- `tmpfs`: the home is a 2 MiB tmpfs mount, filled up by another file (needs the right to mount: root);
- `ulimit`: the node's file size limit (RLIMIT_FSIZE, `ulimit -f`) set just above its store's size, with
  prlimit(2) on the running process, and lifted again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from running_nodes import Node, ok, start, stop_all

NOTE = "n" * 2000  # the longest note (MAX_NOTE_CHARS): each write adds ~2 KiB
MAX_WRITES = 3000  # far more than 2 MiB holds


@contextlib.contextmanager
def small_disk(mount: Path) -> Iterator[None]:
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tally-test", str(mount)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); the ulimit case covers a full disk")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(path: Path) -> None:
    """Take up every free block of `path`'s filesystem with one file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        size = 65536
        while size:
            try:
                os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                size //= 2
    finally:
        os.close(fd)


def write(node: Node, ledger: str, i: int) -> tuple[int, Any]:
    return node.api("POST", f"/ledgers/{ledger}/contributions",
                    {"action": "work", "quantity": str(i + 1), "unit": "hour", "note": NOTE})


def store_size(home: Path) -> int:
    return max((home / f"tally.sqlite3{suffix}").stat().st_size if (home / f"tally.sqlite3{suffix}").exists()
               else 0 for suffix in ("", "-wal", "-shm"))


@pytest.mark.parametrize("limit", ["tmpfs", "ulimit"])
def test_a_full_disk_is_507_disk_full_and_keeps_what_was_acknowledged(tmp_path: Path, limit: str) -> None:
    home = tmp_path / "ana"
    with contextlib.ExitStack() as stack:
        if limit == "tmpfs":
            stack.enter_context(small_disk(home))
        did = ok(home, "init")
        ledger = ok(home, "ledger", "create", "Bike coop")
        node = start("ana", home, did)
        stack.callback(stop_all, [node])
        acknowledged: list[str] = []
        for i in range(5):  # written while there is room
            status, data = write(node, ledger, i)
            assert status == 201, data
            acknowledged.append(str(data["id"]))
        room: Callable[[], None]
        if limit == "tmpfs":
            filler = home / "filler"
            fill(filler)
            room = filler.unlink
        else:
            soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.prlimit(node.proc.pid, resource.RLIMIT_FSIZE, (store_size(home) + 256 * 1024, hard))
            def room() -> None:
                resource.prlimit(node.proc.pid, resource.RLIMIT_FSIZE, (soft, hard))

        for i in range(5, MAX_WRITES):
            status, data = write(node, ledger, i)
            if status != 201:
                break
            acknowledged.append(str(data["id"]))
        assert (status, data["error"]["code"]) == (507, "disk_full"), (status, data)
        assert "Nothing was written" in str(data["error"]["message"])
        # the node still answers, reads included, and a write fails again the same way while the disk is full
        assert node.api("GET", "/identity")[0] == 200
        assert node.api("GET", f"/ledgers/{ledger}/state")[0] == 200
        assert write(node, ledger, 0)[0] == 507
        room()
        status, data = write(node, ledger, len(acknowledged))
        assert status == 201, data
        acknowledged.append(str(data["id"]))
        for entry in acknowledged:  # every acknowledged write is there, nothing else from the failed ones
            assert node.api("GET", f"/entries/{entry}")[0] == 200, entry
        status, history = node.api("GET", f"/ledgers/{ledger}/history")
        assert sorted(c["id"] for c in history["contributions"]) == sorted(acknowledged)
        assert node.proc.poll() is None
        stop_all([node])
        assert "Traceback" not in node.log(), node.log()[-3000:]
        assert ok(home, "verify").startswith("ok\t")
        print(f"\n{limit}: {len(acknowledged) - 6} writes acknowledged after the limit was set, before it was hit")
