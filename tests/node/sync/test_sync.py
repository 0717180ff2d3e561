"""Replication between in-process nodes over real loopback sockets (node/sync/replication.py).

Each node is a real SQLite store, a real Replicator and an aiohttp server with the
sync endpoint on 127.0.0.1; links are real encrypted WebSockets. Hostile peers are
written here: they dial with their own key and send frames an honest node never sends.
Deadlines are generous (machines are shared); every wait polls and ends as soon as
the condition holds. The fork and safe-restore scenarios, which need `tally` itself,
are in test_sync_processes.py; writes without the API token are refused in
test_api.py::test_writes_need_the_token.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from node.store.store import Store, wall_clock_ms
from node.sync import gate, replication
from node.sync.gate import MAX_LINKS_PER_ADDRESS
from node.sync.links import SYNC_PATH, LinkClosed, SecureLink, dial_link, sync_url
from node.sync.replication import PeerInfo, Replicator
from node.views import entry_row
from protocol import CID, GENESIS_KIND, Entry, Handshake, SigningKey, create_entry, dagcbor
from protocol.fork import ForkProof
from protocol.handshake import KEY_BYTES, MAX_MESSAGE_BYTES
from protocol.ledger_ops import admit
from protocol.requests import LedgerCreate
from protocol.sync import (
    WANT_MAX,
    Ents,
    Err,
    Fork,
    Level,
    Message,
    Sent,
    Sub,
    Want,
    decode_message,
    encode_message,
    frontier_digest,
)
from protocol.sync_engine import MAX_FRONT_HEADS, MAX_NAMED_LEDGERS, PEER_WANTS_QUEUED, REQUEST_BURST, REQUEST_RATE
from protocol.writes import AppendRequest, genesis_body

DEADLINE_S = 30.0  # generous: every wait below normally ends well within a second or two
MALLORY = SigningKey(bytes([66]) * 32)


def key_for(name: str) -> SigningKey:
    return SigningKey(name.encode().ljust(32, b"."))


# --- in-process nodes -------------------------------------------------------------------------------------------------


@dataclass
class Node:
    name: str
    key: SigningKey
    store: Store
    replicator: Replicator
    runner: web.AppRunner
    url: str
    stopped: bool = False

    @property
    def did(self) -> str:
        return self.key.did

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        await self.replicator.stop()
        await self.runner.cleanup()
        await self.store.close()

    async def create_ledger(self, name: str = "Coop", visibility: str = "public") -> CID:
        entry = await self.store.append(AppendRequest(None, GENESIS_KIND, genesis_body(name, visibility),
                                                      wall_clock_ms()))
        return entry.id

    async def append(self, ledger: CID, count: int = 1, tag: str = "") -> list[Entry]:
        now = wall_clock_ms()
        requests = [AppendRequest(ledger, "note.text", {"by": self.name, "i": i, "tag": tag}, now)
                    for i in range(count)]
        return await self.store.append_batch(requests)

    async def follow(self, ledger: CID) -> None:
        await self.store.follow(ledger)
        await self.replicator.follow(ledger)

    async def count(self, ledger: CID) -> int:
        return len(await self.rows(ledger))

    async def rows(self, ledger: CID, author: bytes | None = None) -> list[str]:
        """The ledger as `tally log --json` prints it: one JSON line per entry, by author then seq."""
        async with contextlib.aclosing(self.store.log(ledger, author)) as entries:
            return [json.dumps(entry_row(e), separators=(",", ":")) async for e in entries]

    def peer(self, did: str) -> PeerInfo:
        found = [p for p in self.replicator.peers() if p.did == did]
        assert len(found) == 1, (self.name, did, self.replicator.peers())
        return found[0]


NodeFactory = Callable[..., Awaitable[Node]]


@pytest.fixture
async def make_node(tmp_path: Path) -> AsyncIterator[NodeFactory]:
    """`await make_node("a", peers=[url…], offline=True)`: a started node on a free loopback port."""
    made: list[Node] = []

    async def make(name: str, *, peers: tuple[str, ...] = (), offline: bool = True) -> Node:
        key = key_for(name)
        store = await Store.open(tmp_path / f"{name}.sqlite3", key=key)
        replicator = Replicator(store, key, peers=peers, offline=offline)
        app = web.Application()
        app.router.add_get(SYNC_PATH, replicator.handle_sync)
        runner = web.AppRunner(app, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        node = Node(name, key, store, replicator, runner, f"http://127.0.0.1:{runner.addresses[0][1]}")
        made.append(node)
        await replicator.start()
        return node

    try:
        yield make
    finally:
        for node in reversed(made):
            await node.stop()


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = DEADLINE_S) -> float:
    """Poll `check` until it holds; the seconds it took. Fails after `timeout`."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def converged(nodes: list[Node], ledger: CID, count: int) -> None:
    """Wait until every node holds the same `count` entries of `ledger` (the same `tally log --json`)."""
    rows: list[list[str]] = []

    async def same() -> bool:
        rows[:] = [await n.rows(ledger) for n in nodes]
        return all(len(r) == count for r in rows) and all(r == rows[0] for r in rows)

    try:
        await until(same, f"the same {count} entries on every node")
    except AssertionError as exc:
        counts = {n.name: len(r) for n, r in zip(nodes, rows, strict=True)}
        raise AssertionError(f"{exc}; counts {counts}") from None


async def _level(info: PeerInfo) -> bool:
    """The peer has been level with us on every ledger both replicate."""
    return info.last_sync is not None


