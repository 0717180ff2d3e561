"""Benchmark: replication between two node processes over loopback.

Prints, measured in this one run:
- replication rate: entries/s to replicate a chain (default 100,000 entries) from a
  `tally run` process to this process (a second node) through the real server, the
  Noise handshake and encryption, beside the raw single-core Ed25519 verify rate;
- wire overhead: bytes that crossed the TCP connection (counted by a relay process in
  between) per entry, divided by the entry's own size (header + payload);
- live push latency: from an append on the serving node (through its HTTP API) to the
  entry being stored on this node, median and p99;
- the CPU the replication took per entry in the receiving process and its verify workers.
Goals (not CI gates): replication >= 0.8 x raw verify; wire overhead <= 1.15; p99 <= 50 ms.

    python scripts/bench_sync.py [--entries 100000] [--pushes 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from nacl.bindings import crypto_sign, crypto_sign_open, crypto_sign_seed_keypair

from node.home import Home
from node.runtime import tune_gc
from node.store.store import Store
from node.sync.replication import Replicator
from protocol import CID, GENESIS_KIND, SigningKey
from protocol.writes import AppendRequest

BODY = {"action": "work", "quantity": "2.5", "unit": "hour", "note": "fixed the brakes on three bikes"}

RELAY = r"""
import asyncio, sys
counts = [0, 0]
async def pipe(reader, writer, i):
    try:
        while data := await reader.read(65536):
            counts[i] += len(data)
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
async def handle(r, w):
    tr, tw = await asyncio.open_connection("127.0.0.1", int(sys.argv[1]))
    await asyncio.gather(pipe(r, tw, 0), pipe(tr, w, 1))
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    print(counts[0], counts[1], flush=True)
asyncio.run(main())
"""


def raw_verify_rate(n: int = 3000) -> float:
    pk, sk = crypto_sign_seed_keypair(bytes(32))
    signed = [crypto_sign(b"tally-entry-v1\0" + bytes(200) + i.to_bytes(4, "big"), sk) for i in range(n)]
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        for s in signed:
            crypto_sign_open(s, pk)
        best = max(best, n / (time.perf_counter() - t))
    return best


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def tally(*args: str) -> str:
    exe = str(Path(sys.executable).with_name("tally"))
    return subprocess.run([exe, *args], check=True, capture_output=True, text=True).stdout.strip()


async def build_serving_home(home: Path, entries: int) -> tuple[CID, int]:
    tally("--home", str(home), "init")
    key = Home(home).load_key()
    async with await Store.open(Home(home).store_path, key=key) as store:
        genesis = await store.append(AppendRequest(None, GENESIS_KIND, {"name": "bench", "visibility": "public"}, 1))
        requests = [AppendRequest(genesis.id, "vf.event", {**BODY, "i": i}, 2) for i in range(entries - 1)]
        await store.append_batch(requests)
        size = 0
        async for e in store.log(genesis.id):
            size += len(e.header_raw) + len(e.payload_raw or b"")
    return genesis.id, size


def start_node(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    exe = str(Path(sys.executable).with_name("tally"))
    proc = subprocess.Popen([exe, "--home", str(home), "run", "--listen", "127.0.0.1:0", "--offline", "--no-mdns"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    nodefile = home / "node.json"
    for _ in range(300):
        if nodefile.exists():
            try:
                return proc, json.loads(nodefile.read_text())["address"]
            except (ValueError, KeyError):
                pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("tally run did not start")


async def bench(entries: int, pushes: int, work: Path) -> None:
    serving = work / "a"
    ledger, total_size = await build_serving_home(serving, entries)
    proc, address = start_node(serving)
    port = int(address.rsplit(":", 1)[1])
    relay = subprocess.Popen([sys.executable, "-c", RELAY, str(port)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert relay.stdout is not None and relay.stdin is not None
    relay_port = int(relay.stdout.readline())
    try:
        verify = raw_verify_rate()
        print(f"raw libsodium verify {verify:9,.0f}/s (single core) before")
        key = SigningKey(os.urandom(32))
        async with await Store.open(work / "b.sqlite3", key=key) as store:
            await store.follow(ledger)
            rep = Replicator(store, key, offline=True)
            await rep.start()
            workers_before = _cpu(resource.RUSAGE_CHILDREN)  # the verify workers count once reaped (rep.stop)
            own = 0.0
            try:
                t = time.perf_counter()
                own_before = _cpu(resource.RUSAGE_SELF)
                info = await rep.sync_once(f"http://127.0.0.1:{relay_port}")
                own = _cpu(resource.RUSAGE_SELF) - own_before
                elapsed = time.perf_counter() - t
                relay.stdin.write("\n")
                relay.stdin.flush()
                up, down = (int(x) for x in relay.stdout.readline().split())
                got = await store.count()
                rate = got / elapsed
                # The machine is shared: the baseline is the mean of raw rates taken just before and after.
                after = raw_verify_rate()
                verify = (verify + after) / 2
                print(f"raw libsodium verify {after:9,.0f}/s after (baseline: the mean, {verify:,.0f}/s)")
                print(f"replicate {rate:9,.0f} entries/s  ({got:,} of {entries:,} entries in {elapsed:.1f} s, "
                      f"process to process, encrypted)  ratio to raw verify {rate / verify:.2f} (goal >= 0.8)")
                print(f"wire      {(up + down) / got:9.1f} bytes/entry for {total_size / entries:.0f}-byte entries  "
                      f"overhead {(up + down) / total_size:.3f} (goal <= 1.15; {up:,} B up, {down:,} B down)")
                assert got == entries, f"only {got} of {entries} entries arrived ({info})"

                # Live push: keep a link to the serving node, append there over HTTP, time arrival here.
                arrived: dict[str, float] = {}
                store.on_new_entries(lambda batch: arrived.update({str(e.id): time.perf_counter() for e in batch}))
                rep.add_peer(address, "flag")
                token = Home(serving).load_token()
                latencies = []
                async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
                    for _ in range(100):
                        if any(p.connected for p in rep.peers()):
                            break
                        await asyncio.sleep(0.05)
                    await asyncio.sleep(0.5)
                    for i in range(pushes):
                        sent = time.perf_counter()
                        async with http.post(f"{address}/api/v1/ledgers/{ledger}/entries",
                                             json={"kind": "vf.event", "body": {**BODY, "push": i}}) as resp:
                            entry_id = (await resp.json())["id"]
                        for _ in range(2000):
                            if entry_id in arrived:
                                break
                            await asyncio.sleep(0.001)
                        latencies.append((arrived.get(entry_id, float("inf")) - sent) * 1000)
                        await asyncio.sleep(0.01)
                latencies.sort()
                p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
                print(f"push      median {statistics.median(latencies):.1f} ms  p99 {p99:.1f} ms  over {pushes} "
                      f"appends (API append on one node to stored on the other; goal p99 <= 50 ms)")
            finally:
                await rep.stop()
            if own:
                # Load moves this far less than a rate. The workers' share includes their start and the pushes'.
                workers = _cpu(resource.RUSAGE_CHILDREN) - workers_before
                print(f"CPU       per entry replicated: {1e6 * own / entries:.1f} us in the receiving process, "
                      f"{1e6 * workers / entries:.1f} us in its verify workers")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        relay.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--pushes", type=int, default=200)
    args = parser.parse_args()
    tune_gc()
    with tempfile.TemporaryDirectory(prefix="tally-bench-sync-") as d:
        asyncio.run(bench(args.entries, args.pushes, Path(d)))


if __name__ == "__main__":
    main()
