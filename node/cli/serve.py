"""`tally run` and `tally sync`: the commands that bring up the node's network side (the aiohttp app, the
dashboard, peer links, mDNS discovery), in a module of their own so that no other command loads it."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import TextIO

from node import config as settings
from node import logs
from node.cli.context import open_store
from node.cli.parsing import home_of
from node.run import RunConfig, serve
from node.sync.links import LinkClosed
from node.sync.replication import Replicator
from protocol import (
    LocalError,
)


async def cmd_run(args: argparse.Namespace) -> int:
    home = home_of(args)
    saved = settings.load(home.path)  # <home>/tally.toml; flags override it
    host, port = args.listen or saved.listen
    config = RunConfig(
        host=host, port=port, peers=tuple(args.peer), config_peers=saved.peers, offline=args.offline,
        mdns=saved.mdns if args.mdns is None else args.mdns, max_mdns_peers=saved.limits.max_mdns_peers,
        shutdown_timeout_s=saved.limits.shutdown_timeout_s, max_connections=saved.limits.max_connections,
        header_timeout_s=saved.limits.header_timeout_s, heal_retry_s=saved.limits.heal_retry_s,
        trusted_proxies=frozenset(saved.trusted_proxies),
    )
    logs.configure(logging.INFO)
    return await serve(home, config)


async def cmd_sync(args: argparse.Namespace) -> int:
    """One-shot sync with a peer: every ledger both replicate, both ways, then exit."""
    import aiohttp  # networking imports only for the commands that need them

    home = home_of(args)
    key = home.load_key()
    store = await open_store(home, key)
    progress = _Progress(sys.stderr)
    replicator = Replicator(store, key, offline=True)
    try:
        await replicator.start()
        info = await replicator.sync_once(args.url, progress=progress.update)
    except LinkClosed as exc:
        raise LocalError(exc.refusal or "unreachable", f"{args.url}: {exc.reason}") from None
    except (OSError, aiohttp.ClientError, ValueError) as exc:
        raise LocalError("unreachable", f"{args.url}: {exc}") from None
    finally:
        progress.finish()
        await replicator.stop()
        await store.close()
    print(f"synced\t{info.did}\t{info.entries_in} entries in\t{info.entries_out} entries out")
    return 0


class _Progress:
    """A one-line progress bar on a terminal (entries, entries/s, remaining); silent elsewhere."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._start = time.monotonic()
        self._shown = 0.0
        self._last = ""

    def update(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self._tty or (now - self._shown < 0.1 and done < total):
            return
        self._shown = now
        rate = done / max(now - self._start, 1e-6)
        width = 30
        filled = width * done // max(total, 1)
        remaining = max(total - done, 0)
        self._last = (f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} entries  "
                      f"{rate:,.0f}/s  {remaining} remaining")
        self._stream.write(self._last)
        self._stream.flush()

    def finish(self) -> None:
        if self._tty and self._last:
            self._stream.write("\n")
            self._stream.flush()