async def connect(dialer: Node, target: Node) -> None:
    dialer.replicator.add_peer(target.url, "config")

    async def linked() -> bool:
        return any(p.connected and p.did == target.did for p in dialer.replicator.peers())

    await until(linked, f"{dialer.name} linked to {target.name}")


# --- convergence ------------------------------------------------------------------------------------------------------


async def test_two_nodes_converge_both_ways(make_node: NodeFactory) -> None:
    a, b = await make_node("a"), await make_node("b")
    ledger = await a.create_ledger()
    await a.append(ledger, 20)
    await b.follow(ledger)
    await connect(b, a)
    await converged([a, b], ledger, 21)

    await asyncio.gather(a.append(ledger, 30, "live"), b.append(ledger, 25, "live"))  # both write at once
    await converged([a, b], ledger, 21 + 30 + 25)
    assert len(await a.rows(ledger, b.key.public_key)) == 25
    assert b.peer(a.did).entries_in == 20 + 1 + 30 and b.peer(a.did).entries_out == 25
    assert a.peer(b.did).entries_in == 25 and a.peer(b.did).entries_out == 20 + 1 + 30
    assert b.peer(a.did).errors == [] and a.peer(b.did).errors == []
    assert await a.store.forks() == [] and await b.store.forks() == []


async def test_three_nodes_converge_each_writing(make_node: NodeFactory) -> None:
    a, b, c = await make_node("a"), await make_node("b"), await make_node("c")
    ledger = await a.create_ledger()
    await a.append(ledger, 10)
    for n in (b, c):
        await n.follow(ledger)
    # a full mesh: every pair is linked once (b → a, c → a, c → b)
    await connect(b, a)
    await connect(c, a)
    await connect(c, b)
    await converged([a, b, c], ledger, 11)

    for round_ in range(3):  # every node writes, at the same time, several rounds
        await asyncio.gather(*(n.append(ledger, 7, f"r{round_}") for n in (a, b, c)))
    await converged([a, b, c], ledger, 11 + 3 * 3 * 7)
    for n in (a, b, c):
        for author in (a, b, c):
            chain = await n.rows(ledger, author.key.public_key)
            assert len(chain) == (11 if author is a else 0) + 21, (n.name, author.name)
        assert await n.store.forks() == []
    # nothing travels twice: each node received each entry it lacked once, over all its links
    for n in (a, b, c):
        received = sum(p.entries_in for p in n.replicator.peers())
        assert received == await n.count(ledger) - (11 + 21 if n is a else 21), n.name


async def test_following_a_ledger_while_linked_fetches_it(make_node: NodeFactory) -> None:
    # b follows after the link is up, when a's `sub` naming the ledger was already ignored by b
    a, b = await make_node("a"), await make_node("b")
    ledger = await a.create_ledger()
    await a.append(ledger, 6)
    await connect(b, a)

    async def subs_exchanged() -> bool:  # a link's first message each way is its opening `sub`, and a peer's
        # bytes_in count from the first message read after the handshake
        return all(any(p.did == there.did and p.bytes_in > 0 for p in here.replicator.peers())
                   for here, there in ((a, b), (b, a)))

    await until(subs_exchanged, "both opening `sub`s received (a's names the ledger; b does not follow it yet)")
    await b.follow(ledger)
    await converged([a, b], ledger, 7)
    await b.append(ledger, 2, "b writes back")
    await converged([a, b], ledger, 9)
    later = await a.create_ledger("Later")  # founded while linked, followed while linked
    await b.follow(later)
    await converged([a, b], later, 1)


async def test_a_middle_node_relays_between_two_that_never_meet(make_node: NodeFactory) -> None:
    a, b, c = await make_node("a"), await make_node("b"), await make_node("c")
    ledger = await a.create_ledger()
    await a.append(ledger, 5)
    await b.follow(ledger)
    await c.follow(ledger)
    await connect(a, b)  # a — b — c: a and c are linked to b only
    await connect(c, b)
    await converged([a, b, c], ledger, 6)

    await a.append(ledger, 12, "from a")
    await c.append(ledger, 9, "from c")
    await converged([a, b, c], ledger, 6 + 12 + 9)
    assert len(await a.rows(ledger, c.key.public_key)) == 9
    assert len(await c.rows(ledger, a.key.public_key)) == 6 + 12
    assert [p.did for p in a.replicator.peers()] == [b.did]
    assert [p.did for p in c.replicator.peers()] == [b.did]


async def test_live_push_reaches_a_connected_peer_quickly(
        make_node: NodeFactory, record_property: Callable[[str, object], None]) -> None:
    a, b = await make_node("a"), await make_node("b")
    ledger = await a.create_ledger()
    await b.follow(ledger)
    await connect(b, a)
    await converged([a, b], ledger, 1)
    await until(lambda: _level(b.peer(a.did)), "b level with a")

    latencies = []
    for i, (writer, reader) in enumerate([(a, b), (b, a), (a, b), (b, a)]):
        started = time.monotonic()
        [entry] = await writer.append(ledger, 1, f"push {i}")

        async def arrived(reader: Node = reader, entry: Entry = entry) -> bool:
            return await reader.store.get(entry.id) is not None

        await until(arrived, f"entry {i} from {writer.name} on {reader.name}", timeout=10.0)
        latencies.append(time.monotonic() - started)
    record_property("push_latency_s", [round(s, 4) for s in latencies])
    print(f"live push latencies (s): {', '.join(f'{s:.4f}' for s in latencies)}")
    # each arrived once, on the link that was already up
    assert b.peer(a.did).entries_in == 1 + 2 and a.peer(b.did).entries_in == 2
    assert b.peer(a.did).errors == [] and a.peer(b.did).errors == []


