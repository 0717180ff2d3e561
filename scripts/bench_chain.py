"""Benchmark: append and ingest rates of a 100,000-entry chain, against raw Ed25519.

Prints, measured in this one run (machines here are noisy, so ratios matter):
- raw Ed25519 sign and verify rates, single core, of each installed implementation;
- append rate: build + sign + store, committed durably, through the store's own append path
  (`Store.append_batch`, the pipeline `Store.append` feeds for the API, the dashboard and the CLI:
  groups of GROUP_MAX, the next group signed while the one before commits, one fsync per group);
- ingest rate: decode + verify + link check + store, as entries arriving from a peer;
and append's ratio to libsodium's raw single-core sign rate on the same bytes (each entry's signing bytes, signed
again between the append's rounds, so both see the same load), ingest's to its
single-core verify rate measured just before and after it (the mean: the machine's load changes). Goals:
append >= 0.4 x sign, ingest >= 1.0 x verify. Ingest runs twice: signatures in worker processes (as the node does)
and on the decoding thread only; each also prints the CPU it took per entry (this process, the worker processes)
against the CPU of one raw verify, which the machine's load moves far less than a rate: on two idle cores, ingest
can reach at most 2 / (its CPU per entry in verifies) x raw verify. `--crossover` also times streams of batches
of each size both ways; `--append-only` skips ingest; `--runs N` repeats the append N times (a fresh store
each) and prints the median.

    python scripts/bench_chain.py [--entries 100000] [--batch 1000] [--crossover] [--append-only] [--runs 1]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl._sodium import ffi, lib
from nacl.bindings import crypto_sign, crypto_sign_open, crypto_sign_seed_keypair

from node.runtime import tune_gc
from node.store.appends import GROUP_MAX
from node.store.store import Store
from node.sync.ingest import POOL_MIN, RawEntry, Verifier, ingest_batches
from protocol import CID, GENESIS_KIND, SigningKey
from protocol.writes import AppendRequest

BODY = {"action": "work", "quantity": "2.5", "unit": "hour", "note": "fixed the brakes on three bikes"}


def rate(func: Callable[[], None], count: int, seconds: float = 1.5) -> float:
    """Operations per second of `func` (which does `count` operations), best of repeated runs."""
    best = 0.0
    deadline = time.perf_counter() + seconds
    while True:
        t = time.perf_counter()
        func()
        best = max(best, count / (time.perf_counter() - t))
        if time.perf_counter() > deadline:
            return best


def raw_verify(n: int = 2000) -> float:
    """libsodium's single-core verify rate now (best of a few runs over 1.5 s)."""
    pk, sk = crypto_sign_seed_keypair(bytes(32))
    signed = [crypto_sign(b"tally-entry-v1\0" + bytes(200) + i.to_bytes(4, "big"), sk) for i in range(n)]

    def verify() -> None:
        for s in signed:
            crypto_sign_open(s, pk)

    return rate(verify, n)


def raw_verify_cpu(n: int = 2000, rounds: int = 5) -> float:
    """CPU seconds libsodium takes for one verify on this thread (least of a few rounds): unlike a rate, it barely
    moves with the machine's load, so the CPU an ingest takes per entry can be set against it."""
    pk, sk = crypto_sign_seed_keypair(bytes(32))
    signed = [crypto_sign(b"tally-entry-v1\0" + bytes(200) + i.to_bytes(4, "big"), sk) for i in range(n)]
    best = float("inf")
    for _ in range(rounds):
        t = time.thread_time()
        for s in signed:
            crypto_sign_open(s, pk)
        best = min(best, (time.thread_time() - t) / n)
    return best


def raw_rates(n: int = 2000) -> dict[str, tuple[float, float]]:
    messages = [b"tally-entry-v1\0" + bytes(200) + i.to_bytes(4, "big") for i in range(n)]
    pk, sk = crypto_sign_seed_keypair(bytes(32))
    signed = [crypto_sign(m, sk) for m in messages]

    def nacl_sign() -> None:
        for m in messages:
            crypto_sign(m, sk)

    def nacl_verify() -> None:
        for s in signed:
            crypto_sign_open(s, pk)

    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    pub = key.public_key()
    sigs = [key.sign(m) for m in messages]

    def ossl_sign() -> None:
        for m in messages:
            key.sign(m)

    def ossl_verify() -> None:
        for s, m in zip(sigs, messages, strict=True):
            pub.verify(s, m)

    return {
        "libsodium (PyNaCl)": (rate(nacl_sign, n), rate(nacl_verify, n)),
        "OpenSSL (cryptography)": (rate(ossl_sign, n), rate(ossl_verify, n)),
    }


