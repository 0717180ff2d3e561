"""Benchmark: a big coop's ledger, read back from a real store.

Builds once, into a store file, a ledger of a year of a 100-member coop: 3 founders admit
97 members (two sponsors each, the second naming the first's sponsorship), then about
50,000 vf.events (work, use, transfer, deliverService, cite; skills, notes, times spread
over the year) and 50,000 endorsements of earlier events by other members. The store is
built in a child process, so this process's memory figures are the rebuild's alone.

Then measures, one line per figure (wall clock, and CPU time: machines here are noisy):
- state: time to rebuild the ledger's state from the store with node.store.ledgers.load_state,
  in entries/s, and its two halves: read_ledger (read from SQLite + decode, without signature
  checks: entries were verified on arrival) and state_of (compute_state); the memory it takes
  (tracemalloc: peak during a rebuild, and what the state keeps; growth of the peak RSS).
  Goal: >= 20,000 entries/s.
- distribute: the value equation over the ledger's final contributions (a preview), what one
  recorded distribution adds to a state rebuild, and scripts/bench_distribute.py's year of
  100,000 events (straight and remaining modes). Goal: under a second.

Each benchmark is an async function of a Context (the store, the ledger) registered in
BENCHES, so later issues add theirs beside it (--only picks some). `--store PATH` keeps
the built store for the next run.

    python scripts/bench_ledger.py [--members 100] [--events 50000] [--endorsements 50000]
                                   [--repeat 3] [--store PATH] [--only state]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import multiprocessing
import os
import random
import resource
import sqlite3
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from node.runtime import tune_gc
from node.store.ledgers import load_state, read_ledger, state_of
from node.store.store import Store, wall_clock_ms
from protocol import CID, GENESIS_KIND, Entry, SigningKey, create_entry, ledger_ops
from protocol.rules import Rules
from protocol.state import FINAL, LedgerState, compute_state

STATE_GOAL_PER_S = 20_000
FOUNDERS = 3
BATCH = 2_000  # entries per ingest transaction
YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)
YEAR_MS = 365 * 24 * 3600 * 1000
SKILLS = ("engineering", "design", "cooking", "accounting", "repair", "teaching")
NOTES = (
    "", "", "fixed the brakes on three bikes", "weekly accounts and bank reconciliation",
    "design review of the new cargo frame", "van to the wholesale market", "workshop for the school",
    "soup kitchen shift", "paid the electricity bill", "borrowed the welding kit",
)
RULES: dict[str, Any] = {
    "validation": {"accept": 2, "reject": 2},
    "rates": {
        "work": {"hour": "20"}, "work:engineering": {"hour": "30"}, "work:accounting": {"hour": "25"},
        "use": {"day": "25", "hour": "4"}, "transfer": {"euro": "1"}, "deliverService": {"hour": "20"},
        "cite": {"hour": "5"},
    },
    "buckets": [
        {"name": "reserve", "percent": "20", "recipient": "ledger"},
        {"name": "members", "percent": "80"},
    ],
}


# ---- building the ledger -----------------------------------------------------------------


def member_key(i: int) -> SigningKey:
    return SigningKey(i.to_bytes(2, "big") * 16)


class Chains:
    """Signs each member's next entry in their chain, with times that only go forward."""

    def __init__(self, keys: list[SigningKey], *, public: bool = False) -> None:
        founders = keys[:FOUNDERS]
        rules = Rules.from_config({**RULES, "founders": [k.did for k in founders]}, name="Bike coop",
                                  creator=founders[0].did, public=public)
        start_ms = int(YEAR_START.timestamp() * 1000)
        self.genesis = create_entry(founders[0], ledger=None, seq=1, prev=None, ts=start_ms, kind=GENESIS_KIND,
                                    body=rules.to_body())
        self.heads: dict[bytes, Entry] = {founders[0].public_key: self.genesis}
        self.entries: list[Entry] = [self.genesis]

    def append(self, key: SigningKey, kind: str, body: dict[str, Any], ts: int) -> Entry:
        head = self.heads.get(key.public_key)
        entry = create_entry(
            key, ledger=self.genesis.id, seq=1 if head is None else head.seq + 1,
            prev=None if head is None else head.id, ts=ts if head is None else max(ts, head.header.ts),
            kind=kind, body=body,
        )
        self.heads[key.public_key] = entry
        self.entries.append(entry)
        return entry