async def test_a_members_only_ledger_is_not_served_to_another_identity(
        make_node: NodeFactory, caplog: pytest.LogCaptureFixture) -> None:
    a, b = await make_node("a"), await make_node("b")
    secret = await a.create_ledger("Members", "members")
    secret_ids = [str(e.id) for e in await a.append(secret, 5, "secret")]
    public = await a.create_ledger("Open", "public")
    await a.append(public, 3)
    await b.follow(secret)  # b knows the id (it leaked, or was guessed) and asks for it
    await b.follow(public)
    await connect(b, a)
    await converged([a, b], public, 4)  # the link works: the public ledger arrives…
    await until(lambda: _level(b.peer(a.did)), "b level with a")
    await a.append(secret, 2, "later")  # …and neither old nor live entries of the members-only one do
    await a.append(public, 1, "marker")
    await converged([a, b], public, 5)

    assert await b.count(secret) == 0 and await b.store.genesis(secret) is None
    assert a.peer(b.did).entries_out == 5
    logged = "\n".join(r.getMessage() for r in caplog.records)  # both nodes' logs: a never names them either
    assert not any(i in logged for i in secret_ids)

    # a peer that asks outright (a `want` for the founder's chain, a `sub` naming the ledger) gets nothing either
    async with aiohttp.ClientSession() as session:
        link = await dial_link(session, a.url, MALLORY)
        await link.send(encode_message(Sub(((secret, frontier_digest({})),))))
        await link.send(encode_message(Want(secret, a.key.public_key, 1, WANT_MAX)))
        answers = await read_until(link, lambda m: isinstance(m, Sent))
        await link.close()
    assert not any(isinstance(m, Ents) for m in answers), answers
    assert answers[-1] == Sent(secret, a.key.public_key, 0)
    assert all(secret not in [ledger for ledger, _ in m.ledgers] for m in answers if isinstance(m, Sub))


# --- a link cut mid-stream ------------------------------------------------------------------------------------------


class CuttingRelay:
    """A WebSocket proxy in front of a node: it forwards every message both ways, counts what
    goes down to the dialer, and cuts its first connection (both sides, close 1001, as when a
    Wi-Fi link drops) once `cut_after` bytes went down. Later connections pass untouched."""

    def __init__(self, session: aiohttp.ClientSession, upstream: str, cut_after: int) -> None:
        self.session = session
        self.upstream = upstream
        self.cut_after = cut_after
        self.down_bytes = 0  # all connections
        self.connections = 0
        self.cut = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.connections += 1
        cutting = self.connections == 1
        down = web.WebSocketResponse(max_msg_size=0)
        await down.prepare(request)
        async with self.session.ws_connect(sync_url(self.upstream), max_msg_size=0) as up:
            ends = (down, up)
            await asyncio.gather(self._pump(down, up, ends, towards_dialer=False, cutting=False),
                                 self._pump(up, down, ends, towards_dialer=True, cutting=cutting))
        return down

    async def _pump(self, source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
                    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
                    ends: tuple[web.WebSocketResponse, aiohttp.ClientWebSocketResponse], *,
                    towards_dialer: bool, cutting: bool) -> None:
        while True:
            msg = await source.receive()
            if msg.type is not WSMsgType.BINARY:
                with contextlib.suppress(ConnectionError):
                    await sink.close(code=msg.data if msg.type is WSMsgType.CLOSE else 1001)
                return
            with contextlib.suppress(ConnectionError):
                await sink.send_bytes(msg.data)
            if towards_dialer:
                self.down_bytes += len(msg.data)
            if cutting and self.down_bytes >= self.cut_after:
                self.cut.set()
                for ws in ends:
                    with contextlib.suppress(ConnectionError):
                        await ws.close(code=1001, message=b"relay: link cut")
                return


