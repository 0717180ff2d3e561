"""Peer links over aiohttp WebSockets: the I/O side of `protocol/handshake.py`.

A link is one WebSocket at `<peer>/api/v1/sync` carrying binary messages only:
the three Noise XX handshake messages, then one encrypted transport frame per
message. The side that opened the WebSocket is the initiator. Any failure closes
the WebSocket with code 4000 and the reason `<code>: <message>`; SPEC.md §11
("WebSocket binding") is the contract. This module draws the per-link X25519
keys and owns the deadlines; the protocol state machines do everything else.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from protocol.errors import CODES, InvalidData, TallyError
from protocol.handshake import KEY_BYTES, MAX_MESSAGE_BYTES, MAX_PLAINTEXT_BYTES, Handshake, Transport
from protocol.identity import AgentId, SigningKey

if TYPE_CHECKING:
    _WebSocket = web.WebSocketResponse[bool] | aiohttp.ClientWebSocketResponse[bool]

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

SYNC_PATH: Final = "/api/v1/sync"
#: aiohttp's `max_msg_size` for a link's WebSocket, on both sides: aiohttp refuses (close 1009)
#: any message of this many bytes or more before buffering it, so one Noise message (65535
#: bytes) passes and nothing larger. A link also checks the size itself.
WS_MAX_MSG_SIZE: Final = MAX_MESSAGE_BYTES + 1
HANDSHAKE_TIMEOUT_S: Final = 10.0
HEARTBEAT_S: Final = 20.0  # WebSocket ping interval; a pong missing for half of it ends the link
CLOSE_TIMEOUT_S: Final = 5.0  # how long a closing server side waits for the peer's close reply
WS_CLOSE_FAILURE: Final = 4000  # WebSocket close code of a link ended with a Tally error code
MAX_CLOSE_REASON_BYTES: Final = 123  # RFC 6455: a control frame holds 125 bytes, 2 of them the code

#: Inbound handshakes' key exchanges and signature checks run here, one at a time, beside the event loop: libsodium
#: lets the loop run meanwhile, so a flood of handshakes does not make the node's other work wait (SPEC.md §13.9).
_HANDSHAKE_THREAD: Final = ThreadPoolExecutor(max_workers=1, thread_name_prefix="handshake")

_WS_SCHEMES: Final = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
_REASON: Final = re.compile(r"([a-z][a-z0-9_]*): ?(.*)", re.DOTALL)


class LinkClosed(TallyError):
    """The link is over; nothing more can be sent or received on it.

    `refusal` is the Tally error code (SPEC.md §9) it ended with, or None for an ordinary close or a lost
    connection; its `code` is that refusal when this node knows it, else `link_closed`. `reason` is the
    human-readable part. `by_peer` is True when the peer (or the network) ended the link, False when this
    side refused something or closed. `ws_code` is the WebSocket close code, when there was one.
    """

    def __init__(self, code: str | None, reason: str, *, by_peer: bool = False, ws_code: int | None = None) -> None:
        super().__init__(code if code is not None and code in CODES else "link_closed", reason)
        self.refusal = code
        self.reason = reason
        self.by_peer = by_peer
        self.ws_code = ws_code

    def __str__(self) -> str:
        return f"{self.refusal}: {self.reason}" if self.refusal else self.reason


@dataclass(frozen=True, slots=True)
class _End:
    """How a link ended; each later call raises a fresh LinkClosed from it."""

    code: str | None
    reason: str
    by_peer: bool
    ws_code: int | None

    def error(self) -> LinkClosed:
        return LinkClosed(self.code, self.reason, by_peer=self.by_peer, ws_code=self.ws_code)


def sync_url(base: str) -> str:
    """The WebSocket URL of a peer's sync endpoint, from its base URL as users write it.

    http → ws, https → wss (ws and wss stay), a bare `host:port` is taken as http,
    and `/api/v1/sync` is appended unless the path already ends with it.
    """
    text = base.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    scheme = _WS_SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise ValueError(f"a peer URL starts with http://, https://, ws:// or wss://, not {base!r}")
    if not parts.hostname:
        raise ValueError(f"the peer URL {base!r} names no host")
    path = parts.path.rstrip("/")
    if not path.endswith(SYNC_PATH):
        path += SYNC_PATH
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def link_websocket(*, heartbeat: float | None = HEARTBEAT_S) -> web.WebSocketResponse:
    """A server-side WebSocket set up for `accept_link` (prepare it, then accept)."""
    return web.WebSocketResponse(max_msg_size=WS_MAX_MSG_SIZE, heartbeat=heartbeat, timeout=CLOSE_TIMEOUT_S,
                                 compress=False)


def peer_address(request: web.BaseRequest) -> str | None:
    """`host:port` of the other end of an inbound connection (`[host]:port` for IPv6)."""
    peername = request.transport.get_extra_info("peername") if request.transport is not None else None
    if not isinstance(peername, tuple) or len(peername) < 2:
        return None
    host, port = str(peername[0]), peername[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _close_reason(text: str) -> bytes:
    """`text` as UTF-8, cut to what a WebSocket close frame holds without splitting a character."""
    raw = text.encode("utf-8")
    if len(raw) <= MAX_CLOSE_REASON_BYTES:
        return raw
    return raw[:MAX_CLOSE_REASON_BYTES].decode("utf-8", "ignore").encode("utf-8")


class _Channel:
    """The WebSocket under one link: binary messages in and out, byte counts, and how it ended.

    `read` raises InvalidData for what this side refuses (the caller turns it into `fail`)
    and LinkClosed once the link is over.
    """

    def __init__(self, ws: _WebSocket, address: str | None, *, initiator: bool) -> None:
        self.ws = ws
        self.address = address
        self.initiator = initiator
        self.handshaking = True
        self.bytes_in = 0
        self.bytes_out = 0
        self.end: _End | None = None

    @property
    def closed(self) -> bool:
        return self.end is not None or self.ws.closed

    def check_open(self) -> None:
        if self.end is not None:
            raise self.end.error()

    @property
    def _malformed(self) -> str:
        return "handshake_failed" if self.handshaking else "bad_frame"

    async def read(self) -> bytes:
        self.check_open()
        msg = await self.ws.receive()
        if msg.type is WSMsgType.BINARY:
            data: bytes = msg.data
            self.bytes_in += len(data)
            if len(data) > MAX_MESSAGE_BYTES:
                raise InvalidData("frame_too_large", f"a message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
            return data
        if msg.type is WSMsgType.TEXT:
            raise InvalidData(self._malformed, "a text message; peer links carry binary messages only")
        if msg.type is WSMsgType.CLOSE:
            raise self._peer_closed(msg.data, msg.extra)
        self.check_open()  # CLOSING or CLOSED because this side closed the link from another task
        problem = msg.data if msg.type is WSMsgType.ERROR else self.ws.exception()
        if isinstance(problem, aiohttp.WebSocketError):  # aiohttp refused a frame and closed with its code
            if problem.code == WSCloseCode.MESSAGE_TOO_BIG:
                raise InvalidData("frame_too_large", f"a message over the limit (WebSocket close 1009: {problem})")
            raise InvalidData(self._malformed, f"a malformed WebSocket frame ({problem.code}: {problem})")
        if isinstance(problem, TimeoutError):  # aiohttp's heartbeat got no pong
            raise InvalidData("link_timeout", f"the peer stopped answering pings ({problem})")
        raise self._lost(f"the connection ended without a WebSocket close ({problem or msg.type.name})")

    async def write(self, data: bytes) -> None:
        self.check_open()
        try:
            await self.ws.send_bytes(data)
        except ConnectionError as exc:  # the transport is gone or closing
            self.check_open()
            raise self._lost(f"the connection failed while sending ({exc})") from None
        self.bytes_out += len(data)

    def _peer_closed(self, ws_code: int | None, text: str | None) -> LinkClosed:
        reason = text or ""
        match = _REASON.fullmatch(reason)
        if match and (ws_code == WS_CLOSE_FAILURE or match[1] in CODES):
            code, message = match[1], match[2]
        else:
            code, message = None, reason
        if code is None and ws_code == WSCloseCode.MESSAGE_TOO_BIG:
            code = "frame_too_large"
        if code is None and self.handshaking:
            code, message = "handshake_failed", f"the peer closed during the handshake ({ws_code} {reason})".strip()
        self.end = _End(code, message, True, ws_code)
        if code is not None:
            logger.warning("peer link %s closed by the peer: %s: %s", self.address, code, message)
        else:
            logger.info("peer link %s closed by the peer (%s)", self.address, ws_code)
        return self.end.error()

    def _lost(self, message: str) -> LinkClosed:
        code = "handshake_failed" if self.handshaking else None
        self.end = _End(code, message, True, self.ws.close_code)
        logger.warning("peer link %s lost: %s", self.address, message)
        return self.end.error()

    async def fail(self, code: str, message: str) -> LinkClosed:
        """End the link because this side refuses what happened; the LinkClosed to raise."""
        if self.end is not None:
            return self.end.error()
        logger.warning("peer link %s failed: %s: %s", self.address, code, message)
        self.end = _End(code, message, False, WS_CLOSE_FAILURE)
        await self._close_ws(WS_CLOSE_FAILURE, f"{code}: {message}")
        return self.end.error()

    async def close(self, code: str | None, message: str, *, going_away: bool) -> None:
        if self.end is not None:
            return
        if code is not None:
            ws_code, reason = WS_CLOSE_FAILURE, f"{code}: {message}"
            logger.info("closing peer link %s: %s", self.address, reason)
        else:
            ws_code, reason = (WSCloseCode.GOING_AWAY if going_away else WSCloseCode.OK), message
        self.end = _End(code, message or "closed by this side", False, ws_code)
        await self._close_ws(ws_code, reason)

    async def _close_ws(self, ws_code: int, reason: str) -> None:
        try:
            await self.ws.close(code=ws_code, message=_close_reason(reason))
        except ConnectionError as exc:
            logger.debug("peer link %s: closing the WebSocket failed: %s", self.address, exc)


class SecureLink:
    """An authenticated, encrypted link to one peer: frames of bytes, in order.

    `send` may be called from several tasks; `receive` from one reader task.
    Made by `accept_link` or `dial_link`, never directly.
    """

    def __init__(self, channel: _Channel, transport: Transport) -> None:
        channel.handshaking = False
        self._channel = channel
        self._transport = transport
        self._send_lock = asyncio.Lock()
        self.remote_did: AgentId = transport.remote_did
        self.remote_address = channel.address
        self.initiator = channel.initiator
        #: Unique per link and equal on both ends; usable for channel binding.
        self.handshake_hash = transport.handshake_hash
        self.frames_in = 0
        self.frames_out = 0

    def __repr__(self) -> str:
        role = "initiator" if self.initiator else "responder"
        return f"<SecureLink {role} {self.remote_did} at {self.remote_address}{' closed' if self.closed else ''}>"

    @property
    def bytes_in(self) -> int:
        """WebSocket payload bytes received, the handshake's included."""
        return self._channel.bytes_in

    @property
    def bytes_out(self) -> int:
        """WebSocket payload bytes sent, the handshake's included."""
        return self._channel.bytes_out

    @property
    def closed(self) -> bool:
        return self._channel.closed

    async def send(self, plaintext: bytes) -> None:
        """Encrypt and send one frame (at most MAX_PLAINTEXT_BYTES)."""
        if len(plaintext) > MAX_PLAINTEXT_BYTES:
            raise ValueError(f"a frame holds at most {MAX_PLAINTEXT_BYTES} bytes, not {len(plaintext)}")
        async with self._send_lock:  # nonces must go out in the order they were used
            self._channel.check_open()
            try:
                frame = self._transport.encrypt(plaintext)
            except InvalidData as exc:
                raise await self._channel.fail(exc.code, exc.message) from None
            await self._channel.write(frame)
            self.frames_out += 1

    async def receive(self, timeout: float | None = None) -> bytes:
        """The next frame's plaintext. Raises LinkClosed when the link ends for any reason;
        a `timeout` (seconds) that passes first ends the link with `link_timeout`."""
        channel = self._channel
        try:
            if timeout is None:
                frame = await channel.read()
            else:
                async with asyncio.timeout(timeout):
                    frame = await channel.read()
            plaintext = self._transport.decrypt(frame)
        except InvalidData as exc:
            raise await channel.fail(exc.code, exc.message) from None
        except TimeoutError:
            raise await channel.fail("link_timeout", f"no frame within {timeout} s") from None
        self.frames_in += 1
        return plaintext

    async def close(self, code: str | None = None, message: str = "", *, going_away: bool = False) -> None:
        """Close the link (idempotent). With a Tally error `code`, WebSocket close 4000 and
        reason `<code>: <message>`; else 1000 (1001 when `going_away`) with `message`."""
        await self._channel.close(code, message, going_away=going_away)