def event_body(rnd: random.Random, member: CID, day: datetime) -> dict[str, Any]:
    action = rnd.choices(["work", "use", "transfer", "deliverService", "cite"], [60, 15, 10, 10, 5])[0]
    body: dict[str, Any] = {"action": action, "member": member}
    if action == "work":
        hours = rnd.choice(["0.5", "1", "1.5", "2", "2.5", "3", "4", "6", "8"])
        body["effortQuantity"] = {"hasNumericalValue": hours, "hasUnit": "hour"}
        start = day + timedelta(hours=rnd.randint(7, 14), minutes=rnd.choice([0, 15, 30, 45]))
        end = start + timedelta(minutes=int(float(hours) * 60))
        body["hasBeginning"] = start.isoformat().replace("+00:00", "Z")
        body["hasEnd"] = end.isoformat().replace("+00:00", "Z")
    elif action == "use":
        unit = rnd.choice(["day", "hour"])
        body["effortQuantity"] = {"hasNumericalValue": str(rnd.randint(1, 5)), "hasUnit": unit}
        body["hasPointInTime"] = day.date().isoformat()
    elif action == "transfer":
        euros = f"{rnd.randint(5, 900)}.{rnd.randint(0, 99):02d}"
        body["resourceQuantity"] = {"hasNumericalValue": euros, "hasUnit": "euro"}
        body["hasPointInTime"] = day.date().isoformat()
    else:
        body["resourceQuantity"] = {"hasNumericalValue": str(rnd.randint(1, 6)), "hasUnit": "hour"}
        body["hasPointInTime"] = day.date().isoformat()
    if action in ("work", "deliverService") and rnd.random() < 0.7:
        body["resourceClassifiedAs"] = [rnd.choice(SKILLS)]
    note = rnd.choice(NOTES)
    if note:
        body["note"] = note
    return body


