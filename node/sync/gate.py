"""Who may hold a peer link (SPEC.md §13.9): the inbound caps, for the node and per host, counted from the first
bytes of an attempt (a place is held for it from then on, so that a burst accepted at once cannot slip past the
caps before any of it is counted); refused attempts logged as one line per host per REFUSALS_LOG_S with a count;
and the bans of peers (by did) and hosts (`host:<host>`) that broke the protocol. The Replicator
(node/sync/replication.py) asks it before and around each link."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Final

from aiohttp import web

log = logging.getLogger(__name__)

BAN_MIN_S: Final = 30.0  # a peer that broke the protocol is refused this long, doubling each time
BAN_MAX_S: Final = 600.0
MAX_LINKS: Final = 256  # inbound links at once, handshaking or running (beyond: HTTP 503, before any work)
MAX_LINKS_PER_ADDRESS: Final = 8  # inbound links from one host, except peers this node was given or found
MAX_HANDSHAKES_PER_ADDRESS: Final = 4  # inbound handshakes at once from one host (beyond: HTTP 503)
MAX_HANDSHAKES: Final = 16  # inbound handshakes at once, all hosts together: the key exchanges and signature checks
# waiting for the handshake thread (node/sync/links.py) at a time (beyond: HTTP 503)
REFUSALS_LOG_S: Final = 10.0  # refused link attempts are logged once per host per this long, with a count
#: The whole answer to a refused link attempt, for a listener that answers it before any HTTP work (node/http/guard.py).
REFUSED_HTTP: Final = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
                       b"Content-Length: 19\r\nConnection: close\r\n\r\ntoo many peer links")
# An attempt let through from its first bytes holds its handshake place until its handshake starts, or this long
# (the handshake's own deadline, node/sync/links.py HANDSHAKE_TIMEOUT_S) when it never gets there.
RESERVED_S: Final = 10.0
MAX_REFUSING_HOSTS: Final = 1024  # hosts whose refusals are being counted (beyond: the oldest count is dropped)


class LinkGate:
    """The counts, refusals and bans of one node's links. See the module docstring."""

    def __init__(self) -> None:
        self._bans: dict[str, tuple[float, float]] = {}  # did, or "host:<host>" -> (until, last ban length)
        self._inbound = _Counts()  # inbound links per host, handshaking or running
        self._handshaking = _Counts()  # inbound handshakes in progress per host, the places held for attempts included
        self._reserved: OrderedDict[str, tuple[str, float]] = OrderedDict()  # "ip:port" -> (host, when), oldest first
        self._refused: dict[str, tuple[int, float]] = {}  # host -> (refusals not logged yet, when one last was)

    def refusal(self, host: str, address: str | None = None) -> web.Response | None:
        """The 503 for a link attempt from `host` beyond the caps (see `refuses`), else None; never for the attempt
        at `address` ("ip:port") that holds a place already (see `reserve`)."""
        if (address is not None and address in self._reserved) or not self.refuses(host):
            return None
        refused = web.Response(status=503, text="too many peer links")
        refused.force_close()  # its connection is closed once answered, not kept for a next attempt
        return refused

    def reserve(self, host: str, address: str) -> bool:
        """Admit the link attempt at `address` ("ip:port") from `host`, from its connection's first bytes, and hold
        a handshake place for it from now (until `handshake(host, address)` takes it over, or RESERVED_S): True, or
        False when it is refused (see `refuses`). A listener accepts many connections at once before it serves any
        of them, so a place not counted until the handshake began let a whole batch through. Idempotent."""
        if address in self._reserved:
            return True
        if self.refuses(host):
            return False
        self._reserved[address] = (host, time.monotonic())
        self._handshaking.add(host)
        return True

    def _expire_reserved(self) -> None:
        """Give back the places of attempts that never began their handshake (closed, or refused by the API)."""
        reserved = self._reserved
        if reserved:
            old = time.monotonic() - RESERVED_S
            while reserved:
                address, (host, when) = next(iter(reserved.items()))
                if when > old:
                    break
                del reserved[address]
                self._handshaking.remove(host)

    def refuses(self, host: str) -> bool:
        """A link attempt from `host` is beyond MAX_LINKS, MAX_HANDSHAKES or MAX_HANDSHAKES_PER_ADDRESS; a flood
        of them is logged as one line per host per REFUSALS_LOG_S with a count, not a line each. O(1): the
        counts are kept as they change."""
        self._expire_reserved()
        handshaking = self._handshaking
        if (self._inbound.total + len(self._reserved) < MAX_LINKS and handshaking.total < MAX_HANDSHAKES
                and handshaking.per_host.get(host, 0) < MAX_HANDSHAKES_PER_ADDRESS):
            return False
        now = time.monotonic()
        unlogged, logged = self._refused.pop(host, (0, None))
        if logged is None or now - logged >= REFUSALS_LOG_S:
            log.warning("peer links refused host=%s count=%d reason=too many links", host, unlogged + 1)
            unlogged, logged = 0, now
        else:
            unlogged += 1
        if len(self._refused) >= MAX_REFUSING_HOSTS:
            self._refused.pop(next(iter(self._refused)))  # the host refused longest ago
        self._refused[host] = (unlogged, logged)
        return True

    def inbound(self, host: str) -> AbstractContextManager[None]:
        """Count an inbound link from `host` while it lasts, handshake included."""
        return self._inbound.counted(host)

    def handshake(self, host: str, address: str | None = None) -> AbstractContextManager[None]:
        """Count an inbound handshake from `host` while it runs; it takes over the place held for the attempt at
        `address`, if any (see `reserve`)."""
        held = self._reserved.pop(address, None) if address is not None else None
        if held is not None:
            self._handshaking.remove(held[0])
        return self._handshaking.counted(host)

    def too_many_from(self, host: str) -> bool:
        """More than MAX_LINKS_PER_ADDRESS inbound links from `host`, this one included."""
        return self._inbound.per_host.get(host, 0) > MAX_LINKS_PER_ADDRESS

    def ban(self, did: str) -> None:
        _, last = self._bans.get(did, (0.0, BAN_MIN_S / 2))
        length = min(BAN_MAX_S, last * 2)
        self._bans[did] = (time.monotonic() + length, length)
        log.warning("peer banned peer=%s seconds=%.0f", did, length)

    def ban_left(self, did: str) -> float:
        until, _ = self._bans.get(did, (0.0, 0.0))
        return max(0.0, until - time.monotonic())


class _Counts:
    """Things in progress per host, and their total."""

    def __init__(self) -> None:
        self.per_host: dict[str, int] = {}
        self.total = 0

    def add(self, host: str) -> None:
        self.per_host[host] = self.per_host.get(host, 0) + 1
        self.total += 1

    def remove(self, host: str) -> None:
        self.total -= 1
        self.per_host[host] -= 1
        if not self.per_host[host]:
            del self.per_host[host]

    @contextmanager
    def counted(self, host: str) -> Iterator[None]:
        self.add(host)
        try:
            yield
        finally:
            self.remove(host)


def host_of(address: str | None) -> str:
    """The host of `host:port` (`[v6]:port`): links are counted and slowed per host, not per port."""
    if address is None:
        return "?"
    return address.rsplit(":", 1)[0] if address.count(":") == 1 or address.startswith("[") else address
