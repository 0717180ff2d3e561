"""Peer links over real loopback WebSockets (node/sync/links.py), honest peers, broken peers and relays."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from node.sync.links import (
    SYNC_PATH,
    WS_MAX_MSG_SIZE,
    LinkClosed,
    SecureLink,
    accept_link,
    dial_link,
    link_websocket,
    peer_address,
    sync_url,
)
from protocol.errors import InvalidData
from protocol.handshake import MAX_MESSAGE_BYTES, MAX_PLAINTEXT_BYTES, Handshake
from protocol.identity import SigningKey

ALICE = SigningKey(bytes([1]) * 32)  # dials
BOB = SigningKey(bytes([2]) * 32)  # serves
MALLORY = SigningKey(bytes([3]) * 32)
DEADLINE_S = 10.0  # generous: every wait below normally ends in milliseconds
SHORT_S = 0.3  # the test-configured timeouts that are meant to expire
MARKER = b"PLAINTEXT-MARKER-"

# --- a server, a relay and a raw peer on 127.0.0.1 ------------------------------------------------------------------

Behaviour = Callable[[SecureLink], Awaitable[object]]


async def echo(link: SecureLink) -> object:
    """Send every frame back until the link ends; the LinkClosed that ended it."""
    while True:
        try:
            frame = await link.receive()
        except LinkClosed as exc:
            return exc
        await link.send(frame)


@dataclass
class Outcome:
    """What one inbound connection came to: a link and what its behaviour returned, or the failure."""

    link: SecureLink | None
    error: LinkClosed | None
    result: object = None


class LinkServer:
    """BOB's sync endpoint: accepts each WebSocket as a link and runs `behaviour` on it."""

    def __init__(self, behaviour: Behaviour = echo, *, timeout: float = DEADLINE_S,
                 heartbeat: float | None = None) -> None:
        self.behaviour = behaviour
        self.timeout = timeout
        self.heartbeat = heartbeat
        self.outcomes: asyncio.Queue[Outcome] = asyncio.Queue()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = link_websocket(heartbeat=self.heartbeat)
        await ws.prepare(request)
        try:
            link = await accept_link(ws, BOB, remote_address=peer_address(request), timeout=self.timeout)
        except LinkClosed as exc:
            await self.outcomes.put(Outcome(None, exc))
            return ws
        try:
            result = await self.behaviour(link)
        except LinkClosed as exc:
            result = exc
        await self.outcomes.put(Outcome(link, None, result))
        return ws

    async def next_outcome(self) -> Outcome:
        return await asyncio.wait_for(self.outcomes.get(), DEADLINE_S)