async def _step(beside: bool, work: Callable[..., _T], *args: object) -> _T:
    """`work(*args)`: on _HANDSHAKE_THREAD when `beside`, else here on the event loop."""
    if not beside:
        return work(*args)
    return await asyncio.get_running_loop().run_in_executor(_HANDSHAKE_THREAD, work, *args)


def _advance(handshake: Handshake | Callable[[], Handshake], data: bytes | None) -> tuple[Handshake, bytes | None]:
    """The handshake (made first, when given how to make it) after it read `data`, the peer's next message if
    any, and the message it writes next, if it is its turn: one step of work each time the peer has spoken."""
    if not isinstance(handshake, Handshake):
        handshake = handshake()
    if data is not None:
        handshake.read_message(data)
    return handshake, handshake.write_message() if handshake.wants_write else None


async def _run_handshake(channel: _Channel, make: Callable[[], Handshake], deadline: float, timeout: float,
                         *, beside: bool = False) -> SecureLink:
    """Run the handshake `make()` returns (made once the peer's first message is in, for a responder); its work
    on _HANDSHAKE_THREAD when `beside`, else on the event loop."""
    try:
        async with asyncio.timeout_at(deadline):
            data = None if channel.initiator else await channel.read()
            handshake, message = await _step(beside, _advance, make, data)
            while True:
                if message is not None:
                    await channel.write(message)
                if handshake.complete:
                    break
                handshake, message = await _step(beside, _advance, handshake, await channel.read())
        return SecureLink(channel, handshake.transport())
    except InvalidData as exc:
        raise await channel.fail(exc.code, exc.message) from None
    except TimeoutError:
        raise await channel.fail("link_timeout", f"no complete handshake within {timeout:g} s") from None


