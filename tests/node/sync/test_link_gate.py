"""A flood of peer link attempts beyond the caps (SPEC §13.9) is answered by the API app's first
middleware, over a real loopback socket: 503 each, and one log line per host with a count, not one
line (nor any access-log line) per attempt."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import aiohttp
import pytest
from loopback_api import KEY, running_api

from node.store.store import Store
from node.sync import gate
from node.sync.replication import Replicator


async def test_refused_link_attempts_cost_one_log_line_per_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(gate, "MAX_HANDSHAKES_PER_ADDRESS", 0)  # every attempt is over the cap
    caplog.set_level(logging.INFO)
    store = await Store.open(tmp_path / "tally.sqlite3", key=KEY)
    rep = Replicator(store, KEY, offline=True)
    await rep.start()
    try:
        async with running_api(store, rep) as api:
            url = str(api.client.make_url("/api/v1/sync"))
            async with aiohttp.ClientSession() as http:
                for _ in range(40):
                    async with http.get(url, headers={"Connection": "Upgrade", "Upgrade": "websocket"}) as resp:
                        assert resp.status == 503, resp.status
                        assert resp.headers.get("Connection", "").lower() == "close"  # the connection ends too
                status, identity = await api.call("GET", "/identity")  # the rest of the API answers as usual
            assert status == 200 and identity["id"] == KEY.did
    finally:
        await rep.stop()
        await store.close()
    refusals = [r for r in caplog.records if r.getMessage().startswith("peer links refused")]
    assert len(refusals) == 1 and "host=127.0.0.1" in refusals[0].getMessage(), [r.getMessage() for r in refusals]
    logged_paths = [getattr(r, "path", None) for r in caplog.records if r.getMessage() == "request"]
    assert "/api/v1/sync" not in logged_paths and "/api/v1/identity" in logged_paths, logged_paths


def test_spec_states_the_refusal_log_period() -> None:
    spec = (Path(__file__).resolve().parents[3] / "SPEC.md").read_text()
    assert f"`REFUSALS_LOG_S = {gate.REFUSALS_LOG_S:.0f}`" in spec


async def test_inbound_handshakes_at_once_are_capped_for_the_whole_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gate, "MAX_HANDSHAKES", 2)
    store = await Store.open(tmp_path / "tally.sqlite3", key=KEY)
    rep = Replicator(store, KEY, offline=True)
    await rep.start()
    # four peers at four addresses of this machine: the cap per address is not what refuses them
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(f"127.0.0.{2 + i}", 0)))
                for i in range(4)]
    try:
        async with running_api(store, rep) as api:
            url = str(api.client.make_url("/api/v1/sync"))
            # two open the WebSocket and never send the handshake's first message
            held = [await sessions[i].ws_connect(url) for i in range(2)]
            async with sessions[2].get(url, headers={"Connection": "Upgrade", "Upgrade": "websocket"}) as resp:
                assert resp.status == 503, resp.status  # refused before the upgrade: no handshake work
            await held[0].close()  # one leaves: its place is free again
            deadline = time.monotonic() + 30
            while True:
                try:
                    ws = await sessions[3].ws_connect(url)
                    break
                except aiohttp.WSServerHandshakeError as exc:
                    assert exc.status == 503 and time.monotonic() < deadline, exc
                    await asyncio.sleep(0.05)
            assert not ws.closed
            await ws.close()
            await held[1].close()
    finally:
        for session in sessions:
            await session.close()
        await rep.stop()
        await store.close()


def test_spec_states_the_handshake_cap() -> None:
    spec = (Path(__file__).resolve().parents[3] / "SPEC.md").read_text()
    assert f"`MAX_HANDSHAKES = {gate.MAX_HANDSHAKES}`" in spec


def test_an_attempt_let_through_from_its_first_bytes_holds_its_handshake_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """A listener accepts a batch of connections before it serves any: each attempt holds its place from its first
    bytes, so the batch cannot slip past the caps (SPEC §13.9); the handshake takes the place over, and a place whose
    attempt never gets there is given back after RESERVED_S."""
    now = [1000.0]
    monkeypatch.setattr(gate.time, "monotonic", lambda: now[0])
    g = gate.LinkGate()
    hosts = [f"127.0.0.{2 + i}" for i in range(gate.MAX_HANDSHAKES // gate.MAX_HANDSHAKES_PER_ADDRESS + 1)]
    admitted = [(h, f"{h}:{port}") for h in hosts for port in range(40000, 40010) if g.reserve(h, f"{h}:{port}")]
    assert len(admitted) == gate.MAX_HANDSHAKES  # 4 from each of the first four hosts, none from the fifth
    assert {h for h, _ in admitted} == set(hosts[:-1])
    assert g.refuses(hosts[-1]) and g.refusal(hosts[-1]) is not None
    host, address = admitted[0]
    assert g.reserve(host, address) and g.refusal(host, address) is None  # its own place, not another's
    with g.handshake(host, address):  # takes its place over: still full
        assert g.refuses(hosts[-1])
    assert not g.refuses(hosts[-1])  # the handshake ended: its place is free
    assert g.reserve(hosts[-1], f"{hosts[-1]}:1") and g.refuses(hosts[-1])
    now[0] += gate.RESERVED_S + 1  # the other attempts never began their handshakes
    assert not g.refuses(hosts[-1]) and not g.refuses(hosts[0])
    with g.handshake(host, address):  # one whose place was given back counts as a new one
        pass
    assert not g._reserved and not g._handshaking.total


def test_spec_and_readme_state_how_long_an_attempt_holds_its_place() -> None:
    root = Path(__file__).resolve().parents[3]
    assert f"`RESERVED_S = {gate.RESERVED_S:.0f}` s" in (root / "SPEC.md").read_text()
    readme = " ".join((root / "README.md").read_text().split())
    assert f"holding its place from its first bytes (at most {gate.RESERVED_S:.0f} s" in readme
    assert f"holds its place from those first bytes, for at most {gate.RESERVED_S:.0f} s" in readme