@contextlib.asynccontextmanager
async def serving(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> AsyncIterator[str]:
    """Serve `handler` at /api/v1/sync on a fresh loopback port; yields the base URL."""
    app = web.Application()
    app.router.add_get(SYNC_PATH, handler)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


Tamper = Callable[[str, int, bytes], bytes | str | None]


def honest(_direction: str, _index: int, data: bytes) -> bytes:
    return data


def flip(direction: str, index: int, position: int = 0) -> Tamper:
    """Flip one bit of the `index`-th binary message going `direction` ("up" is dialer → server)."""

    def tamper(d: str, i: int, data: bytes) -> bytes:
        if (d, i) != (direction, index):
            return data
        changed = bytearray(data)
        changed[position] ^= 0x01
        return bytes(changed)

    return tamper


class Relay:
    """A WebSocket proxy between dialer and server that sees every byte and may change it.

    `tamper(direction, index, data)` returns what to forward: bytes, a str (sent as a text
    message) or None (dropped). Close codes and reasons are passed on both ways.
    """

    def __init__(self, session: aiohttp.ClientSession, upstream: str, tamper: Tamper = honest) -> None:
        self.session = session
        self.upstream = upstream
        self.tamper = tamper
        self.seen: list[tuple[str, bytes]] = []

    def messages(self, direction: str) -> list[bytes]:
        return [data for d, data in self.seen if d == direction]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        down = web.WebSocketResponse(max_msg_size=0)
        await down.prepare(request)
        async with self.session.ws_connect(sync_url(self.upstream), max_msg_size=0) as up:
            await asyncio.gather(self._pump(down, up, "up"), self._pump(up, down, "down"))
        return down

    async def _pump(self, source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
                    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse, direction: str) -> None:
        index = 0
        while True:
            msg = await source.receive()
            if msg.type is WSMsgType.BINARY:
                self.seen.append((direction, msg.data))
                out = self.tamper(direction, index, msg.data)
                index += 1
                with contextlib.suppress(ConnectionError):
                    if isinstance(out, str):
                        await sink.send_str(out)
                    elif out is not None:
                        await sink.send_bytes(out)
                continue
            if msg.type is WSMsgType.CLOSE:
                await sink.close(code=msg.data, message=(msg.extra or "").encode())
            else:
                await sink.close(code=1001)
            return


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def assert_closed(exc: object, code: str | None, *, by_peer: bool) -> LinkClosed:
    assert isinstance(exc, LinkClosed), exc
    assert (exc.refusal, exc.by_peer) == (code, by_peer), exc
    assert exc.code == (code or "link_closed")  # its code in the error tree
    return exc


# --- honest links ---------------------------------------------------------------------------------------------------


async def test_handshake_both_ways_and_frames_both_directions(session: aiohttp.ClientSession) -> None:
    server = LinkServer()
    async with serving(server.handle) as base:
        link = await dial_link(session, base, ALICE, expected_remote=BOB.did)
        assert (link.remote_did, link.remote_address, link.initiator) == (BOB.did, base, True)
        handshake_out = link.bytes_out
        assert handshake_out > 32 and link.frames_out == 0  # message 1 and 3 are counted as bytes, not frames
        for frame in (b"", b"hello", MARKER + bytes(range(256))):
            before = link.bytes_out
            await link.send(frame)
            assert link.bytes_out - before == len(frame) + 16
            assert await link.receive(timeout=DEADLINE_S) == frame
        await link.close()
        assert link.closed

        outcome = await server.next_outcome()
        peer = outcome.link
        assert peer is not None
        assert (peer.remote_did, peer.initiator) == (ALICE.did, False)
        assert peer.remote_address is not None and peer.remote_address.startswith("127.0.0.1:")
        assert peer.handshake_hash == link.handshake_hash
        closed = assert_closed(outcome.result, None, by_peer=True)
        assert closed.ws_code == 1000
        assert (link.frames_out, link.frames_in, peer.frames_in, peer.frames_out) == (3, 3, 3, 3)
        assert (peer.bytes_in, peer.bytes_out) == (link.bytes_out, link.bytes_in)


async def test_many_frames_and_the_largest_frame(session: aiohttp.ClientSession) -> None:
    server = LinkServer()
    async with serving(server.handle) as base:
        link = await dial_link(session, base, ALICE)
        frames = [i.to_bytes(4, "big") * (i % 50) for i in range(500)]
        for frame in frames:
            await link.send(frame)
        assert [await link.receive(timeout=DEADLINE_S) for _ in frames] == frames

        largest = (bytes(range(256)) * 256)[:MAX_PLAINTEXT_BYTES]
        await link.send(largest)  # a 65535-byte WebSocket message, the limit itself
        assert await link.receive(timeout=DEADLINE_S) == largest
        with pytest.raises(ValueError):
            await link.send(bytes(MAX_PLAINTEXT_BYTES + 1))
        await link.send(b"still open")  # the refused send changed nothing
        assert await link.receive(timeout=DEADLINE_S) == b"still open"
        await link.close()
        outcome = await server.next_outcome()
        assert outcome.link is not None and outcome.link.frames_in == len(frames) + 2


async def test_concurrent_senders_keep_order_and_integrity(session: aiohttp.ClientSession) -> None:
    server = LinkServer()
    senders, per_sender = 8, 100

    def frame(sender: int, i: int) -> bytes:
        return f"{sender}:{i}:".encode() + bytes([sender]) * (i * 37 % 3000)

    async with serving(server.handle) as base:
        link = await dial_link(session, base, ALICE)

        async def send_all(sender: int) -> None:
            for i in range(per_sender):
                await link.send(frame(sender, i))
                if i % 10 == 0:
                    await asyncio.sleep(0)

        async def receive_all() -> list[bytes]:
            return [await link.receive(timeout=DEADLINE_S) for _ in range(senders * per_sender)]

        sending = asyncio.gather(*(send_all(s) for s in range(senders)))
        received = await receive_all()
        await sending
        by_sender: dict[int, list[bytes]] = {}
        for data in received:
            by_sender.setdefault(int(data.split(b":")[0]), []).append(data)
        assert by_sender == {s: [frame(s, i) for i in range(per_sender)] for s in range(senders)}
        await link.close()
        outcome = await server.next_outcome()
        assert outcome.link is not None and outcome.link.frames_in == senders * per_sender


async def test_expected_remote_mismatch_fails_before_the_dialer_reveals_itself(
        session: aiohttp.ClientSession) -> None:
    server = LinkServer()
    async with serving(server.handle) as base:
        relay = Relay(session, base)
        async with serving(relay.handle) as relay_base:
            with pytest.raises(LinkClosed) as raised:
                await dial_link(session, relay_base, ALICE, expected_remote=MALLORY.did)
            assert_closed(raised.value, "handshake_failed", by_peer=False)
            assert MALLORY.did in raised.value.reason
            outcome = await server.next_outcome()
    assert outcome.link is None
    error = assert_closed(outcome.error, "handshake_failed", by_peer=True)
    assert error.ws_code == 4000
    assert len(relay.messages("up")) == 1  # message 1 only: message 3 (ALICE's did) never left


async def test_a_malformed_expected_remote_is_the_callers_error(session: aiohttp.ClientSession) -> None:
    with pytest.raises(InvalidData) as raised:
        await dial_link(session, "http://127.0.0.1:9", ALICE, expected_remote="did:key:nope")
    assert raised.value.code == "bad_did"


# --- a relay in the middle ------------------------------------------------------------------------------------------


async def test_an_honest_relay_forwards_but_reads_nothing(session: aiohttp.ClientSession) -> None:
    server = LinkServer()
    async with serving(server.handle) as base:
        relay = Relay(session, base)
        async with serving(relay.handle) as relay_base:
            link = await dial_link(session, relay_base, ALICE, expected_remote=BOB.did)
            for i in range(20):
                await link.send(MARKER + str(i).encode())
                assert await link.receive(timeout=DEADLINE_S) == MARKER + str(i).encode()
            await link.close()
            outcome = await server.next_outcome()
    assert outcome.link is not None and outcome.link.remote_did == ALICE.did
    assert_closed(outcome.result, None, by_peer=True)
    assert len(relay.seen) == 3 + 2 * 20
    secrets = [MARKER, ALICE.did.encode(), BOB.did.encode(), ALICE.public_key, BOB.public_key]
    for _direction, data in relay.seen:
        assert not any(secret in data for secret in secrets)


@pytest.mark.parametrize("position", [0, -1])
async def test_a_flipped_byte_in_a_dialer_frame_fails_the_server_link(
        session: aiohttp.ClientSession, position: int) -> None:
    server = LinkServer()
    async with serving(server.handle) as base:
        relay = Relay(session, base, flip("up", 3, position))  # messages 1 and 3, frame 0, then frame 1
        async with serving(relay.handle) as relay_base:
            link = await dial_link(session, relay_base, ALICE)
            await link.send(b"first")
            assert await link.receive(timeout=DEADLINE_S) == b"first"
            await link.send(b"second")
            with pytest.raises(LinkClosed) as raised:
                await link.receive(timeout=DEADLINE_S)
            outcome = await server.next_outcome()
    assert_closed(outcome.result, "bad_frame", by_peer=False)
    assert_closed(raised.value, "bad_frame", by_peer=True)
    assert raised.value.ws_code == 4000
    assert outcome.link is not None and outcome.link.frames_in == 1


async def test_a_flipped_byte_in_a_server_frame_fails_the_dialer_link(session: aiohttp.ClientSession) -> None:
    server = LinkServer()
    async with serving(server.handle) as base:
        relay = Relay(session, base, flip("down", 1, 5))  # message 2, then the first frame
        async with serving(relay.handle) as relay_base:
            link = await dial_link(session, relay_base, ALICE)
            await link.send(b"hello")
            with pytest.raises(LinkClosed) as raised:
                await link.receive(timeout=DEADLINE_S)
            assert_closed(raised.value, "bad_frame", by_peer=False)
            assert link.closed
            with pytest.raises(LinkClosed):  # the link stays failed
                await link.send(b"more")
            outcome = await server.next_outcome()
    assert_closed(outcome.result, "bad_frame", by_peer=True)


@pytest.mark.parametrize(("direction", "index", "position"),
                         [("up", 0, 0), ("down", 0, 0), ("down", 0, 40), ("down", 0, -1), ("up", 1, 3), ("up", 1, -1)])
async def test_a_flipped_byte_in_a_handshake_message_fails_the_handshake(
        session: aiohttp.ClientSession, direction: str, index: int, position: int) -> None:
    server = LinkServer()
    async with serving(server.handle) as base:
        relay = Relay(session, base, flip(direction, index, position))
        async with serving(relay.handle) as relay_base:
            if (direction, index) == ("up", 1):
                # message 3 is the dialer's last word, so it learns from the server's close
                link = await dial_link(session, relay_base, ALICE)
                with pytest.raises(LinkClosed) as raised:
                    await link.receive(timeout=DEADLINE_S)
                assert_closed(raised.value, "handshake_failed", by_peer=True)
                outcome = await server.next_outcome()
                assert_closed(outcome.error, "handshake_failed", by_peer=False)
            else:
                with pytest.raises(LinkClosed) as raised:
                    await dial_link(session, relay_base, ALICE)
                assert_closed(raised.value, "handshake_failed", by_peer=False)
                outcome = await server.next_outcome()
                assert_closed(outcome.error, "handshake_failed", by_peer=True)
    assert outcome.link is None


async def test_a_replayed_handshake_fails(session: aiohttp.ClientSession) -> None:
    server = LinkServer()
    async with serving(server.handle) as base:
        relay = Relay(session, base)
        async with serving(relay.handle) as relay_base:
            link = await dial_link(session, relay_base, ALICE)
            await link.send(MARKER)
            assert await link.receive(timeout=DEADLINE_S) == MARKER
            await link.close()
            assert (await server.next_outcome()).link is not None
        msg1, msg3, *_ = relay.messages("up")

        # the relay, on its own, replays the recorded session to the server
        async with session.ws_connect(sync_url(base)) as ws:
            await ws.send_bytes(msg1)
            msg2 = await ws.receive(timeout=DEADLINE_S)
            assert msg2.type is WSMsgType.BINARY
            await ws.send_bytes(msg3)
            closing = await ws.receive(timeout=DEADLINE_S)
        outcome = await server.next_outcome()
    assert (closing.type, closing.data) == (WSMsgType.CLOSE, 4000)
    assert closing.extra is not None and closing.extra.startswith("handshake_failed: ")
    assert_closed(outcome.error, "handshake_failed", by_peer=False)


async def test_a_dropped_frame_fails_the_next_one(session: aiohttp.ClientSession) -> None:
    def drop_second_frame(direction: str, index: int, data: bytes) -> bytes | None:
        return None if (direction, index) == ("up", 3) else data

    server = LinkServer()
    async with serving(server.handle) as base:
        relay = Relay(session, base, drop_second_frame)
        async with serving(relay.handle) as relay_base:
            link = await dial_link(session, relay_base, ALICE)
            for frame in (b"one", b"two", b"three"):
                await link.send(frame)
            assert await link.receive(timeout=DEADLINE_S) == b"one"
            with pytest.raises(LinkClosed) as raised:
                await link.receive(timeout=DEADLINE_S)
            outcome = await server.next_outcome()
    assert_closed(raised.value, "bad_frame", by_peer=True)
    assert_closed(outcome.result, "bad_frame", by_peer=False)
    assert outcome.link is not None and outcome.link.frames_in == 1


@pytest.mark.parametrize(("injected", "code"), [("a text frame", "bad_frame"),
                                                (bytes(MAX_MESSAGE_BYTES + 1), "frame_too_large"),
                                                (bytes(15), "bad_frame")])
async def test_a_malformed_message_after_the_handshake_fails_the_link(
        session: aiohttp.ClientSession, injected: bytes | str, code: str) -> None:
    def replace_first_frame(direction: str, index: int, data: bytes) -> bytes | str:
        return injected if (direction, index) == ("up", 2) else data

    server = LinkServer()
    async with serving(server.handle) as base:
        relay = Relay(session, base, replace_first_frame)
        async with serving(relay.handle) as relay_base:
            link = await dial_link(session, relay_base, ALICE)
            await link.send(b"replaced")
            with pytest.raises(LinkClosed) as raised:
                await link.receive(timeout=DEADLINE_S)
            outcome = await server.next_outcome()
    assert_closed(outcome.result, code, by_peer=False)
    assert_closed(raised.value, code, by_peer=True)


# --- peers that do not speak the protocol ---------------------------------------------------------------------------


@pytest.mark.parametrize(("first", "code", "ws_code"), [
    ("hello", "handshake_failed", 4000),
    (b"", "handshake_failed", 4000),
    (bytes(31), "handshake_failed", 4000),
    (bytes(33), "handshake_failed", 4000),
    (bytes(MAX_MESSAGE_BYTES), "handshake_failed", 4000),  # at the size limit, so refused for its length
    (bytes(MAX_MESSAGE_BYTES + 1), "frame_too_large", 1009),
    (bytes(200_000), "frame_too_large", 1009),
])
async def test_a_peer_that_opens_with_garbage_is_closed_with_a_code(
        session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture,
        first: bytes | str, code: str, ws_code: int) -> None:
    server = LinkServer()
    caplog.set_level(logging.WARNING, logger="node.sync.links")
    async with serving(server.handle) as base, session.ws_connect(sync_url(base), max_msg_size=0) as ws:
        await (ws.send_str(first) if isinstance(first, str) else ws.send_bytes(first))
        closing = await ws.receive(timeout=DEADLINE_S)
        outcome = await server.next_outcome()
    assert (closing.type, closing.data) == (WSMsgType.CLOSE, ws_code)
    if ws_code == 4000:
        assert closing.extra is not None and closing.extra.startswith(f"{code}: ")
    error = assert_closed(outcome.error, code, by_peer=False)
    assert error.ws_code == 4000
    logged = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any(code in r.getMessage() and "127.0.0.1:" in r.getMessage() for r in logged)
    assert not any(BOB.seed.hex() in r.getMessage() for r in logged)


async def test_a_silent_peer_times_out(session: aiohttp.ClientSession) -> None:
    server = LinkServer(timeout=SHORT_S)
    async with serving(server.handle) as base, session.ws_connect(sync_url(base)) as ws:
        started = asyncio.get_running_loop().time()
        closing = await ws.receive(timeout=DEADLINE_S)
        elapsed = asyncio.get_running_loop().time() - started
        outcome = await server.next_outcome()
    assert (closing.type, closing.data) == (WSMsgType.CLOSE, 4000)
    assert closing.extra is not None and closing.extra.startswith("link_timeout: ")
    assert_closed(outcome.error, "link_timeout", by_peer=False)
    assert elapsed < DEADLINE_S / 2


async def test_a_peer_that_leaves_during_the_handshake(session: aiohttp.ClientSession) -> None:
    server = LinkServer()
    async with serving(server.handle) as base:
        async with session.ws_connect(sync_url(base)) as ws:
            await ws.close()
        outcome = await server.next_outcome()
    error = assert_closed(outcome.error, "handshake_failed", by_peer=True)
    assert error.ws_code == 1000


async def test_a_peer_that_stops_answering_pings_is_noticed(session: aiohttp.ClientSession) -> None:
    server = LinkServer(heartbeat=SHORT_S)
    handshake = Handshake.initiator(ALICE, bytes([7]) * 32, bytes([8]) * 32)
    async with serving(server.handle) as base, session.ws_connect(sync_url(base), autoping=False) as ws:
        await ws.send_bytes(handshake.write_message())
        msg2 = await ws.receive(timeout=DEADLINE_S)
        handshake.read_message(msg2.data)
        await ws.send_bytes(handshake.write_message())
        # ... and from now on reads nothing, so no pong ever answers the server's pings
        outcome = await server.next_outcome()
    assert outcome.link is not None
    assert_closed(outcome.result, "link_timeout", by_peer=False)


async def silent_server(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for _msg in ws:  # reads message 1 and everything after, never answers
        pass
    return ws


async def text_server(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.receive()
    await ws.send_str("hello")
    async for _msg in ws:
        pass
    return ws


async def test_a_silent_server_times_out_the_dial(session: aiohttp.ClientSession) -> None:
    async with serving(silent_server) as base:
        with pytest.raises(LinkClosed) as raised:
            await dial_link(session, base, ALICE, timeout=SHORT_S)
    assert_closed(raised.value, "link_timeout", by_peer=False)


async def test_a_server_answering_with_text_fails_the_dial(session: aiohttp.ClientSession) -> None:
    async with serving(text_server) as base:
        with pytest.raises(LinkClosed) as raised:
            await dial_link(session, base, ALICE)
    assert_closed(raised.value, "handshake_failed", by_peer=False)


async def test_an_unreachable_or_wrong_endpoint_fails_the_dial(session: aiohttp.ClientSession) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(LinkClosed) as raised:
        await dial_link(session, f"http://127.0.0.1:{port}", ALICE)
    assert_closed(raised.value, None, by_peer=True)

    app = web.Application()  # a web server without the sync route: 404
    runner = web.AppRunner(app)
    await runner.setup()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(runner, sock).start()
        try:
            with pytest.raises(LinkClosed) as raised:
                await dial_link(session, f"http://127.0.0.1:{sock.getsockname()[1]}", ALICE)
        finally:
            await runner.cleanup()
    assert_closed(raised.value, None, by_peer=True)
    assert "404" in raised.value.reason


# --- closing --------------------------------------------------------------------------------------------------------


async def test_close_with_a_code_reaches_the_peer(session: aiohttp.ClientSession) -> None:
    server = LinkServer()
    async with serving(server.handle) as base:
        link = await dial_link(session, base, ALICE)
        await link.close("unknown_ledger", "no ledger bafy… here")
        await link.close("bad_frame", "ignored: already closed")  # idempotent
        assert link.closed
        with pytest.raises(LinkClosed) as on_send:
            await link.send(b"late")
        with pytest.raises(LinkClosed) as on_receive:
            await link.receive()
        outcome = await server.next_outcome()
    for local in (on_send.value, on_receive.value):
        assert_closed(local, "unknown_ledger", by_peer=False)
    remote = assert_closed(outcome.result, "unknown_ledger", by_peer=True)
    assert (remote.reason, remote.ws_code) == ("no ledger bafy… here", 4000)
    assert str(remote) == "unknown_ledger: no ledger bafy… here"


@pytest.mark.parametrize(("going_away", "ws_code"), [(False, 1000), (True, 1001)])
async def test_a_normal_close_by_the_server_has_no_code(
        session: aiohttp.ClientSession, going_away: bool, ws_code: int) -> None:
    async def greet_and_close(link: SecureLink) -> object:
        await link.send(b"bye")
        await link.close(message="shutting down", going_away=going_away)
        return None

    server = LinkServer(greet_and_close)
    async with serving(server.handle) as base:
        link = await dial_link(session, base, ALICE)
        assert await link.receive(timeout=DEADLINE_S) == b"bye"
        with pytest.raises(LinkClosed) as raised:
            await link.receive(timeout=DEADLINE_S)
        await server.next_outcome()
    closed = assert_closed(raised.value, None, by_peer=True)
    assert (closed.ws_code, closed.reason) == (ws_code, "shutting down")


async def test_a_long_close_reason_is_cut_at_a_character(session: aiohttp.ClientSession) -> None:
    server = LinkServer()
    async with serving(server.handle) as base:
        link = await dial_link(session, base, ALICE)
        await link.close("bad_message", "é" * 200)
        outcome = await server.next_outcome()
    remote = assert_closed(outcome.result, "bad_message", by_peer=True)
    assert remote.reason and set(remote.reason) == {"é"}
    assert 121 <= len(f"bad_message: {remote.reason}".encode()) <= 123


async def test_close_from_another_task_ends_a_waiting_receive(session: aiohttp.ClientSession) -> None:
    async def wait_for_close(link: SecureLink) -> object:
        try:
            return await link.receive()
        except LinkClosed as exc:
            return exc

    server = LinkServer(wait_for_close)
    async with serving(server.handle) as base:
        link = await dial_link(session, base, ALICE)
        reader = asyncio.create_task(link.receive())
        await asyncio.sleep(0.05)
        await asyncio.wait_for(link.close(), DEADLINE_S)
        with pytest.raises(LinkClosed) as raised:
            await asyncio.wait_for(reader, DEADLINE_S)
        outcome = await server.next_outcome()
    assert_closed(raised.value, None, by_peer=False)
    assert_closed(outcome.result, None, by_peer=True)


async def test_a_receive_timeout_ends_the_link(session: aiohttp.ClientSession) -> None:
    server = LinkServer()
    async with serving(server.handle) as base:
        link = await dial_link(session, base, ALICE)
        with pytest.raises(LinkClosed) as raised:
            await link.receive(timeout=SHORT_S)
        outcome = await server.next_outcome()
    assert_closed(raised.value, "link_timeout", by_peer=False)
    assert_closed(outcome.result, "link_timeout", by_peer=True)


# --- URLs -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("base", "url"), [
    ("http://127.0.0.1:8080", "ws://127.0.0.1:8080/api/v1/sync"),
    ("http://127.0.0.1:8080/", "ws://127.0.0.1:8080/api/v1/sync"),
    ("https://node.example.org", "wss://node.example.org/api/v1/sync"),
    ("HTTPS://node.example.org/tally/", "wss://node.example.org/tally/api/v1/sync"),
    ("ws://[::1]:7000", "ws://[::1]:7000/api/v1/sync"),
    ("wss://node.example.org/api/v1/sync", "wss://node.example.org/api/v1/sync"),
    ("http://h:1/api/v1/sync/", "ws://h:1/api/v1/sync"),
    (" 192.168.1.5:8080 ", "ws://192.168.1.5:8080/api/v1/sync"),
])
def test_sync_url(base: str, url: str) -> None:
    assert sync_url(base) == url


@pytest.mark.parametrize("base", ["ftp://node.example.org", "http://", "http:///api/v1/sync"])
def test_sync_url_refuses(base: str) -> None:
    with pytest.raises(ValueError):
        sync_url(base)


def test_the_websocket_limit_admits_exactly_one_noise_message() -> None:
    assert WS_MAX_MSG_SIZE == MAX_MESSAGE_BYTES + 1  # aiohttp refuses messages of max_msg_size bytes or more
