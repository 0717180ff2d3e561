"""`<home>/node.json`: where a running node listens, so the CLI can find it.

The node writes it (mode 0600 from creation, replaced atomically) once it
listens and removes it on a clean shutdown. A node killed with -9 leaves it
behind, so readers never trust it alone: a node counts as running only if its
pid is alive and it answers `GET /api/v1/identity` with this home's did.

A running node also holds an exclusive lock on `<home>/node.lock` for its whole
life (the system drops it when the process dies, even by kill -9), so the CLI can
tell "no node runs" (it may write to the store itself) from "a node runs but does
not answer" (`node_unresponsive`: it must not write behind the node's back). And
it serves its API on a Unix socket (mode 0600, in this user's private runtime
folder, named in node.json): the owner's local channel, which clients on the
network cannot fill.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from node.http.client import answers_as
from protocol import LocalError

NODE_FILE: Final = "node.json"
LOCK_FILE: Final = "node.lock"
MAX_SOCKET_PATH: Final = 100  # AF_UNIX paths are at most 107 bytes on Linux (103 on macOS)
FILE_MODE: Final = 0o600
LIVENESS_TIMEOUT_S: Final = 2.0


@dataclass(frozen=True, slots=True)
class NodeFile:
    address: str  # base URL the CLI uses, e.g. "http://127.0.0.1:7410"
    pid: int
    started: int  # ms since the epoch, wall clock
    socket: str | None = None  # the local channel's path, when the home's path is short enough for one

    def __post_init__(self) -> None:
        if not self.address.startswith(("http://", "https://")):
            raise ValueError(f"node address must be an http(s) URL, not {self.address!r}")
        if type(self.pid) is not int or self.pid <= 0:
            raise ValueError(f"bad pid {self.pid!r}")
        if type(self.started) is not int or self.started < 0:
            raise ValueError(f"bad start time {self.started!r}")

    def as_json(self) -> dict[str, Any]:
        return {"address": self.address, "pid": self.pid, "started": self.started, "socket": self.socket}


def node_file_path(home: Path) -> Path:
    return home / NODE_FILE


def write_node_file(home: Path, info: NodeFile) -> None:
    """Write node.json atomically: a fresh 0600 file, fsync'ed, renamed over any old one."""
    path = node_file_path(home)
    tmp = path.with_name(f".{NODE_FILE}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        os.write(fd, (json.dumps(info.as_json()) + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_node_file(home: Path) -> NodeFile | None:
    """node.json as written, or None if absent or unreadable (a half-written or foreign file)."""
    try:
        data = json.loads(node_file_path(home).read_text())
        socket = data.get("socket")
        return NodeFile(address=data["address"], pid=data["pid"], started=data["started"],
                        socket=socket if isinstance(socket, str) else None)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_node_file(home: Path, pid: int) -> None:
    """Remove node.json if it is still the one process `pid` wrote."""
    info = read_node_file(home)
    if info is not None and info.pid == pid:
        with contextlib.suppress(FileNotFoundError):
            node_file_path(home).unlink()


def pid_alive(pid: int) -> bool:
    if sys.platform == "win32":  # os.kill(pid, 0) would terminate the process there
        return True  # the HTTP check decides
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's
    return True


async def running_node(home: Path, did: str, timeout_s: float = LIVENESS_TIMEOUT_S) -> NodeFile | None:
    """The node serving this home, or None: a missing or stale node.json means no node runs. Asked on its
    local channel when it has one (network clients cannot starve that), else on its address."""
    info = read_node_file(home)
    if info is None or not pid_alive(info.pid):
        return None
    return info if await answers_as(info.address, did, timeout_s, socket=info.socket) else None


def socket_path(home: Path) -> Path | None:
    """Where the node of `home` serves its local channel: a socket in this user's private runtime folder (mode
    0700; `$XDG_RUNTIME_DIR`, else the temp folder), named by the home's path. Not in the home itself, which
    people copy whole (a socket cannot be copied). None when no such folder can be had."""
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / f"tally-{os.getuid()}"
    try:
        base.mkdir(mode=0o700, exist_ok=True)
        info = base.stat()
    except OSError:
        return None
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        return None  # someone else's folder, or one others may enter
    name = hashlib.sha256(os.fsencode(home.absolute())).hexdigest()[:24] + ".sock"
    path = base / name
    return path if len(os.fsencode(path)) <= MAX_SOCKET_PATH else None


def hold_home(home: Path) -> int:
    """Take `<home>/node.lock` for this process's life (its fd, to keep open); `already_running` if another holds
    it."""
    fd = os.open(home / LOCK_FILE, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        info = read_node_file(home)
        pid = f" (pid {info.pid})" if info is not None else ""
        raise LocalError("already_running", f"a node{pid} already holds {home}") from None
    return fd


def home_is_held(home: Path) -> bool:
    """True while a node process holds this home (whether or not it answers)."""
    try:
        fd = os.open(home / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock taken here
    return False