def build_entries(members: int, events: int, endorsements: int, seed: int = 1, *, founder: SigningKey | None = None,
                  public: bool = False) -> tuple[Entry, list[Entry]]:
    """The genesis and every entry, in an order that keeps each chain in seq order; `founder` (e.g. a node's
    own key) replaces the first member's key."""
    rnd = random.Random(seed)
    keys = [member_key(i) for i in range(members)]
    if founder is not None:
        keys[0] = founder
    chains = Chains(keys, public=public)
    ledger = chains.genesis.id
    proof: dict[bytes, CID] = {k.public_key: ledger for k in keys[:FOUNDERS]}
    start_ms = chains.genesis.header.ts
    ts = start_ms
    by = {k.public_key: k for k in keys}
    for newcomer in keys[FOUNDERS:]:  # two sponsors each (K = 2), the second naming the first
        first, second = rnd.sample(list(proof), 2)
        ts += 60_000
        sponsorship = chains.append(by[first], "member.admit",
                                    {"agent": newcomer.did, "member": proof[first]}, ts)
        ts += 60_000
        completed = chains.append(by[second], "member.admit",
                                  {"agent": newcomer.did, "member": proof[second], "with": [sponsorship.id]}, ts)
        proof[newcomer.public_key] = completed.id
    # Events and endorsements interleaved over the year; an endorsement names an earlier event of another.
    made: list[Entry] = []
    kinds = ["vf.event"] * events + ["vf.endorse"] * endorsements
    rnd.shuffle(kinds)
    if events:  # the first endorsement needs an event before it
        i = kinds.index("vf.event")
        kinds[0], kinds[i] = kinds[i], kinds[0]
    step_ms = (YEAR_MS - (ts - start_ms)) // max(1, len(kinds))
    for kind in kinds:
        ts += rnd.randint(0, 2 * step_ms)
        author = rnd.choice(keys)
        if kind == "vf.event":
            day = datetime.fromtimestamp(ts / 1000, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            made.append(chains.append(author, "vf.event", event_body(rnd, proof[author.public_key], day), ts))
        else:
            target = made[-1 - min(len(made) - 1, int(rnd.expovariate(1 / 200)))]  # mostly recent events
            while target.header.author == author.public_key:
                author = rnd.choice(keys)
            body: dict[str, Any] = {"event": target.id, "verdict": "accept" if rnd.random() < 0.95 else "reject",
                                    "member": proof[author.public_key]}
            if rnd.random() < 0.1:
                body["note"] = "checked with the timesheet"
            chains.append(author, "vf.endorse", body, ts)
    return chains.genesis, chains.entries[1:]


async def build_store(path: Path, members: int, events: int, endorsements: int) -> None:
    t = time.perf_counter()
    genesis, entries = build_entries(members, events, endorsements)
    signed_s = time.perf_counter() - t
    async with await Store.open(path) as store:
        result = await store.ingest([genesis])
        assert len(result.stored) == 1, result
        for i in range(0, len(entries), BATCH):
            result = await store.ingest(entries[i : i + BATCH])
            assert len(result.stored) == len(entries[i : i + BATCH]), result
    kinds = Counter(e.kind for e in entries)
    print(f"built   {1 + len(entries):,} entries ({', '.join(f'{n:,} {k}' for k, n in sorted(kinds.items()))}) "
          f"in {time.perf_counter() - t:.1f} s ({signed_s:.1f} s signing)")
    print(f"ledger  {genesis.id}")


def _build_in_child(path: str, members: int, events: int, endorsements: int) -> None:
    asyncio.run(build_store(Path(path), members, events, endorsements))


# ---- benchmarks ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Context:
    store: Store
    ledger: CID
    repeat: int
    reference: bool = True  # compare with compute_state (at 1M: minutes and ~3.5 GB)


def rss_peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def rss_now_bytes() -> int:
    with open("/proc/self/statm") as statm:  # Linux: sizes in pages, the second the resident set
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


async def bench_state(ctx: Context) -> None:
    """Rebuild the state from the store: load_state, then its two halves apart."""
    gc.collect()
    rss_before = rss_peak_bytes()
    best_total = best_cpu = float("inf")
    count = 0
    state = None
    for _ in range(ctx.repeat):
        state = None
        gc.collect()
        t, cpu = time.perf_counter(), time.process_time()
        state = await load_state(ctx.store, ctx.ledger)
        best_total = min(best_total, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.process_time() - cpu)
        assert state is not None
        count = len(state.status)
    rss_growth = rss_peak_bytes() - rss_before
    assert state is not None
    final = sum(1 for c in state.contributions if c.status == FINAL)

    best_load = best_compute = float("inf")
    for _ in range(ctx.repeat):
        stored = None
        gc.collect()
        t = time.perf_counter()
        stored = await read_ledger(ctx.store, ctx.ledger)
        best_load = min(best_load, time.perf_counter() - t)
        assert stored is not None
        t = time.perf_counter()
        state_of(stored)
        best_compute = min(best_compute, time.perf_counter() - t)
    del stored

    state = None
    gc.collect()
    tracemalloc.start()
    state = await load_state(ctx.store, ctx.ledger)
    peak = tracemalloc.get_traced_memory()[1]
    gc.collect()
    kept = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert state is not None

    rate = count / best_total
    print(f"state   {len(state.members)} members, {count:,} entries, {len(state.contributions):,} contributions "
          f"({final:,} final), {len(state.invalid)} invalid, {len(state.waiting)} waiting")
    print(f"rebuild {rate:9,.0f} entries/s  ({best_total:.2f} s for load_state, best of {ctx.repeat})  "
          f"ratio to goal {rate / STATE_GOAL_PER_S:.2f} (goal >= {STATE_GOAL_PER_S:,} entries/s)")
    print(f"  cpu     {count / best_cpu:9,.0f} entries/s  ({best_cpu:.2f} s of CPU time in this process, "
          f"SQLite's thread included: what a busy machine's wall clock hides)")
    print(f"  load    {count / best_load:9,.0f} entries/s  ({best_load:.2f} s: read_ledger, read from SQLite + "
          f"decode, no signature checks; {best_load / (best_load + best_compute):.0%})")
    print(f"  compute {count / best_compute:9,.0f} entries/s  ({best_compute:.2f} s: state_of, compute_state; "
          f"{best_compute / (best_load + best_compute):.0%})")
    print(f"memory  peak {mb(peak)} during one rebuild (tracemalloc), {peak / count:,.0f} B/entry")
    print(f"memory  kept {mb(kept)} by the state once built (tracemalloc), {kept / count:,.0f} B/entry")
    print(f"memory  RSS grew {mb(rss_growth)} over the first rebuild (peak RSS, getrusage)")


async def bench_distribution(ctx: Context) -> None:
    """The value equation over this ledger's final contributions (a preview), the cost of a recorded
    distribution in a state rebuild (every node recomputes it), then scripts/bench_distribute.py's
    year of 100,000 events. Goal: under a second to distribute."""
    from bench_distribute import GOAL_S, bench_distribute  # scripts/ is on sys.path when run as a script

    from protocol import ledger_ops
    from protocol.distribution import DISTRIBUTION_KIND

    stored = await read_ledger(ctx.store, ctx.ledger)
    assert stored is not None
    state = state_of(stored)
    final = sum(1 for c in state.contributions if c.status == FINAL)
    best = float("inf")
    for _ in range(ctx.repeat):
        t = time.perf_counter()
        payout = ledger_ops.preview_distribution(state, amount="100000", unit="euro")
        best = min(best, time.perf_counter() - t)
    print(f"distribute {best:.3f} s  (preview of 100,000 euro over {final:,} final contributions, "
          f"{len(payout.lines)} lines; goal < {GOAL_S:.0f} s)")
    founder = member_key(0)
    head = max((e for e in stored.entries if e.header.author == founder.public_key), key=lambda e: e.seq,
               default=stored.genesis)
    append = ledger_ops.record_distribution(state, founder.did, payout, head.header.ts + 1)
    recorded = create_entry(founder, ledger=ctx.ledger, seq=head.seq + 1, prev=head.id, ts=append.ts,
                            kind=DISTRIBUTION_KIND, body=append.body)
    best_with = float("inf")
    for _ in range(ctx.repeat):
        t = time.perf_counter()
        with_one = compute_state(stored.genesis, [*stored.entries, recorded], stored.forks)
        best_with = min(best_with, time.perf_counter() - t)
    assert with_one.status[recorded.id.raw] == "valid" and len(with_one.distributions) == 1, with_one.invalid
    best_without = float("inf")
    for _ in range(ctx.repeat):
        t = time.perf_counter()
        compute_state(stored.genesis, stored.entries, stored.forks)
        best_without = min(best_without, time.perf_counter() - t)
    print(f"  record   +{best_with - best_without:.3f} s per recorded distribution in a state rebuild "
          f"({best_with:.2f} s with one, {best_without:.2f} s without: every node recomputes it)")
    bench_distribute(runs=ctx.repeat)


FOLD_STEP_GOAL_MS = 50  # issue 15: state current again after one new entry, p99
FOLD_RATE_GOAL = 30_000  # entries/s for a full rebuild at 100k (25k at 1M)
APPENDS = 200
TRACE_UP_TO = 200_000  # a node's fold is traced (tracemalloc: twice as slow) up to this many entries


async def bench_fold(ctx: Context) -> None:
    """protocol/fold.py: the ledger read and folded as the node does (node/store/ledgers.py fold_ledger: in time
    order, FOLD_CHUNK entries at a time) but for its newest APPENDS entries, then that read alone (`bench_read`),
    then those entries arriving one at a time, each followed by the state (the node's case); with `reference`, a
    full fold of entries in memory against compute_state too."""
    from node.store.ledgers import FOLD_CHUNK, collector_paused, fold_ledger
    from node.store.reads import StoredRow, decode_rows
    from protocol.fold import LedgerFold

    # First, while this process is small: its peak RSS is then this fold's.
    gc.collect()
    rss_before, t, cpu = rss_now_bytes(), time.perf_counter(), time.process_time()
    genesis = await ctx.store.genesis(ctx.ledger)
    assert genesis is not None
    fold = LedgerFold(genesis, {}, keep_entries=False)  # the bench's ledger has no forks
    newest: list[Entry] = []  # the newest entries read so far: held back, to arrive one at a time after

    def fold_rows(into: LedgerFold, rows: list[StoredRow]) -> None:  # as fold_ledger's worker thread does, but
        with collector_paused():  # for the newest
            newest.extend(decode_rows(rows)[0])
            into.add(newest[:-APPENDS])
            del newest[:-APPENDS]

    async for rows in ctx.store.fold_rows(ctx.ledger, size=FOLD_CHUNK):
        await asyncio.to_thread(fold_rows, fold, rows)
    count = len(fold.state().status) + len(newest)
    node_s, node_cpu = time.perf_counter() - t, time.process_time() - cpu
    gc.collect()
    grew = rss_now_bytes() - rss_before
    # CPU: every thread of this process (SQLite's reader too): what the load moves less than the wall time.
    print(f"node    {count / node_s:9,.0f} entries/s  read + fold + state, as the node folds ({node_s:.2f} s, CPU "
          f"{count / node_cpu:,.0f} entries/s; goal >= {FOLD_RATE_GOAL:,}/s, ratio "
          f"{count / node_s / FOLD_RATE_GOAL:.2f}); RSS grew {mb(grew)} "
          f"({grew / count:,.0f} B/entry) to {mb(rss_now_bytes())}, peak {mb(rss_peak_bytes())} (goal <= 500 MB at 1M)")
    read_s, read_cpu = await bench_read(ctx)
    print(f"  read    {count / read_s:9,.0f} entries/s  the read alone, as the node reads for a fold (in time order, "
          f"{FOLD_CHUNK:,} rows a hop, decoded in a thread: {read_s:.2f} s; CPU {count / read_cpu:,.0f} entries/s)")
    steps: list[float] = []
    for entry in newest:
        t = time.perf_counter()
        fold.add([entry])
        state = fold.state()
        steps.append(time.perf_counter() - t)
    steps.sort()
    p50, p99 = steps[len(steps) // 2] * 1000, steps[int(len(steps) * 0.99)] * 1000
    print(f"  append  one entry then its state: p50 {p50:.1f} ms, p99 {p99:.1f} ms over {APPENDS} "
          f"(the read + fold: {node_s * 1000:,.0f} ms, {node_s * 1000 / p99:,.0f}x the p99); "
          f"goal p99 <= {FOLD_STEP_GOAL_MS} ms, ratio {p99 / FOLD_STEP_GOAL_MS:.2f}")
    del fold
    if count <= TRACE_UP_TO:
        gc.collect()
        tracemalloc.start()
        node_fold = await fold_ledger(ctx.store, ctx.ledger)
        assert node_fold is not None
        node_fold.state()
        peak = tracemalloc.get_traced_memory()[1]
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        del node_fold
        print(f"  memory  read + fold peak {mb(peak)} ({peak / count:,.0f} B/entry), the fold keeps {mb(kept)} "
              f"({kept / count:,.0f} B/entry; goal <= 500 B/entry) (tracemalloc)")
    if not ctx.reference:
        return
    stored = await read_ledger(ctx.store, ctx.ledger)
    assert stored is not None
    assert state == compute_state(stored.genesis, stored.entries, stored.forks)  # the appends' fold, checked
    best_full = best_fold = float("inf")
    for _ in range(ctx.repeat):
        gc.collect()
        t = time.perf_counter()
        state_of(stored)  # compute_state, the collector paused as the node does
        best_full = min(best_full, time.perf_counter() - t)
        gc.collect()
        t = time.perf_counter()
        with collector_paused():  # as the node folds
            in_memory = LedgerFold(stored.genesis, stored.forks, keep_entries=False)
            in_memory.add(stored.entries)
            in_memory.state()
        best_fold = min(best_fold, time.perf_counter() - t)
        del in_memory
    rate = count / best_fold
    print(f"fold    {rate:9,.0f} entries/s  full fold + state, entries in memory ({best_fold:.2f} s), compute_state "
          f"{count / best_full:,.0f}/s ({best_full:.2f} s): ratio {best_full / best_fold:.2f}; "
          f"goal >= {FOLD_RATE_GOAL:,}/s, ratio to goal {rate / FOLD_RATE_GOAL:.2f}")
    print(f"  rss     peak RSS {mb(rss_peak_bytes())} in this process")


async def bench_read(ctx: Context) -> tuple[float, float]:
    """fold_ledger's read without its fold: wall and CPU seconds (this process's, SQLite's thread included)."""
    from node.store.ledgers import FOLD_CHUNK, collector_paused
    from node.store.reads import StoredRow, decode_rows

    def decode(rows: list[StoredRow]) -> None:
        with collector_paused():
            decode_rows(rows)

    gc.collect()
    t, cpu = time.perf_counter(), time.process_time()
    async for rows in ctx.store.fold_rows(ctx.ledger, size=FOLD_CHUNK):
        await asyncio.to_thread(decode, rows)
    return time.perf_counter() - t, time.process_time() - cpu


RESTART_GOAL_S = 2.0  # issue 15: a restarted node shows a 1M-entry ledger's first page within 2 s


async def bench_restart(ctx: Context) -> None:
    """A node's restart with this ledger: LedgerStates folding it from scratch (no snapshot) and saving its
    snapshot as the node stops, then fresh LedgerStates on the store opened again reading the state back
    (node/store/snapshots.py, every check included), in this process."""
    from node.store.states import LedgerStates

    with sqlite3.connect(ctx.store.path) as db:  # a snapshot left by an earlier run would be read back
        db.execute("DELETE FROM snapshots")
    gc.collect()
    states = LedgerStates(ctx.store)
    t = time.perf_counter()
    state = await states.get(ctx.ledger)
    fold_s = time.perf_counter() - t
    t = time.perf_counter()
    await states.save(ctx.ledger)  # waits for the snapshot saved after the fold, its fold included
    await states.aclose()
    save_s = time.perf_counter() - t
    del states
    with sqlite3.connect(ctx.store.path) as db:
        (size,) = db.execute("SELECT length(state) FROM snapshots").fetchone()
    assert state is not None
    count = len(state.status)
    best = float("inf")
    peak = 0
    for i in range(ctx.repeat + 1):  # the last run, untimed, traces the memory
        gc.collect()
        if i == ctx.repeat:
            tracemalloc.start()
        t = time.perf_counter()
        async with await Store.open(ctx.store.path) as store:
            again = LedgerStates(store)
            restored = await again.get(ctx.ledger)
            if i < ctx.repeat:
                best = min(best, time.perf_counter() - t)
            assert restored == state and not again.folded(), "the state was not read back"
            again.close()
        if i == ctx.repeat:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        del restored
    print(f"restart {best:.2f} s: store opened, state read back from its snapshot ({mb(size)}, {size / count:,.0f} "
          f"B/entry, saved in {save_s:.2f} s; best of {ctx.repeat}); folding it instead: {fold_s:.2f} s, "
          f"ratio {fold_s / best:,.0f}x; goal <= {RESTART_GOAL_S} s at 1M, ratio {best / RESTART_GOAL_S:.2f}")
    print(f"  memory  peak {mb(peak)} while reading it back (tracemalloc), {peak / count:,.0f} B/entry")
    await bench_first_entry(ctx, state, fold_s)


async def bench_first_entry(ctx: Context, state: LedgerState, fold_s: float) -> None:
    """After a restart: the fold read back from the snapshot in the background, and the first new entry (a
    founder's member.about, appended in the store) until the state is current again, timed from the restore."""
    from node.store.states import LedgerStates

    with sqlite3.connect(ctx.store.path) as db:
        (fold_size,) = db.execute("SELECT coalesce(sum(length(bytes)), 0) FROM fold_parts").fetchone()
    founder = member_key(0)
    said: list[str] = []
    seen = logging.getLogger("node.store.states")
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    seen.addHandler(handler)
    seen.setLevel(logging.INFO)
    async with await Store.open(ctx.store.path, key=founder) as store:
        again = LedgerStates(store)
        t = time.perf_counter()
        restored = await again.get(ctx.ledger)
        assert restored is not None
        restore_s = time.perf_counter() - t
        t = time.perf_counter()
        await store.append(ledger_ops.about(restored, founder.did, f"Founder {time.time_ns()}", wall_clock_ms()))
        current = await again.get(ctx.ledger)
        first_s = time.perf_counter() - t
        assert current is not None and len(current.status) == len(restored.status) + 1
        scratch = "folded from scratch" if "ledger folded" in said else "into the fold read back"
        t = time.perf_counter()
        await store.append(ledger_ops.about(current, founder.did, f"Founder {time.time_ns()}", wall_clock_ms()))
        second = await again.get(ctx.ledger)
        second_s = time.perf_counter() - t
        assert second is not None
        await again.aclose()
    seen.removeHandler(handler)
    print(f"  first entry after a restart: state current again {first_s:.2f} s after it was read back "
          f"({restore_s:.2f} s; {scratch}; the fold's snapshot {mb(fold_size)}), the next one "
          f"{second_s * 1000:.0f} ms; folding from scratch: {fold_s:.2f} s")


BENCHES: dict[str, Callable[[Context], Awaitable[None]]] = {
    "state": bench_state,
    "fold": bench_fold,
    "restart": bench_restart,
    "distribute": bench_distribution,
}


async def run(path: Path, names: list[str], repeat: int, reference: bool = True) -> None:
    async with await Store.open(path) as store:
        ledgers = [info.id for info in await store.ledgers()]
        assert len(ledgers) == 1, ledgers
        ctx = Context(store, ledgers[0], repeat, reference)
        print("load average {:.2f} {:.2f} {:.2f} on {} cpus".format(*os.getloadavg(), os.cpu_count() or 0))
        for name in names:
            await BENCHES[name](ctx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--endorsements", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--store", type=Path, help="reuse (or build once into) this store file")
    parser.add_argument("--only", choices=sorted(BENCHES), action="append", help="run only these benchmarks")
    parser.add_argument("--no-reference", action="store_true",
                        help="fold: no compute_state to compare with (at 1M it takes minutes and ~3.5 GB)")
    args = parser.parse_args()
    tune_gc()  # as `tally` does
    with tempfile.TemporaryDirectory(prefix="tally-bench-") as d:
        path = args.store or Path(d) / "ledger.sqlite3"
        if not path.exists():
            # A child process builds it: this one's memory stays the rebuild's alone.
            child = multiprocessing.get_context("spawn").Process(
                target=_build_in_child, args=(str(path), args.members, args.events, args.endorsements)
            )
            child.start()
            child.join()
            if child.exitcode != 0:
                raise SystemExit(f"building the ledger failed (exit code {child.exitcode})")
        asyncio.run(run(path, args.only or list(BENCHES), args.repeat, not args.no_reference))


if __name__ == "__main__":
    main()