ROUNDS: Final = 5  # append rounds, each followed by libsodium alone signing the same bytes


def sign_each(messages: list[bytes], secret: bytes, bare: bool) -> float:
    """Seconds libsodium takes to sign each of `messages` on this thread: through PyNaCl's `crypto_sign` (what
    the goal was set against), or bare (`crypto_sign` itself through cffi, one output buffer: what the store's
    SigningKey.sign calls, without even its allocation)."""
    if bare:
        out = ffi.new("unsigned char[]", max(map(len, messages)) + 64)
        t = time.perf_counter()
        for m in messages:
            lib.crypto_sign(out, ffi.NULL, m, len(m), secret)
        return time.perf_counter() - t
    t = time.perf_counter()
    for m in messages:
        crypto_sign(m, secret)
    return time.perf_counter() - t


async def append_once(entries: int, path: Path) -> tuple[float, float, Store, CID]:
    """Append `entries` - 1 entries after a genesis into a fresh store at `path`, in ROUNDS calls, each followed
    by raw libsodium signing the very bytes that call signed (each entry's signing bytes, with the same key), on
    this thread, so both see the same load: (entries/s, ratio to that raw rate through PyNaCl) and the store,
    still open, with the ledger. The ratio to the bare libsodium call is printed too."""
    key = SigningKey(bytes(range(32)))
    _, secret = crypto_sign_seed_keypair(key.seed)
    store = await Store.open(path, key=key)
    genesis = await store.append(AppendRequest(None, GENESIS_KIND, {"name": "bench", "visibility": "members"}, 1))
    requests = [AppendRequest(genesis.id, "vf.event", {**BODY, "i": i}, 2) for i in range(entries - 1)]
    append_s = pynacl_s = bare_s = 0.0
    step = -(-len(requests) // ROUNDS)
    for start in range(0, len(requests), step):
        chunk = requests[start : start + step]
        t = time.perf_counter()
        # The store group-commits GROUP_MAX entries per durable transaction, signing the next group while the
        # previous one commits.
        made = await store.append_batch(chunk)
        append_s += time.perf_counter() - t
        signing = [entry.header.signing_bytes() for entry in made]
        pynacl_s += sign_each(signing, secret, bare=False)
        bare_s += sign_each(signing, secret, bare=True)
    append_rate = len(requests) / append_s
    pynacl, bare = len(requests) / pynacl_s, len(requests) / bare_s
    print(f"append  {append_rate:9,.0f} entries/s  ({len(requests):,} entries in {append_s:.1f} s: build + sign + "
          f"durable store through Store.append_batch, {ROUNDS} calls, groups of {GROUP_MAX}, one fsync each)")
    print(f"        raw libsodium signing the same {len(requests):,} headers between the calls: {pynacl:,.0f}/s "
          f"through PyNaCl, {bare:,.0f}/s bare")
    print(f"        append / raw sign: {append_rate / pynacl:.2f} (goal >= 0.4; {append_rate / bare:.2f} of the bare "
          f"call)")
    return append_rate, append_rate / pynacl, store, genesis.id


async def bench(entries: int, batch: int, workdir: Path, crossover: bool, append_only: bool, runs: int) -> None:
    raws = raw_rates()
    for name, (s, v) in raws.items():
        print(f"raw {name:24s} sign {s:9,.0f}/s   verify {v:9,.0f}/s   (single core)")

    figures: list[tuple[float, float]] = []
    for run in range(runs):
        rate_, ratio, source, ledger = await append_once(entries, workdir / f"source-{run}.sqlite3")
        figures.append((rate_, ratio))
        if run < runs - 1 or append_only:
            await source.close()
    if runs > 1:
        print(f"append median of {runs} runs: {statistics.median(r for r, _ in figures):,.0f} entries/s, "
              f"ratio to raw sign {statistics.median(q for _, q in figures):.2f} (goal >= 0.4)")
    if append_only:
        return

    rows: list[RawEntry] = [(e.header_raw, e.payload_raw) async for e in source.log(ledger)]
    await source.close()
    async def batches() -> AsyncIterator[list[RawEntry]]:
        for i in range(0, len(rows), batch):
            yield rows[i : i + batch]

    # Worker processes for signatures (the node's way), then a thread only, each into a fresh store.
    for name, pool_min in (("ingest", POOL_MIN), ("ingest, signatures on the decoding thread", 1 << 30)):
        target = await Store.open(workdir / f"target-{pool_min}.sqlite3")
        workers_before = _cpu(resource.RUSAGE_CHILDREN)  # the workers count once reaped, when the Verifier closes
        async with Verifier(pool_min=pool_min) as verifier:
            if pool_min == POOL_MIN:
                await verifier.check(rows[:POOL_MIN])  # start the workers (once per node) before the clock
            before = raw_verify()
            t = time.perf_counter()
            own_before = _cpu(resource.RUSAGE_SELF)
            totals = await ingest_batches(target, verifier, batches())
            own = _cpu(resource.RUSAGE_SELF) - own_before
            ingest_s = time.perf_counter() - t
            # The machine is shared: this ingest's baseline is the mean of raw rates just before and after it.
            baseline = (before + raw_verify()) / 2
        workers = _cpu(resource.RUSAGE_CHILDREN) - workers_before
        await target.close()
        assert totals.stored == len(rows), totals
        ingest_rate = len(rows) / ingest_s
        print(f"{name}: {ingest_rate:9,.0f} entries/s  ({len(rows):,} entries in {ingest_s:.1f} s: decode + verify + "
              f"link check + durable store)  ratio to raw single-core verify {ingest_rate / baseline:.2f} "
              f"(goal >= 1.0; raw libsodium {baseline:,.0f}/s around it)")
        verify_cpu = raw_verify_cpu()
        per = (own + workers) / len(rows)
        print(f"        CPU per entry: {1e6 * own / len(rows):.1f} us in this process, {1e6 * workers / len(rows):.1f} "
              f"us in worker processes (their start included); one raw verify {1e6 * verify_cpu:.1f} us: "
              f"{per / verify_cpu:.2f} verifies' worth per entry, so at most {2 * verify_cpu / per:.2f} x raw verify "
              f"on two idle cores")
    size = sum(len(h) + len(p or b"") for h, p in rows) / len(rows)
    print(f"entry size {size:.0f} bytes on average (header + payload)")
    if crossover:
        await print_crossover(rows)


async def print_crossover(rows: list[RawEntry]) -> None:
    """Decode + verify rate of a stream of batches of one size, up to 8 checked at once as a sync link
    does (INBOX_MESSAGES): signatures on the decoding thread vs in worker processes. Where the
    processes start to win is the node's POOL_MIN."""
    print(f"crossover (entries/s, a stream of batches of one size, 8 at once; POOL_MIN = {POOL_MIN}):")
    stream = rows[:2048]
    async with Verifier(pool_min=1 << 30) as thread, Verifier(pool_min=1) as pool:
        await pool.check(rows[:64])  # the workers are up

        async def run(verifier: Verifier, n: int) -> float:
            room = asyncio.Semaphore(8)

            async def one(batch: list[RawEntry]) -> None:
                async with room:
                    await verifier.check(batch)

            t = time.perf_counter()
            await asyncio.gather(*(one(stream[i : i + n]) for i in range(0, len(stream), n)))
            return len(stream) / (time.perf_counter() - t)

        for n in (8, 16, 32, 48, 64, 128, 256, 1024):
            rates: tuple[list[float], list[float]] = ([], [])
            for _ in range(5):  # alternated, so both see the same load; medians
                for verifier, got in zip((thread, pool), rates, strict=True):
                    got.append(await run(verifier, n))
            medians = [statistics.median(got) for got in rates]
            print(f"  batch {n:5d}: thread {medians[0]:9,.0f}/s   workers {medians[1]:9,.0f}/s   "
                  f"{'workers' if medians[1] > medians[0] else 'thread'}")


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--crossover", action="store_true", help="also time batch streams by size")
    parser.add_argument("--append-only", action="store_true", help="time appends only, not ingest")
    parser.add_argument("--runs", type=int, default=1, help="append runs (each into a fresh store); median printed")
    args = parser.parse_args()
    tune_gc()  # as `tally` does
    with tempfile.TemporaryDirectory(prefix="tally-bench-") as d:
        asyncio.run(bench(args.entries, args.batch, Path(d), args.crossover, args.append_only, args.runs))


if __name__ == "__main__":
    main()
