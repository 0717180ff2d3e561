"""Benchmark: what the node's start-up scrub of its store costs (SPEC.md §10, node/sync/healing.py).

Builds a store of N entries on one chain (a real SQLite file), then times `Store.scrub` with no pause (its
CPU and read cost per entry) and with the node's pause between reads (how long it stays in the background),
and, for comparison, reading the same rows as decoded entries (`Store.log`). Prints figures, asserts nothing.

    python scripts/bench_scrub.py [--entries 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from pathlib import Path

from node.store.appends import GROUP_MAX
from node.store.store import Store
from node.sync.healing import SCRUB_PAUSE_S
from protocol import GENESIS_KIND, SigningKey
from protocol.writes import AppendRequest

BODY = {"action": "work", "quantity": "2.5", "unit": "hour", "note": "fixed the brakes on three bikes"}


async def build(path: Path, n: int) -> None:
    key = SigningKey(bytes(range(32)))
    async with await Store.open(path, key=key) as store:
        genesis = await store.append(AppendRequest(None, GENESIS_KIND, {"name": "Bench", "visibility": "public"}, 1))
        done = 1
        while done < n:
            batch = min(GROUP_MAX, n - done)
            await store.append_batch([AppendRequest(genesis.id, "vf.event", BODY, 2 + done + i) for i in range(batch)])
            done += batch


async def timed_scrub(path: Path, pause_s: float) -> tuple[float, int]:
    async with await Store.open(path) as store:
        t0 = time.perf_counter()
        async with contextlib.aclosing(store.scrub(pause_s=pause_s)) as damaged:
            found = sum([1 async for _ in damaged])
        return time.perf_counter() - t0, found


async def timed_log(path: Path) -> float:
    async with await Store.open(path) as store:
        (info,) = await store.ledgers()
        t0 = time.perf_counter()
        async with contextlib.aclosing(store.log(info.id)) as entries:
            async for _ in entries:
                pass
        return time.perf_counter() - t0


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tally.sqlite3"
        await build(path, args.entries)
        size = path.stat().st_size + (Path(f"{path}-wal").stat().st_size if Path(f"{path}-wal").exists() else 0)
        print(f"{args.entries} entries, {size / 1e6:.1f} MB store")
        cpu_t0 = time.process_time()
        fast, found = await timed_scrub(path, 0.0)
        cpu = time.process_time() - cpu_t0
        print(f"  scrub, no pause:          {fast:.2f} s ({fast / args.entries * 1e6:.1f} µs/entry, "
              f"CPU {cpu:.2f} s), {found} damaged")
        paced, _ = await timed_scrub(path, SCRUB_PAUSE_S)
        print(f"  scrub as the node runs it: {paced:.2f} s (pause {SCRUB_PAUSE_S} s per 512 rows)")
        log_s = await timed_log(path)
        print(f"  reading the ledger's log (decoded entries), for comparison: {log_s:.2f} s")


if __name__ == "__main__":
    asyncio.run(main())
