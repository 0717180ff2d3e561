"""Connections that slow or many clients cannot use to starve the node (SPEC.md §12 "Slow and many clients").

aiohttp closes idle keep-alive connections but not one whose request headers never
finish: a client that sends half a request and waits holds a file descriptor for
ever, and 1,100 of them used up a node's 1,024. `GuardedSite` listens like
`web.TCPSite` but wraps every connection's aiohttp handler:

- **header timeout**: a request's headers (up to the blank line) must arrive within
  `header_timeout_s` of its first byte, or of the connection's opening, else the
  connection is closed without an answer;
- **a cap on open connections**: at `max_connections`, a new connection first closes
  one of the host (IP address) holding the most: its oldest one still waiting for its
  headers (a slow or half-open one), else its one kept alive idle the longest (between
  requests); then the same among all hosts. So a client that sends its request at once
  is served however many half-open or idle connections an attacker holds, and a flood
  from one address costs that address its connections, not other clients theirs; only
  when every open connection has a request in progress is the new one closed at once;
- **a share per address**: one IP address (a trusted reverse proxy's aside) holds at most
  MAX_CONNECTIONS_PER_ADDRESS; beyond, its new connections are closed right after accept(),
  before asyncio makes a transport or aiohttp a request handler for them (the site accepts
  connections itself for that), so a flood of connections from one address costs the node
  two system calls each;
- **answers from the first bytes**: a connection whose first bytes `early` refuses (a peer link
  attempt beyond the caps, node/sync/gate.py) gets its whole answer and is closed: right at
  accept() when those bytes are there already, else at its first read, before aiohttp parses
  anything. The system hands the site a connection once its first bytes have come (Linux
  TCP_DEFER_ACCEPT) and keeps LISTEN_BACKLOG of them waiting, so that a burst overflows into
  neither SYN cookies (handed over at once, bytes or not) nor drops: a flood of link attempts
  from many addresses, each within its share, then costs a few system calls each.

Request bodies have their own deadline (node/app.py `_read_body`), idle keep-alive
connections aiohttp's `keepalive_timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import socket
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web

log = logging.getLogger(__name__)

HEADER_TIMEOUT_S: Final = 10.0
KEEPALIVE_S: Final = 15.0
MAX_CONNECTIONS: Final = 512
MAX_CONNECTIONS_PER_ADDRESS: Final = 64  # of them from one IP address, reverse proxies in trusted_proxies aside
# Connections the system keeps for the listener: those completed and not yet accepted, and as many whose first bytes
# have not come (TCP_DEFER_ACCEPT below). Beyond, Linux answers new ones with SYN cookies, which it hands over at
# once whether their bytes have come or not, or drops them (the client tries again a second later).
LISTEN_BACKLOG: Final = 1024
ACCEPT_BATCH: Final = 128  # connections accepted at once, as asyncio does, before the loop runs anything else
ACCEPT_RETRY_S: Final = 1.0  # out of files or memory, accepting pauses this long (as asyncio's own accept does)
FILES_KEPT_FREE: Final = 128  # file descriptors left for the store, sync links' peers, logs
_END_OF_HEADERS: Final = b"\r\n\r\n"
# The system hands the listener a connection once its first bytes have come (Linux TCP_DEFER_ACCEPT), or after
# at least this long without (Linux rounds it up to its SYN-ACK resends: at 1, 3, 7 s, so about 7 s): a link attempt
# is then answered at accept(), before anything is made for it, even from a client slow to send its request (1 s
# let a loaded attacker's late bytes through as bare connections: a transport each, and evictions at the cap).
DEFER_ACCEPT_S: Final = 5
EARLY_PEEK_BYTES: Final = 64  # what `early` is shown of a connection whose bytes are there as it is accepted
EARLY_DRAIN_BYTES: Final = 16384  # read at a time from a connection answered at accept, until nothing is left
EARLY_DRAIN_READS: Final = 4  # or this many reads (a client still sending gets a reset)


def connection_cap(wanted: int = MAX_CONNECTIONS) -> int:
    """`wanted`, raising the process's open-files limit toward it when allowed, else what the limit leaves."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + FILES_KEPT_FREE
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(16, min(wanted, soft - FILES_KEPT_FREE))


