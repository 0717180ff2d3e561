"""`tally run`: the node process.

Start: open the store with the identity key, build the replicator and the API,
listen, write node.json (so the CLI finds the node), then start replication and
LAN discovery (mDNS).
Stop (SIGINT or SIGTERM): withdraw the mDNS records, stop accepting connections,
stop replication (saving the ledgers' snapshots for at most SAVE_AT_STOP_S, 3 s:
node/store/states.py), let in-flight requests finish (a write that was accepted is
committed), close the store, remove node.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass

from aiohttp import web

from node.app import build_app
from node.config import (
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_HEAL_RETRY_S,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_MDNS_PEERS,
    DEFAULT_SHUTDOWN_TIMEOUT_S,
)
from node.home import Home
from node.http.context import ApiConfig, package_version
from node.http.guard import KEEPALIVE_S, GuardedSite, connection_cap
from node.listen import DEFAULT_HOST, DEFAULT_PORT, local_address
from node.nodefile import (
    NodeFile,
    hold_home,
    remove_node_file,
    running_node,
    socket_path,
    write_node_file,
)
from node.runtime import release_free_memory
from node.store.grants import attach_grants
from node.store.store import Store, wall_clock_ms
from node.sync.discovery import Discovery
from node.sync.replication import Replicator
from protocol import LocalError

log = logging.getLogger(__name__)



@dataclass(frozen=True, slots=True)
class RunConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT  # 0: any free port (node.json and the log tell which)
    peers: tuple[str, ...] = ()  # from --peer (found="flag")
    config_peers: tuple[str, ...] = ()  # from tally.toml (found="config"); a URL in both counts as a flag's
    offline: bool = False  # no safe-restore wait for peers
    mdns: bool = True  # LAN discovery
    max_mdns_peers: int = DEFAULT_MAX_MDNS_PEERS
    shutdown_timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S  # in-flight requests get this long to finish
    max_connections: int = DEFAULT_MAX_CONNECTIONS  # HTTP connections at once (node/http/guard.py)
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S  # a request's headers arrive within this, or it is closed
    heal_retry_s: float = DEFAULT_HEAL_RETRY_S  # a damaged entry is asked for again this often (node/sync/healing.py)
    trusted_proxies: frozenset[str] = frozenset()  # reverse proxies whose X-Forwarded-For names the client

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("a listen host is required")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is out of range")

    def peer_list(self) -> list[tuple[str, str]]:
        """(URL, how it was found) for the replicator: flags first, so a flag's wins."""
        return [*((url, "flag") for url in self.peers), *((url, "config") for url in self.config_peers)]


