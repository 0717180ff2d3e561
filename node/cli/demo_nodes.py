"""The three nodes of `tally demo` (node/cli/demo.py): each one's home, port, `tally run` process and API client,
and the helpers around their processes and the welcome text (a login link, the command to paste, a log's tail)."""

from __future__ import annotations

import secrets
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from node.cli.context import init_home
from node.cli.demo_coop import progress
from node.home import Home
from node.http.client import NodeClient
from protocol import SigningKey, TallyError

HOST: Final = "127.0.0.1"
LOG_FILE: Final = "node.log"
START_TIMEOUT_S: Final = 90.0  # a node answers /identity within this (a busy machine is slow to start Python)
STOP_TIMEOUT_S: Final = 40.0  # a node gets this long to stop on SIGTERM (it lets requests in flight finish)


@dataclass
class DemoNode:
    name: str
    home: Home
    port: int
    did: str = ""
    proc: subprocess.Popen[bytes] | None = None
    client: NodeClient | None = None
    command: tuple[str, ...] = ()  # how the demo started its `tally run`, to start it again

    @property
    def address(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.home.path / LOG_FILE

    def api(self) -> NodeClient:
        if self.client is None:
            raise RuntimeError("the node's client is not open")
        return self.client

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports on HOST: all bound at once, so they differ; the nodes bind them again a moment
    later."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def stop_with_parent() -> Callable[[], None] | None:
    """Linux: each node gets SIGTERM when the demo dies, even by `kill -9` (prctl PR_SET_PDEATHSIG), so no
    node outlives it. Elsewhere None: Ctrl-C and SIGTERM still stop them."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child only calls it
    pr_set_pdeathsig = 1

    def set_death_signal() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return set_death_signal


async def init_demo_home(home: Home) -> str:
    """What `tally init` does: a new key and API token, and an empty store. Returns the did:key."""
    key = SigningKey(secrets.token_bytes(32))
    await init_home(home, key)
    return str(key.did)


async def login_link(node: DemoNode) -> str | None:
    """A one-time dashboard login URL from the node (POST /api/v1/login-links), or None if it has none."""
    try:
        answer = await node.api().call("POST", "/login-links", {})
    except TallyError as exc:
        if exc.code in ("not_found", "method_not_allowed"):
            return None
        raise
    expires = datetime.fromtimestamp(int(answer["expires"]) / 1000).astimezone()
    return f"{node.address}{answer['path']}   (works once, until {expires:%H:%M:%S})"


def tally_command() -> str:
    """How the newcomer ran tally (e.g. `.venv/bin/tally`), to print commands they can paste."""
    given = sys.argv[0] if sys.argv else ""
    return shlex.quote(given) if Path(given).name == "tally" else "tally"


def show_log_tail(node: DemoNode, lines: int = 15) -> None:
    try:
        tail = node.log_path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return
    for line in tail:
        progress(f"{node.name} log: {line}")