class Connections:
    """The open connections of one listener, oldest first, with what the guard did to them."""

    def __init__(self, max_connections: int, exempt: frozenset[str] = frozenset(),
                 early: Callable[[str, int, bytes], bytes | None] | None = None) -> None:
        self.max_connections = max_connections
        self.exempt = exempt  # addresses without a cap of their own (the trusted reverse proxies)
        # From a connection's IP address, port and first bytes, the whole answer to send before any HTTP work, or None
        self.early = early
        self.open: OrderedDict[GuardedProtocol, None] = OrderedDict()
        self.by_host: dict[str, OrderedDict[GuardedProtocol, None]] = {}  # the same, per remote IP address
        self.evicted = self.evicted_idle = self.refused = self.timed_out = self.answered_at_accept = 0

    def over_share(self, host: str) -> bool:
        """`host` holds MAX_CONNECTIONS_PER_ADDRESS open connections already (and is no trusted proxy)."""
        return len(self.by_host.get(host, ())) >= MAX_CONNECTIONS_PER_ADDRESS and host not in self.exempt

    def admit(self, conn: GuardedProtocol) -> bool:
        if self.over_share(conn.host):  # it got past the check at accept() while others were being set up
            self.refused += 1
            return False
        if len(self.open) >= self.max_connections:
            # The host holding the most connections gives one of its own up first: a flood from one address
            # then costs that address its connections, not the other clients theirs.
            top = max(self.by_host.values(), key=len)
            victim = self._victim(top) or self._victim(self.open)
            if victim is None:
                self.refused += 1
                return False
            victim.close()
            self.forget(victim)
        self.open[conn] = None
        self.by_host.setdefault(conn.host, OrderedDict())[conn] = None
        return True

    def _victim(self, conns: OrderedDict[GuardedProtocol, None]) -> GuardedProtocol | None:
        """The oldest of `conns` still waiting for its headers, else the one of them idle the longest, else None."""
        victim = next((c for c in conns if c.waiting_for_headers()), None)
        if victim is not None:
            self.evicted += 1
            return victim
        victim = min((c for c in conns if c.idle()), key=lambda c: c.idle_since, default=None)
        if victim is not None:
            self.evicted_idle += 1
        return victim

    def forget(self, conn: GuardedProtocol) -> None:
        self.open.pop(conn, None)
        mine = self.by_host.get(conn.host)
        if mine is not None:
            mine.pop(conn, None)
            if not mine:
                del self.by_host[conn.host]