async def serve(home: Home, config: RunConfig) -> int:
    """Run the node until SIGINT or SIGTERM; 0 after a clean shutdown."""
    key = home.load_key()
    token = home.load_token()
    other = await running_node(home.path, home.identity())
    if other is not None:
        raise LocalError("already_running", f"a node (pid {other.pid}) already serves {home.path} at {other.address}")
    held = hold_home(home.path)  # for the process's life: the CLI tells a stuck node from none (nodefile.py)
    stop = asyncio.Event()
    try:
        async with contextlib.AsyncExitStack() as stack:
            _on_signals(stack, stop)
            store = await Store.open(home.store_path, key=key)
            stack.push_async_callback(store.close)  # 4. after every request is done
            peers = config.peer_list()
            # The inviters' nodes of ledgers joined by invitation (node/http/invites.py), unless configured already.
            peers += [(url, "invite") for url in await store.invited_peers() if url not in {u for u, _ in peers}]
            replicator = Replicator(store, key, peers=peers, offline=config.offline,
                                    heal=config.heal_retry_s)
            # A device names its grant (SPEC.md §19), looked up in the states the node keeps current.
            attach_grants(store, home.identity(), key.did, replicator.states)
            runner = web.AppRunner(
                build_app(store, replicator, ApiConfig(home.identity(), token, package_version(),
                                                       trusted_proxies=config.trusted_proxies, key=key,
                                                       key_log=home.load_key_log())),
                access_log=None, shutdown_timeout=config.shutdown_timeout_s, keepalive_timeout=KEEPALIVE_S,
            )
            await runner.setup()
            stack.push_async_callback(runner.cleanup)  # 3. in-flight requests finish, app cleanup
            max_connections = connection_cap(config.max_connections)
            site = GuardedSite(runner, config.host, config.port, max_connections=max_connections,
                               header_timeout_s=config.header_timeout_s,
                               trusted_proxies=frozenset(config.trusted_proxies),
                               early=replicator.refuse_link_early)
            try:
                await site.start()
            except OSError as exc:
                raise LocalError("listen_failed", f"cannot listen on {config.host}:{config.port}: {exc.strerror}"
                                 ) from None
            port = runner.addresses[0][1]
            address = local_address(config.host, port)
            local = await _local_channel(runner, home)
            if local is not None:
                stack.push_async_callback(local.stop)
            write_node_file(home.path, NodeFile(address, os.getpid(), wall_clock_ms(),
                                                None if local is None else local.path))
            log.info(
                "listening",
                extra={
                    "address": address, "host": config.host, "port": port, "did": key.did, "pid": os.getpid(),
                    "peers": len(config.peer_list()), "offline": config.offline, "mdns": config.mdns,
                    "max_connections": max_connections,
                },
            )
            stack.push_async_callback(replicator.stop)  # 2.
            stack.push_async_callback(site.stop)  # 1. stop accepting
            discovery = None
            if config.mdns:
                discovery = Discovery(replicator, key.did, config.host, port, max_peers=config.max_mdns_peers)
                stack.push_async_callback(discovery.stop)  # 0. say goodbye on the LAN
            await _until_stopped(replicator, discovery, stop)
            log.info("stopping")
    finally:
        remove_node_file(home.path, os.getpid())  # 5.
        os.close(held)
    log.info("stopped")
    return 0


class LocalChannel:
    """The API on a Unix socket, mode 0600 (nodefile.socket_path): the owner's CLI reaches the node there whatever
    the network does to its TCP port (SPEC.md §12)."""

    def __init__(self, site: web.UnixSite, path: str) -> None:
        self.site, self.path = site, path

    async def stop(self) -> None:
        await self.site.stop()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


async def _local_channel(runner: web.AppRunner, home: Home) -> LocalChannel | None:
    path = socket_path(home.path)
    if path is None:
        log.warning("no local channel: no private runtime folder for its socket", extra={"home": str(home.path)})
        return None
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a dead node's; this process holds the home
    old = os.umask(0o177)  # the socket is created 0600: only the owner's user may connect
    try:
        site = web.UnixSite(runner, str(path))
        await site.start()
    finally:
        os.umask(old)
    return LocalChannel(site, str(path))


async def _until_stopped(replicator: Replicator, discovery: Discovery | None, stop: asyncio.Event) -> None:
    """Start replication (then discovery) and wait for a stop signal; a signal during start-up cancels it."""
    starting = asyncio.create_task(_start(replicator, discovery), name="replicator-start")
    stopped = asyncio.create_task(stop.wait(), name="stop-signal")
    try:
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()  # a failed start ends the node (after a clean shutdown)
            log.info("replicating", extra={"catching_up": replicator.catching_up})
            release_free_memory()
            await stopped
    finally:
        for task in (starting, stopped):
            task.cancel()
        await asyncio.gather(starting, stopped, return_exceptions=True)


async def _start(replicator: Replicator, discovery: Discovery | None) -> None:
    await replicator.start()
    if discovery is not None:
        await discovery.start()


def _on_signals(stack: contextlib.AsyncExitStack, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def handle(sig: signal.Signals) -> None:
        log.info("signal", extra={"signal": sig.name, "already_stopping": stop.is_set()})
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, handle, sig)
        except (NotImplementedError, RuntimeError):  # Windows: Ctrl-C raises KeyboardInterrupt instead
            continue
        stack.callback(loop.remove_signal_handler, sig)
