"""Safe restore (SPEC.md §12, §13.8): a starting node signs nothing until its own chains are caught up.

A restored backup must learn its own latest entries from its peers before it signs new ones, or it would fork its
chain. `SafeRestore` holds local appends while the peers the node was given have not all told it its own heads
(and it fetched what they had), and gives up waiting after RESTORE_WAIT_S on peers that never answered; a peer
still answering holds it until it falls silent for RESTORE_SILENCE_S. The Replicator (node/sync/replication.py)
runs it; the API and the CLI refuse signing writes with `catching_up` meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Final

from node.sync.peers import wall_ms
from node.sync.session import SyncSession

log = logging.getLogger(__name__)

RESTORE_WAIT_S: Final = 10.0  # how long a starting node waits to reach a peer before it allows appends
RESTORE_SILENCE_S: Final = 10.0  # a peer that says nothing this long no longer holds safe restore


class SafeRestore:
    """Whether local appends wait, and what ends the wait. See the module docstring."""

    def __init__(
        self, peer_urls: Iterable[str], *, offline: bool, links: Callable[[], Iterable[SyncSession]],
        did_at: Callable[[str], str | None],
    ) -> None:
        self._pending = set(peer_urls)  # the peers safe restore asks
        self._answered: set[str] = set()  # dids that answered and whose copy we fetched
        self._links = links  # the sessions running now
        self._did_at = did_at  # the did of the peer found at a URL, if a handshake told it
        self.catching_up = not offline and bool(self._pending)

    async def deadline(self) -> None:
        """After RESTORE_WAIT_S, stop waiting for peers that never answered; keep waiting
        only for a peer still answering (silent for less than RESTORE_SILENCE_S)."""
        await asyncio.sleep(RESTORE_WAIT_S)
        while self.catching_up:
            now = wall_ms()
            active = [s for s in self._links() if s.restoring_busy
                      and s.info.last_seen is not None and now - s.info.last_seen < RESTORE_SILENCE_S * 1000]
            if not active:
                log.warning("safe restore: waited %.0f s; local appends allowed (peers answered: %s)",
                            RESTORE_WAIT_S, ", ".join(sorted(self._answered)) or "none")
                self._finish()
                return
            await asyncio.sleep(1.0)

    def answered(self, did: str) -> None:
        """A peer told us our own heads and we fetched everything it had of our chains."""
        self._answered.add(did)
        self.check()

    def check(self) -> None:
        """Done once every peer we were given has answered (by did, whichever link it used)."""
        if not self.catching_up:
            return
        if any(s.restoring_busy for s in self._links()):
            return
        if all(self._did_at(url) in self._answered for url in self._pending):
            self._finish()

    def _finish(self) -> None:
        if self.catching_up:
            self.catching_up = False
            log.info("safe restore done: local appends allowed")


__all__ = ["RESTORE_SILENCE_S", "RESTORE_WAIT_S", "SafeRestore"]