class GuardedProtocol(asyncio.Protocol):
    """An aiohttp request handler with a header deadline, counted against its listener's cap."""

    def __init__(self, handler: Callable[[], Any], connections: Connections, header_timeout_s: float) -> None:
        self.handler = handler  # makes aiohttp's RequestHandler (an asyncio protocol), at the first bytes
        self.inner: Any = None
        self.connections = connections
        self.header_timeout_s = header_timeout_s
        self.transport: asyncio.Transport | None = None
        self.host = "?"  # the remote IP address, once connected
        self.port = 0
        self.deadline: asyncio.TimerHandle | None = None
        self.tail = b""  # the last bytes of the headers seen so far, for a blank line split across reads
        self.started = False  # admitted; `inner` has the connection once it is made
        self.idle_since = 0.0  # loop time the last request's headers were complete (an idle one's is its age)

    def busy(self) -> bool:
        """A request is being answered, its answer written, or it is parsed and queued. aiohttp keeps no public
        flag for it."""
        inner = self.inner
        return (getattr(inner, "_current_request", None) is not None or bool(getattr(inner, "_messages", ()))
                or bool(getattr(inner, "_request_in_progress", False)))

    def waiting_for_headers(self) -> bool:
        return self.deadline is not None and not self.busy()

    def idle(self) -> bool:
        """Kept alive between requests: answered, and no byte of a next request yet."""
        return self.inner is not None and self.deadline is None and not self.busy()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # a stream server's
        self.transport = transport
        peername = transport.get_extra_info("peername")
        self.host = str(peername[0]) if isinstance(peername, tuple) and peername else "?"
        self.port = int(peername[1]) if isinstance(peername, tuple) and len(peername) > 1 else 0
        if not self.connections.admit(self):
            transport.abort()
            return
        self.started = True
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self.tail = b""
        self.deadline = asyncio.get_running_loop().call_later(self.header_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _expired(self) -> None:
        self.deadline = None
        if not self.busy():
            self.connections.timed_out += 1
            self.close()

    def close(self) -> None:
        self._disarm()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.deadline is None and not self.busy():
            self._arm()  # the next request on a kept-alive connection starts: it gets a deadline of its own
        if self.deadline is not None:
            seen = self.tail + data
            if _END_OF_HEADERS in seen:
                self._disarm()
                self.idle_since = asyncio.get_running_loop().time()
            self.tail = seen[-3:]
        if self.inner is None:
            # A request refused from its first bytes (a peer link attempt beyond the caps) is answered here,
            # before aiohttp makes a request handler, parses it or runs a middleware.
            answer = None if self.connections.early is None else self.connections.early(self.host, self.port, data)
            if answer is not None:
                assert self.transport is not None
                self._disarm()
                self.transport.write(answer)
                self.transport.close()
                return
            self.inner = self.handler()
            self.inner.connection_made(self.transport)
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self.inner is None:
            return None
        result: bool | None = self.inner.eof_received()
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.connections.forget(self)
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()


class GuardedSite(web.TCPSite):
    """`web.TCPSite` whose connections are guarded (header deadline, connection cap)."""

    def __init__(self, runner: web.BaseRunner, host: str | None, port: int, *, max_connections: int,
                 header_timeout_s: float = HEADER_TIMEOUT_S, trusted_proxies: frozenset[str] = frozenset(),
                 early: Callable[[str, int, bytes], bytes | None] | None = None) -> None:
        super().__init__(runner, host, port, backlog=LISTEN_BACKLOG)
        self.connections = Connections(max_connections, trusted_proxies, early)
        self.header_timeout_s = header_timeout_s
        self._listening: list[socket.socket] = []  # what this site accepts from (duplicates of the server's)
        self._accepting: set[asyncio.Task[Any]] = set()  # transports being made for accepted connections

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner, as TCPSite.start does
        loop = asyncio.get_running_loop()
        server = await loop.create_server(self._server_protocol, self._host, self._port, backlog=self._backlog,
                                          reuse_address=self._reuse_address, start_serving=False)
        self._server = server
        # The site accepts connections itself (asyncio's server only binds and closes): one beyond its address's
        # share is closed right after accept(), before a transport or a request handler is made for it.
        for bound in server.sockets:
            listening = socket.socket(fileno=os.dup(bound.fileno()))
            listening.setblocking(False)
            if hasattr(socket, "TCP_DEFER_ACCEPT") and listening.family in (socket.AF_INET, socket.AF_INET6):
                listening.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, DEFER_ACCEPT_S)
            listening.listen(self._backlog)  # what asyncio's server would do when it starts serving
            self._listening.append(listening)
            loop.add_reader(listening.fileno(), self._accept, listening)
        if server.sockets:
            self._bound_port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        for listening in self._listening:
            loop.remove_reader(listening.fileno())
            listening.close()
        self._listening.clear()
        await super().stop()

    def _accept(self, listening: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(ACCEPT_BATCH):  # then the loop's other work: a request waits behind this many at most
            try:
                conn, address = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:  # out of files or memory: accept again a little later rather than spin
                log.warning("accept failed", extra={"error": str(exc), "retry_s": ACCEPT_RETRY_S})
                loop.remove_reader(listening.fileno())
                loop.call_later(ACCEPT_RETRY_S, self._resume, listening)
                return
            host = str(address[0]) if isinstance(address, tuple) and address else "?"
            if self.connections.over_share(host):
                self.connections.refused += 1
                conn.close()
                continue
            conn.setblocking(False)
            if self._answered_at_accept(conn, host, address[1] if isinstance(address, tuple) else 0):
                continue
            task = loop.create_task(loop.connect_accepted_socket(self._server_protocol, conn))
            self._accepting.add(task)
            task.add_done_callback(self._accepted)

    def _answered_at_accept(self, conn: socket.socket, host: str, port: int) -> bool:
        """Answer (and close) a connection whose first bytes are already there and are refused by `early` (a peer
        link attempt beyond the caps), before a transport, a task or a request handler is made for it: a flood of
        such attempts from many addresses, each within its share, then costs the node a few system calls each."""
        early = self.connections.early
        if early is None:
            return False
        try:
            head = conn.recv(EARLY_PEEK_BYTES, socket.MSG_PEEK)
        except OSError:  # nothing yet (the usual path reads it), or reset already
            return False
        answer = early(host, port, head) if head else None
        if answer is None:
            return False
        with contextlib.suppress(OSError):
            # Read what came (closing with unread bytes would reset the connection before the client reads the
            # answer; a client still sending more gets that reset), then answer: a few hundred bytes into a new
            # connection's empty send buffer.
            for _ in range(EARLY_DRAIN_READS):
                if not conn.recv(EARLY_DRAIN_BYTES):
                    break
        with contextlib.suppress(OSError):
            conn.send(answer)
        conn.close()
        self.connections.answered_at_accept += 1
        return True

    def _server_protocol(self) -> GuardedProtocol:
        handler = self._runner.server
        assert handler is not None
        return GuardedProtocol(handler, self.connections, self.header_timeout_s)

    def _accepted(self, task: asyncio.Task[Any]) -> None:
        self._accepting.discard(task)
        if not task.cancelled() and task.exception() is not None:  # e.g. reset before its transport was made
            log.debug("accepted connection failed", extra={"error": str(task.exception())})

    def _resume(self, listening: socket.socket) -> None:
        if listening in self._listening:
            asyncio.get_running_loop().add_reader(listening.fileno(), self._accept, listening)