async def accept_link(ws: web.WebSocketResponse, identity: SigningKey, *, remote_address: str | None,
                      timeout: float = HANDSHAKE_TIMEOUT_S) -> SecureLink:
    """Run the responder's handshake on a prepared server WebSocket (see `link_websocket`).
    Raises LinkClosed if it fails; the WebSocket is then closed."""
    if not ws.prepared:
        raise RuntimeError("prepare the WebSocketResponse before accept_link")
    deadline = asyncio.get_running_loop().time() + timeout
    e, s = os.urandom(KEY_BYTES), os.urandom(KEY_BYTES)
    return await _run_handshake(_Channel(ws, remote_address, initiator=False),
                                lambda: Handshake.responder(identity, e, s), deadline, timeout, beside=True)


async def dial_link(session: aiohttp.ClientSession, url: str, identity: SigningKey, *,
                    expected_remote: str | None = None, timeout: float = HANDSHAKE_TIMEOUT_S,
                    max_frame: int = MAX_MESSAGE_BYTES, heartbeat: float | None = HEARTBEAT_S) -> SecureLink:
    """Open a WebSocket to the peer at `url` (see `sync_url`) and run the initiator's handshake,
    both within `timeout` seconds. With `expected_remote`, any other peer fails the handshake
    before this side reveals its did. Raises LinkClosed if the peer cannot be reached or the
    handshake fails, ValueError for a malformed url and InvalidData(bad_did) for a malformed
    `expected_remote`. `max_frame`: the largest message accepted (bytes, at most 65535);
    aiohttp refuses larger ones with close 1009."""
    if not 0 < max_frame <= MAX_MESSAGE_BYTES:
        raise ValueError(f"max_frame is between 1 and {MAX_MESSAGE_BYTES} bytes")
    target = sync_url(url)
    handshake = Handshake.initiator(identity, os.urandom(KEY_BYTES), os.urandom(KEY_BYTES), expected_remote)
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        async with asyncio.timeout_at(deadline):
            ws = await session.ws_connect(target, max_msg_size=max_frame + 1, heartbeat=heartbeat, compress=0)
    except TimeoutError:
        logger.warning("peer link %s failed: link_timeout: no WebSocket within %g s", url, timeout)
        raise LinkClosed("link_timeout", f"{target} did not accept a WebSocket within {timeout:g} s") from None
    except (aiohttp.ClientError, OSError) as exc:
        logger.warning("peer link %s: cannot connect: %s", url, exc)
        raise LinkClosed(None, f"cannot connect to {target}: {exc}", by_peer=True) from None
    channel = _Channel(ws, url, initiator=True)
    try:
        return await _run_handshake(channel, lambda: handshake, deadline, timeout)
    finally:
        if channel.end is None and channel.handshaking:  # cancelled mid-handshake
            await ws.close(code=WSCloseCode.GOING_AWAY)
