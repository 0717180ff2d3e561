"""Issue 13: "existing peers keep syncing" under a flood of link attempts, in the default suite. A real `tally run`
is dialled over and over by attackers from many loopback addresses, each with a fresh key, each completing the
handshake when a place is free (SPEC §13.9: 16 at once, 4 per address) and dialling again at once; meanwhile its
API answers and every entry appended on it reaches the peer that was linked before the flood."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections import Counter
from pathlib import Path

import aiohttp
from running_nodes import Node, ok, start, stop_all, until

from node.sync.gate import MAX_HANDSHAKES
from node.sync.links import LinkClosed, dial_link
from protocol.identity import SigningKey

SOURCES = [f"127.0.3.{2 + i}" for i in range(20)]  # loopback aliases: 20 remote addresses
ATTACKERS_PER_SOURCE = 3  # 60 at once: more than MAX_HANDSHAKES, within each address's share
ROUNDS = 8  # entries appended during the flood


class Flood:
    """Attackers dialling a node from SOURCES in a thread of their own until stopped; how their attempts ended."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.outcomes: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Flood:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "the attackers stop"

    async def _run(self) -> None:
        async with contextlib.AsyncExitStack() as stack:
            sessions = [await stack.enter_async_context(aiohttp.ClientSession(connector=aiohttp.TCPConnector(
                limit=0, force_close=True, local_addr=(source, 0)))) for source in SOURCES]
            await asyncio.gather(*(self._attacker(session) for session in sessions
                                   for _ in range(ATTACKERS_PER_SOURCE)))

    async def _attacker(self, http: aiohttp.ClientSession) -> None:
        while not self._stop.is_set():
            try:
                link = await dial_link(http, self.address, SigningKey(os.urandom(32)), heartbeat=None)
            except LinkClosed as exc:
                self.outcomes["refused (503)" if "503" in str(exc) else exc.refusal or "closed"] += 1
                continue
            except (aiohttp.ClientError, OSError) as exc:
                self.outcomes[type(exc).__name__] += 1
                continue
            self.outcomes["handshake done"] += 1
            await link.close()  # and at once dial again, with another fresh key


def test_a_peer_keeps_syncing_and_the_api_answering_while_many_addresses_flood_the_node_with_handshakes(
    tmp_path: Path,
) -> None:
    ana_home, bob_home = tmp_path / "ana", tmp_path / "bob"
    ana_did, bob_did = ok(ana_home, "init"), ok(bob_home, "init")
    ledger = ok(ana_home, "ledger", "create", "Coop", "--public").split()[-1]
    ana = start("ana", ana_home, ana_did)
    bob = start("bob", bob_home, bob_did, ana.address)  # bob's configured peer is ana
    nodes: list[Node] = [ana, bob]
    try:
        ok(bob_home, "follow", ledger)
        until(lambda: bob.state(ledger), "bob to hold the ledger over his link to ana", logs=nodes)
        with Flood(ana.address) as flood:
            until(lambda: flood.outcomes["handshake done"] >= MAX_HANDSHAKES, "the flood's first handshakes",
                  logs=nodes)
            before = flood.outcomes.copy()
            slowest = 0.0
            for n in range(ROUNDS):
                t = time.monotonic()
                status, ident = ana.api("GET", "/identity", owner=False, timeout=30)
                slowest = max(slowest, time.monotonic() - t)
                assert status == 200 and ident["id"] == ana_did
                status, appended = ana.api("POST", f"/ledgers/{ledger}/entries",
                                           {"kind": "note.text", "body": {"text": f"during the flood {n}"}})
                assert status == 201, appended
                entry = appended["id"]
                until(lambda entry=entry: bob.api("GET", f"/entries/{entry}")[0] == 200,
                      f"entry {n} appended during the flood to reach bob", logs=nodes)
            during = flood.outcomes - before
        print(f"\nhandshake flood from {len(SOURCES)} addresses: {dict(flood.outcomes)}; during the {ROUNDS} "
              f"rounds {dict(during)}; slowest identity call {slowest * 1000:.0f} ms")
        # The flood went on the whole time, and beyond the caps: handshakes done and attempts refused meanwhile.
        assert during["handshake done"] > 0 and during["refused (503)"] > 0, during
        assert slowest < 10.0, slowest  # generous: the goal (p99 < 100 ms) is scripts/bench_hostile.py's to measure
        assert ana.proc.poll() is None and bob.proc.poll() is None
        status, peers = bob.api("GET", "/peers")
        assert status == 200 and any(p["id"] == ana_did and p["connected"] for p in peers["peers"]), peers
    finally:
        stop_all(nodes)
    assert "Traceback" not in ana.log() and "Traceback" not in bob.log()
