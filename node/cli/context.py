"""What the `tally` commands share: their store, the running node and a client to it, the local write path
and how rows print. What the parser needs (the home, the usage error) is in node/cli/parsing.py, which loads
none of this."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

from node.home import Home
from node.http.client import NodeClient
from node.nodefile import LIVENESS_TIMEOUT_S, NodeFile, home_is_held, read_node_file, running_node
from node.store.grants import attach_grants
from node.store.store import Store, wall_clock_ms
from node.store.writes import FoldedStates, LocalWrites
from protocol import LocalError, SigningKey

T = TypeVar("T")


async def open_store(home: Home, key: SigningKey | None = None) -> Store:
    if not home.has_identity():
        raise LocalError("no_identity", f"no identity in {home.path} (run `tally init`)")
    store = await Store.open(home.store_path, key=key)
    if key is not None:
        attach_grants(store, home.identity(), key.did)
    return store


def iso_time(ms: int) -> str:
    """A time in ms since the epoch as the CLI shows it: ISO 8601, UTC, to the second."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def print_rows(rows: Iterable[dict[str, Any]], as_json: bool, line: Callable[[dict[str, Any]], str]) -> None:
    """Each row as JSON Lines (`--json`), else as `line` makes it."""
    for row in rows:
        print(json.dumps(row) if as_json else line(row), flush=True)


def print_id(value: object) -> None:
    print(str(value), flush=True)


async def serving_node(home: Home, key: SigningKey) -> NodeFile | None:
    """The node serving this home, if one answers; writes then go through its API. None only when no node
    runs: a node that holds the home but does not answer is `node_unresponsive`, never bypassed (a write to
    the store behind its back would skip its checks and its safe restore)."""
    node = await running_node(home.path, home.identity())  # the API answers with the identity (§19)
    if node is None and home_is_held(home.path):
        info = read_node_file(home.path)
        pid = f" (pid {info.pid})" if info is not None else ""
        raise LocalError("node_unresponsive", f"the node{pid} running on {home.path} does not answer within "
                         f"{LIVENESS_TIMEOUT_S:g} s; nothing was written. Retry, or stop that node and retry")
    return node


async def required_node(home: Home) -> NodeFile:
    """The node serving this home, for commands that only a running node can answer."""
    node = await serving_node(home, home.load_key())
    if node is None:
        raise LocalError("not_running", f"no node is running on {home.path} (start one with `tally run`)")
    return node


async def write_here(home: Home, key: SigningKey, build: Callable[[LocalWrites], Awaitable[T]]) -> T:
    """Write on this home's own store (no node serves it) through the one local write path."""
    store = await open_store(home, key)
    try:
        return await build(LocalWrites(store, FoldedStates(store), home.identity(), wall_clock_ms))
    finally:
        await store.close()


def node_client(home: Home, node: NodeFile) -> NodeClient:
    return NodeClient(node.address, home.load_token(), socket=node.socket)


async def init_home(home: Home, key: SigningKey) -> None:
    """A new home: the identity (and its API token), and an empty store."""
    try:
        home.create_identity(key)
    except FileExistsError:
        raise LocalError("identity_exists", f"{home.key_path} exists; it is never overwritten") from None
    store = await Store.open(home.store_path)
    await store.close()