@asynccontextmanager
async def serving(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get(SYNC_PATH, handler)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


CHAIN = 5000


async def test_a_cut_link_resumes_where_it_stopped(
        make_node: NodeFactory, record_property: Callable[[str, object], None]) -> None:
    server, fetcher = await make_node("server"), await make_node("fetcher")
    ledger = await server.create_ledger()
    for _ in range(CHAIN // 1000):
        await server.append(ledger, 1000, "bulk")
    total = CHAIN + 1
    chain_bytes = sum(len(h) + len(p or b"") for _, h, p in await server.store.raw_range(
        ledger, server.key.public_key, 1, total))
    await fetcher.follow(ledger)
    async with aiohttp.ClientSession() as session:
        relay = CuttingRelay(session, server.url, cut_after=chain_bytes * 2 // 5)
        async with serving(relay.handle) as relay_url:
            fetcher.replicator.add_peer(relay_url, "config")
            await asyncio.wait_for(relay.cut.wait(), DEADLINE_S)

            async def link_down() -> bool:
                return all(not p.connected for p in fetcher.replicator.peers() + server.replicator.peers())

            await until(link_down, "both ends saw the cut")
            had = await fetcher.count(ledger)
            sent_before = server.peer(fetcher.did).entries_out
            bytes_before = relay.down_bytes
            await converged([server, fetcher], ledger, total)  # it dials again by itself and completes
    out = server.peer(fetcher.did).entries_out
    received = fetcher.peer(server.did).entries_in
    summary = {"chain": total, "stored_at_cut": had, "sent_before_cut": sent_before, "sent_in_all": out,
               "stored_in_all": received, "relay_bytes": relay.down_bytes, "bytes_before_cut": bytes_before,
               "chain_bytes": chain_bytes, "connections": relay.connections}
    record_property("resume", summary)
    print(f"cut and resume: {summary}")
    assert 0 < had < total, summary  # the cut came mid-way
    assert relay.connections == 2 and received == total
    # the second link sent only what the fetcher lacked: nothing it had is ever sent again
    assert out - sent_before == total - had, summary
    # and, over both links, about the chain once (not 1.5 times): bytes included
    assert out <= total * 1.1, summary
    assert relay.down_bytes <= chain_bytes * 1.2, summary


# --- hostile and broken peers -----------------------------------------------------------------------------------------


async def read_until(link: SecureLink, stop: Callable[[Message], bool]) -> list[Message]:
    """Messages from the link up to and including the first that satisfies `stop`."""
    seen: list[Message] = []
    async with asyncio.timeout(DEADLINE_S):
        while True:
            message = decode_message(await link.receive())
            seen.append(message)
            if stop(message):
                return seen


async def closed_with(link: SecureLink) -> tuple[LinkClosed, list[Message]]:
    """Read until the peer ends the link: how it ended, and what it sent before."""
    seen: list[Message] = []
    async with asyncio.timeout(DEADLINE_S):
        while True:
            try:
                frame = await link.receive()
            except LinkClosed as exc:
                return exc, seen
            seen.append(decode_message(frame))


async def linked_pair(make_node: NodeFactory, entries: int) -> tuple[Node, Node, CID]:
    """`h` founds a public ledger and appends `entries`, `g` follows it and dials `h`: once both hold it, (h, g, it)."""
    h, g = await make_node("h"), await make_node("g")
    ledger = await h.create_ledger()
    await h.append(ledger, entries)
    await g.follow(ledger)
    await connect(g, h)
    await converged([h, g], ledger, entries + 1)
    return h, g, ledger


@dataclass
class Attack:
    """An honest node `h` with a public ledger, an honest peer `g` linked to it and writing
    while the attack runs, and what is needed to check both keep syncing."""

    h: Node
    g: Node
    ledger: CID
    session: aiohttp.ClientSession
    writes: int = 0
    writer: asyncio.Task[None] | None = field(default=None, repr=False)

    async def _write(self) -> None:
        while True:
            await asyncio.gather(self.h.append(self.ledger, 2, "during"), self.g.append(self.ledger, 1, "during"))
            self.writes += 3
            await asyncio.sleep(0.01)

    async def _wrote(self) -> bool:
        return self.writes > 0

    def start_writing(self) -> None:
        self.writer = asyncio.create_task(self._write())

    async def finish(self, code: str) -> None:
        """Stop writing; the honest pair converges, was never cut, and `h` recorded `code` for MALLORY."""
        assert self.writer is not None
        await until(self._wrote, "the honest pair writes during the attack")
        assert not self.writer.done(), self.writer
        self.writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.writer
        assert self.writes > 0
        await self.h.append(self.ledger, 1, "after")
        await self.g.append(self.ledger, 1, "after")
        # each node's own chain is what it wrote; together they are the whole ledger
        total = len(await self.h.rows(self.ledger, self.h.key.public_key)) + len(
            await self.g.rows(self.ledger, self.g.key.public_key))
        assert total >= 1 + 10 + self.writes + 2
        await converged([self.h, self.g], self.ledger, total)
        assert self.g.peer(self.h.did).connected and self.g.peer(self.h.did).errors == []
        assert self.h.peer(self.g.did).connected and self.h.peer(self.g.did).errors == []
        evil = self.h.peer(MALLORY.did)
        assert evil.errors and evil.errors[-1].startswith(f"{code}: "), evil.errors
        assert await self.h.rows(self.ledger, MALLORY.public_key) == []

    async def assert_banned(self) -> None:
        """A reconnect within the ban: the handshake completes, then the link is refused."""

        async def gone() -> bool:
            return not self.h.peer(MALLORY.did).connected

        await until(gone, "the hostile link is over on the honest node")
        link = await dial_link(self.session, self.h.url, MALLORY)
        closed, seen = await closed_with(link)
        assert (closed.code, closed.by_peer, seen) == ("forbidden", True, []), closed


@pytest.fixture
async def attack(make_node: NodeFactory) -> AsyncIterator[Attack]:
    h, g, ledger = await linked_pair(make_node, 10)
    async with aiohttp.ClientSession() as session:
        a = Attack(h, g, ledger, session)
        a.start_writing()
        try:
            yield a
        finally:
            if a.writer is not None:
                a.writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await a.writer


@pytest.mark.parametrize(("frame", "codes"), [
    (b"\xff\x00 garbage, not DAG-CBOR at all", {"bad_encoding"}),
    (b"", {"bad_encoding"}),
    (bytes(60_000), {"bad_encoding"}),
    (dagcbor.encode([1, 2, 3]), {"bad_message"}),  # DAG-CBOR, but no message
    (dagcbor.encode({"t": "want", "ledger": 1}), {"bad_message"}),
    (dagcbor.encode({"t": "sub", "ledgers": [], "extra": 1}), {"bad_message"}),
])
async def test_garbage_frames_close_the_link_and_ban_the_peer(attack: Attack, frame: bytes, codes: set[str]) -> None:
    link = await dial_link(attack.session, attack.h.url, MALLORY)
    await link.send(frame)
    closed, _ = await closed_with(link)
    assert closed.code in codes and closed.by_peer, closed
    assert closed.ws_code == 4000
    await attack.assert_banned()
    await attack.finish(closed.code)


def _tampered(entry: Entry) -> bytes:
    """The entry's header with one byte of its signature flipped (still canonical DAG-CBOR)."""
    at = entry.header_raw.index(entry.header.sig) + 10
    header = bytearray(entry.header_raw)
    header[at] ^= 0x01
    return bytes(header)


async def test_an_entry_with_a_bad_signature_closes_the_link_and_nothing_is_stored(attack: Attack) -> None:
    ledger, h = attack.ledger, attack.h
    link = await dial_link(attack.session, h.url, MALLORY)
    await link.send(encode_message(Sub(((ledger, frontier_digest({})),))))
    await read_until(link, lambda m: isinstance(m, Sub))
    first = create_entry(MALLORY, ledger=ledger, seq=1, prev=None, ts=wall_clock_ms(), kind="note.text",
                         body={"valid": True})
    second = create_entry(MALLORY, ledger=ledger, seq=2, prev=first.id, ts=wall_clock_ms(), kind="note.text",
                          body={"forged": True})
    bad = (_tampered(second), second.payload_raw)
    await link.send(encode_message(Ents(ledger, MALLORY.public_key, ((first.header_raw, first.payload_raw), bad))))
    closed, _ = await closed_with(link)
    assert (closed.code, closed.by_peer, closed.ws_code) == ("bad_signature", True, 4000), closed
    # nothing of that message: not the forged entry, not even the valid one beside it
    assert await h.store.get(first.id) is None and await h.store.get(second.id) is None
    await attack.assert_banned()
    await attack.finish("bad_signature")
    assert await attack.g.rows(ledger, MALLORY.public_key) == []


async def test_an_oversize_frame_closes_the_link_and_bans_the_peer(attack: Attack) -> None:
    # SecureLink refuses to send a frame this large, so this peer runs the handshake itself
    # (protocol.Handshake over a raw WebSocket) and then sends one WebSocket message too many bytes long.
    async with attack.session.ws_connect(sync_url(attack.h.url), max_msg_size=0) as ws:
        handshake = Handshake.initiator(MALLORY, bytes([7]) * KEY_BYTES, bytes([8]) * KEY_BYTES, attack.h.did)
        while not handshake.complete:
            if handshake.wants_write:
                await ws.send_bytes(handshake.write_message())
            else:
                msg = await ws.receive(timeout=DEADLINE_S)
                assert msg.type is WSMsgType.BINARY, msg
                handshake.read_message(msg.data)
        transport = handshake.transport()
        await ws.send_bytes(transport.encrypt(encode_message(Sub(()))))  # a valid first frame
        await ws.send_bytes(bytes(MAX_MESSAGE_BYTES + 1))
        while True:
            msg = await ws.receive(timeout=DEADLINE_S)
            if msg.type is not WSMsgType.BINARY:
                break
    assert msg.type is WSMsgType.CLOSE, msg
    assert msg.data == 1009 or (msg.data == 4000 and msg.extra.startswith("frame_too_large: ")), msg
    await attack.assert_banned()
    await attack.finish("frame_too_large")


@pytest.mark.parametrize("kind", ["want", "sub", "mixed"])
async def test_a_flood_of_requests_is_rate_limited(attack: Attack, kind: str) -> None:
    ledger, h = attack.ledger, attack.h
    link = await dial_link(attack.session, h.url, MALLORY)
    requests = {
        "want": [encode_message(Want(ledger, h.key.public_key, 1 + i % 5, 1)) for i in range(5000)],
        "sub": [encode_message(Sub(((ledger, bytes([i % 256]) * 32),))) for i in range(5000)],
    }
    requests["mixed"] = [m for pair in zip(requests["want"], requests["sub"], strict=True) for m in pair]
    reading = asyncio.create_task(closed_with(link))
    sent = 0
    with contextlib.suppress(LinkClosed):
        for frame in requests[kind]:
            await link.send(frame)
            sent += 1
    closed, seen = await reading
    assert closed.code == "rate_limited" and closed.by_peer, (closed, sent)
    assert isinstance(seen[-1], Err) and seen[-1].code == "rate_limited", seen[-3:]
    await attack.assert_banned()
    await attack.finish("rate_limited")


async def test_an_unknown_message_type_is_ignored_not_punished(attack: Attack) -> None:
    # A newer peer may send types this node does not know: skipped, the link goes on.
    link = await dial_link(attack.session, attack.h.url, MALLORY)
    await link.send(dagcbor.encode({"t": "gossip-v2", "anything": [1, 2]}))
    await link.send(encode_message(Want(attack.ledger, attack.h.key.public_key, 1, 3)))
    answers = await read_until(link, lambda m: isinstance(m, Sent))
    assert [len(m.entries) for m in answers if isinstance(m, Ents)] == [3]
    assert answers[-1] == Sent(attack.ledger, attack.h.key.public_key, 3)
    await link.close()
    assert attack.h.peer(MALLORY.did).errors == []


async def test_a_link_that_arrives_while_the_node_stops_is_closed_at_once(make_node: NodeFactory) -> None:
    # Regression: a peer's handshake that ended after stop() had closed every link kept `tally run`
    # alive after SIGTERM until the server's shutdown timeout (test_keys_nodes saw 30 s).
    h = await make_node("h")
    await h.replicator.stop()  # the listener is still up, as it is for a connection already accepted
    async with aiohttp.ClientSession() as session:
        link = await dial_link(session, h.url, fresh(1))
        closed, _ = await closed_with(link)  # without the fix the link stays up and this times out
    assert closed.by_peer and "shutting down" in closed.reason, closed
    assert not any(p.connected for p in h.replicator.peers())


# --- caps on links and on what dialled-in identities leave behind --------------------------------------------------


def fresh(i: int) -> SigningKey:
    return SigningKey(bytes([200 - i % 100]) * 31 + bytes([i // 100]))


async def test_links_beyond_the_per_address_cap_are_refused(attack: Attack) -> None:
    h = attack.h
    held = [await dial_link(attack.session, h.url, fresh(i)) for i in range(MAX_LINKS_PER_ADDRESS - 1)]  # g is one
    extra = await dial_link(attack.session, h.url, fresh(99))
    closed, _ = await closed_with(extra)
    assert (closed.code, closed.by_peer) == ("rate_limited", True), closed
    for link in held:
        await link.close()
    assert h.peer(attack.g.did).connected and h.peer(attack.g.did).errors == []  # the honest link is untouched


async def test_inbound_links_beyond_the_node_cap_are_refused_before_the_handshake(
    make_node: NodeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SPEC §13.9: at most MAX_LINKS inbound links at once, all addresses together (here 10, from three
    addresses within their share); one more is refused with HTTP 503 before any handshake, and once a link
    ends a new one is let in."""
    monkeypatch.setattr(gate, "MAX_LINKS", 10)
    h = await make_node("h")
    async with contextlib.AsyncExitStack() as stack:
        sessions = [await stack.enter_async_context(aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=(f"127.0.0.{2 + i}", 0)))) for i in range(3)]
        held = [await dial_link(sessions[i % 2], h.url, fresh(i)) for i in range(10)]
        with pytest.raises(LinkClosed, match="503"):
            await dial_link(sessions[2], h.url, fresh(50))
        await held.pop().close()

        async def room() -> bool:
            return sum(p.connected for p in h.replicator.peers()) < 10

        await until(room, "the closed link to be over on h")
        extra = await dial_link(sessions[2], h.url, fresh(51))
        async with asyncio.timeout(DEADLINE_S):
            assert isinstance(decode_message(await extra.receive()), Sub)  # its session runs
        for link in [*held, extra]:
            await link.close()


async def test_a_misbehaving_address_is_slowed_whatever_key_it_uses(attack: Attack) -> None:
    h = attack.h
    link = await dial_link(attack.session, h.url, MALLORY)
    await link.send(encode_message(Sent(attack.ledger, h.key.public_key, 3)))  # no want was made
    closed, _ = await closed_with(link)
    assert closed.code == "protocol_error", closed
    again = await dial_link(attack.session, h.url, fresh(1))  # a fresh key from the same address
    closed, _ = await closed_with(again)
    assert (closed.code, closed.by_peer) == ("forbidden", True), closed
    await attack.finish("protocol_error")  # the honest peer keeps its link and syncs on


@pytest.mark.parametrize("found", ["config", "mdns"])
async def test_a_given_peer_is_not_locked_out_by_its_address(make_node: NodeFactory, found: str) -> None:
    """SPEC §13.9: a peer this node dials itself (configured, or found by mDNS) is known by its did, so
    neither the per-address link cap nor an address ban applies to it, though hostile keys share its
    address (here all of them dial from 127.0.0.1, like a LAN neighbour or a reverse proxy would)."""
    h, p = await make_node("h"), await make_node("p")
    ledger = await h.create_ledger()
    h.replicator.add_peer(p.url, found, p.did if found == "mdns" else None)  # h dials p and so learns p's did

    async def linked() -> bool:
        return any(i.did == p.did and i.connected for i in h.replicator.peers())

    await until(linked, "h linked to its given peer")
    await p.stop()  # p goes down; when it is back it dials h from the shared address

    async def unlinked() -> bool:
        return not h.peer(p.did).connected

    await until(unlinked, "h saw its given peer go")

    async def dial_in_as_p(session: aiohttp.ClientSession) -> None:
        link = await dial_link(session, h.url, p.key)
        async with asyncio.timeout(DEADLINE_S):
            first = decode_message(await link.receive())  # the session runs: h's opening sub, not a refusal
        assert isinstance(first, Sub) and [item[0] for item in first.ledgers] == [ledger], first
        await link.close()

        async def over() -> bool:
            return not h.peer(p.did).connected

        await until(over, "the given peer's link is over on h")

    async with aiohttp.ClientSession() as session:
        # The address holds as many links as it may: a fresh key is refused, the given peer is not.
        held = [await dial_link(session, h.url, fresh(i)) for i in range(MAX_LINKS_PER_ADDRESS)]
        extra = await dial_link(session, h.url, fresh(99))
        closed, _ = await closed_with(extra)
        assert (closed.code, closed.by_peer) == ("rate_limited", True), closed
        await dial_in_as_p(session)
        for link in held:
            await link.close()

        # A key misbehaves from the address: the address is banned, fresh keys are refused, the given peer is not.
        evil = await dial_link(session, h.url, MALLORY)
        await evil.send(encode_message(Sent(ledger, h.key.public_key, 3)))  # no want was made
        closed, _ = await closed_with(evil)
        assert closed.code == "protocol_error", closed
        again = await dial_link(session, h.url, fresh(1))
        closed, _ = await closed_with(again)
        assert (closed.code, closed.by_peer) == ("forbidden", True), closed
        await dial_in_as_p(session)


async def test_the_peer_table_keeps_a_bounded_number_of_dialled_in_identities(
    attack: Attack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replication, "MAX_DIALED_IN", 5)
    h = attack.h
    for i in range(12):
        link = await dial_link(attack.session, h.url, fresh(i))
        await link.close()

    async def settled() -> bool:
        return not any(p.connected for p in h.replicator.peers() if p.found == "inbound" and p.did != attack.g.did)

    await until(settled, "the dialled-in links are over")
    inbound = [p for p in h.replicator.peers() if p.found == "inbound"]
    assert len(inbound) <= 5 and any(p.did == attack.g.did for p in h.replicator.peers())


async def test_a_flood_of_err_messages_writes_one_log_line_and_ends_rate_limited(
    attack: Attack, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 13: 50,000 `err` wrote 58 MB of log in 8 s. A received `err` is logged once per link (cut to 200
    characters) and charged like a request (SPEC §13.7, §13.9): a flood of long ones is one short line, then
    `rate_limited`."""
    link = await dial_link(attack.session, attack.h.url, MALLORY)
    reading = asyncio.create_task(closed_with(link))
    with contextlib.suppress(LinkClosed):
        for i in range(2000):
            await link.send(encode_message(Err("bad_message", f"{i} " + "x" * 1000)))
    closed, _ = await reading
    assert (closed.code, closed.by_peer) == ("rate_limited", True), closed
    lines = [r.getMessage() for r in caplog.records if "peer reported error" in r.getMessage()]
    assert len(lines) == 1 and len(lines[0]) < 400, lines
    await attack.finish("rate_limited")


async def test_a_member_that_only_dialled_in_keeps_its_peer_table_row(
    make_node: NodeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SPEC §13.9: the rows of identities that only dialled in are capped, the idle longest forgotten first, but
    not a member's of a members-only ledger this node replicates: fresh keys cannot push it out."""
    monkeypatch.setattr(replication, "MAX_DIALED_IN", 5)
    h, m = await make_node("h"), await make_node("m")
    ledger = (await h.store.append(LedgerCreate(name="Members").build(h.did, wall_clock_ms()))).id
    state = await h.replicator.states.get(ledger)
    assert state is not None
    await h.store.append(admit(state, h.did, m.did, wall_clock_ms()))
    await m.follow(ledger)
    await connect(m, h)
    await converged([h, m], ledger, 2)  # m was let see the ledger: h knows it for a member
    await m.stop()

    async def gone() -> bool:
        return not h.peer(m.did).connected

    await until(gone, "m's link is over on h")
    async with aiohttp.ClientSession() as session:
        for i in range(12):  # the fresh keys come after m: m is the idle longest
            link = await dial_link(session, h.url, fresh(i))
            await link.close()

    async def settled() -> bool:
        return not any(p.connected for p in h.replicator.peers())

    await until(settled, "the dialled-in links are over")
    inbound = [p for p in h.replicator.peers() if p.found == "inbound"]
    assert any(p.did == m.did for p in inbound), inbound
    assert len([p for p in inbound if p.did != m.did]) <= 5 - 1, inbound


async def test_every_push_arrives_after_a_one_shot_sync_and_a_peer_link_overlap(make_node: NodeFactory) -> None:
    """Issue 13's stall: a `sync once` and a peer link to the same node overlap, the peer fetches the
    entries over the one-shot link and asks nothing on the other; every later push must still arrive."""
    a, b = await make_node("a"), await make_node("b")
    ledger = await a.create_ledger()
    await a.append(ledger, 300)
    await b.follow(ledger)
    b.replicator.add_peer(a.url, "config")
    await b.replicator.sync_once(a.url)
    await converged([a, b], ledger, 301)
    for i in range(40):
        entry = (await a.append(ledger, 1, f"push {i}"))[0]

        async def arrived(entry: Entry = entry) -> bool:
            return await b.store.get(entry.id) is not None

        await until(arrived, f"push {i} reached b")


# --- the floods of issue 13: fork proofs and `level`s from fresh keys ---------------------------------------------


def store_bytes(path: Path, name: str) -> int:
    """The store's files on disk: the database, its write-ahead log and its index."""
    return sum(p.stat().st_size for p in path.glob(f"{name}.sqlite3*"))


def made_up_fork(key: SigningKey, ledger: CID, n: int) -> bytes:
    """A valid §7 fork proof of `key`'s own chain in `ledger`: two entries at seq 1."""
    one = create_entry(key, ledger=ledger, seq=1, prev=None, ts=1, kind="note.text", body={"n": n})
    other = create_entry(key, ledger=ledger, seq=1, prev=None, ts=1, kind="note.text", body={"n": -1 - n})
    return encode_message(Fork(ForkProof.of(one, other).encode()))


async def test_fork_proofs_for_made_up_ledgers_are_neither_stored_nor_gossiped(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    """Issue 13's fork flood: a fresh key sends valid fork proofs of its own chains, in ledgers it made up and in
    the victim's public ledger (where it has no chain), paced within the request rate so that metering is not
    what stops them. Before SPEC §13.6's rule each proof was stored for good and gossiped (2,000 grew both
    stores by 5.6 MB, about 2.8 KB each), so 1,200 kept proofs would grow the victim's store by more than 3 MB;
    here it grows less than 100 KB, its peer's too, and neither keeps a proof. Since no proof is kept whatever
    their number, the same holds for the issue's 20,000 (`scripts/bench_hostile.py` sends them)."""
    h, g, ledger = await linked_pair(make_node, 5)
    attacker = fresh(7)
    made_up = [CID(bytes([1, 0x71, 0x12, 0x20]) + i.to_bytes(32, "big")) for i in range(1, 1101)]
    proofs = [made_up_fork(attacker, lg, i) for i, lg in enumerate(made_up)]
    proofs += [made_up_fork(attacker, ledger, i) for i in range(100)]  # the real ledger, an author it does not know
    h0, g0 = store_bytes(tmp_path, "h"), store_bytes(tmp_path, "g")
    async with aiohttp.ClientSession() as session:
        link = await dial_link(session, h.url, attacker)
        await link.send(encode_message(Sub(((ledger, frontier_digest({})),))))  # the real ledger is shared
        burst = int(REQUEST_BURST) - 10
        for i, frame in enumerate(proofs):
            await link.send(frame)
            if i >= burst:
                await asyncio.sleep(1 / (REQUEST_RATE * 0.8))
        # Messages are handled in order: once a want sent after them is answered, every proof was handled.
        await link.send(encode_message(Want(ledger, h.key.public_key, 1, 1)))
        await read_until(link, lambda m: isinstance(m, Sent))
        assert h.peer(attacker.did).connected and h.peer(attacker.did).errors == []  # no violation: all valid
        await link.close()
    await asyncio.sleep(0.5)  # what h would have gossiped has had time to reach g
    assert await h.store.forks() == [] and await g.store.forks() == []
    grown = store_bytes(tmp_path, "h") - h0, store_bytes(tmp_path, "g") - g0
    assert grown[0] < 100 * 1024 and grown[1] < 100 * 1024, grown
    # The honest pair still syncs.
    await h.append(ledger, 1, "after")
    await converged([h, g], ledger, 7)


async def test_a_flood_of_level_messages_for_random_ledgers_leaves_nothing_behind(make_node: NodeFactory) -> None:
    """Issue 13's level flood: `level` for random ledgers from fresh keys, over 64 links from 8 addresses, each
    within the request rate's burst, so that metering is not what stops them. The node remembers nothing of a
    `level` for a ledger that is not shared (SPEC §13.9): before that, 300,000 grew its memory by 34 MB (about
    110 bytes each). The memory Python holds (tracemalloc, both rounds with the links still open) is measured over
    two rounds of 12,000: the first fills what is bounded whatever the count (the decoder's cache of 8,192 recent
    links, about 2.3 MB), so it must stay under the issue's 5 MB in all, and the second must add less than
    5 MB / 300,000 (17 bytes) a message, the issue's bound: nothing grows with the count, so the 24,000 sent here
    test what the issue's 300,000 (`scripts/bench_hostile.py`) would."""
    h = await make_node("h")
    ledger = await h.create_ledger()
    per_round = (int(REQUEST_BURST) - 16) // 2  # within one burst: the sub and the wants too are charged
    sources = [f"127.0.0.{2 + i}" for i in range(8)]
    async with contextlib.AsyncExitStack() as stack:
        links: list[SecureLink] = []
        for i, source in enumerate(sources):
            session = await stack.enter_async_context(
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0))))
            for j in range(MAX_LINKS_PER_ADDRESS):
                link = await dial_link(session, h.url, fresh(8 * i + j))
                await link.send(encode_message(Sub(())))
                await read_until(link, lambda m: isinstance(m, Sub))
                links.append(link)

        async def flood(link: SecureLink, levels: list[bytes]) -> None:
            for frame in levels:
                await link.send(frame)
            await link.send(encode_message(Want(ledger, h.key.public_key, 1, 1)))
            await read_until(link, lambda m: isinstance(m, Sent))  # handled in order: every level was handled

        async def round_of_levels() -> int:
            """Python's memory in use after `per_round` levels on every link."""
            frames = [[encode_message(Level(CID(bytes([1, 0x71, 0x12, 0x20]) + os.urandom(32)), bytes(32)))
                       for _ in range(per_round)] for _ in links]
            await asyncio.gather(*(flood(link, levels) for link, levels in zip(links, frames, strict=True)))
            del frames
            gc.collect()
            return tracemalloc.get_traced_memory()[0]

        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            first = await round_of_levels()
            second = await round_of_levels()
        finally:
            tracemalloc.stop()
        assert all(h.peer(fresh(k).did).connected and h.peer(fresh(k).did).errors == [] for k in range(len(links)))
        sent = per_round * len(links)
        print(f"\n{2 * sent:,} level messages over {len(links)} links: {(first - before) / 1024:.0f} KB held after "
              f"the first {sent:,}, {(second - first) / sent:.1f} bytes a message more over the next {sent:,}")
        assert second - before < 5 * 1024 * 1024, (first - before, second - first)
        assert second - first < sent * 5 * 1024 * 1024 / 300_000, (first - before, second - first)
        for link in links:
            await link.close()


def test_spec_states_the_node_caps() -> None:
    spec = (Path(__file__).resolve().parents[3] / "SPEC.md").read_text()
    for module, name in ((gate, "MAX_LINKS"), (gate, "MAX_HANDSHAKES_PER_ADDRESS"), (gate, "MAX_LINKS_PER_ADDRESS"),
                         (replication, "MAX_DIALED_IN")):
        assert f"`{name} = {getattr(module, name)}`" in spec, name


def test_readme_states_the_peer_caps() -> None:
    """The user's guide gives each cap of SPEC §13.9 with the code's value."""
    readme = " ".join((Path(__file__).resolve().parents[3] / "README.md").read_text().split())
    for phrase in (f"{REQUEST_RATE:.0f} a second, bursts of {REQUEST_BURST:.0f}",
                   f"at most {gate.MAX_LINKS} links dial in at once, {MAX_LINKS_PER_ADDRESS} from one IP address",
                   f"at most {gate.MAX_HANDSHAKES} of them handshake at once, "
                   f"{gate.MAX_HANDSHAKES_PER_ADDRESS} from one",
                   f"at most {replication.MAX_DIALED_IN} identities that only dialled in",
                   f"at most {MAX_FRONT_HEADS:,} heads", f"at most {PEER_WANTS_QUEUED} of its wants wait",
                   f"at most {MAX_NAMED_LEDGERS:,} ledgers it named",
                   f"once per address every {gate.REFUSALS_LOG_S:.0f} s",
                   f"refused for {gate.BAN_MIN_S:.0f} s"):
        assert phrase in readme, phrase
