"""Taking in entries from elsewhere: decode, verify, link-check, store.

The node decodes (SPEC §5.4 steps 1-7) on one thread off the event loop, so the loop keeps
answering while a large batch decodes; signature checks (step 8) of large batches run in
worker processes, where they neither wait for the GIL nor hold up decoding. Smaller batches
are verified on the decoding thread (handing them to a process costs more than it saves),
and the smallest (a live push) on the event loop, which is quicker than any hand-off. Every
path runs the same decoder and libsodium's `crypto_sign_open` through PyNaCl
(`protocol.identity.verify_many`), so what is accepted is the same.
Nothing is stored, let alone acknowledged, before the whole batch is checked; storing
commits before anything is reported (node/store/store.py).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
from collections.abc import AsyncIterable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Final

from node.store.rows import IngestResult
from node.store.store import Store
from protocol import Entry, InvalidData, decode_entry
from protocol.entry import signing_bytes_of
from protocol.identity import verify_many

log = logging.getLogger(__name__)

RawEntry = tuple[bytes, bytes | None]  # (header bytes, payload bytes or None)
Triple = tuple[bytes, bytes, bytes]  # (public key, signature, signed bytes)
#: Batches with at least this many signatures go to the worker processes, smaller ones are
#: checked on the decoding thread. Measured by `scripts/bench_chain.py --crossover` (README).
POOL_MIN: Final = 128
#: Batches this small (live pushes) are checked on the event loop itself: well under a
#: millisecond, less than a thread hand-off costs when the loop is busy.
INLINE_MAX: Final = 4
#: Worker processes are stopped after this long without a batch for them (started again on the next).
POOL_IDLE_S: Final = 60.0
#: Worker processes at most: libsodium is single-threaded per call, one per core is enough.
MAX_WORKERS: Final = 4
_LOOKAHEAD: Final = 2  # batches `ingest_batches` checks at once (one decodes while one verifies)


@dataclass(slots=True)
class Checked:
    """The outcome of decoding and verifying a batch, in input order."""

    entries: list[Entry] = field(default_factory=list)
    refused: list[tuple[int, InvalidData]] = field(default_factory=list)  # (input index, error)


def _decode(raws: Sequence[RawEntry]) -> tuple[list[Entry | InvalidData], list[Triple]]:
    """Decode each entry (steps 1-7 of §5.4); the signatures of those that decoded, to check."""
    decoded: list[Entry | InvalidData] = []
    triples: list[Triple] = []
    for header, payload in raws:
        try:
            entry = decode_entry(header, payload, check_signature=False)
        except InvalidData as exc:
            decoded.append(exc)
            continue
        decoded.append(entry)
        triples.append((entry.header.author, entry.header.sig, signing_bytes_of(entry)))
    return decoded, triples


def _decode_and_verify(raws: Sequence[RawEntry]) -> tuple[list[Entry | InvalidData], list[bool]]:
    decoded, triples = _decode(raws)
    return decoded, verify_many(triples)


def _verdicts(decoded: list[Entry | InvalidData], valid: Sequence[bool]) -> Checked:
    result = Checked()
    checks = iter(valid)
    for index, item in enumerate(decoded):
        if isinstance(item, InvalidData):
            result.refused.append((index, item))
        elif next(checks):
            result.entries.append(item)
        else:
            result.refused.append((index, InvalidData("bad_signature", f"signature of {item.id} does not verify")))
    return result


class Verifier:
    """Decodes raw entries on a thread and checks their signatures, in worker processes for
    batches of at least `pool_min` signatures (`workers` of them, started on first use)."""

    def __init__(self, workers: int | None = None, *, pool_min: int = POOL_MIN, idle_s: float = POOL_IDLE_S) -> None:
        self._workers = workers or min(MAX_WORKERS, os.cpu_count() or 2)
        self.pool_min = pool_min
        self.idle_s = idle_s
        self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")
        self._pool: ProcessPoolExecutor | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._busy = 0  # batches in the workers now

    @property
    def workers_running(self) -> bool:
        return self._pool is not None

    def close(self) -> None:
        self._stop_workers(wait=True)
        self._decoder.shutdown(wait=True)

    def _stop_workers(self, *, wait: bool = False) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    async def check(self, raws: Sequence[RawEntry]) -> Checked:
        """Decode every entry (refusing bad bytes with their code) and verify signatures."""
        loop = asyncio.get_running_loop()
        if len(raws) <= INLINE_MAX:
            return _verdicts(*_decode_and_verify(raws))  # a live push: no hop to a thread and back
        if len(raws) < self.pool_min:
            decoded, valid = await loop.run_in_executor(self._decoder, _decode_and_verify, raws)
            return _verdicts(decoded, valid)
        decoded, triples = await loop.run_in_executor(self._decoder, _decode, raws)
        return _verdicts(decoded, await self._verify_in_workers(triples))

    async def _verify_in_workers(self, triples: list[Triple]) -> list[bool]:
        loop = asyncio.get_running_loop()
        if len(triples) < self.pool_min:
            return await loop.run_in_executor(self._decoder, verify_many, triples)
        if self._idle is not None:
            self._idle.cancel()
        if self._pool is None:
            # Spawned, not forked: this process runs threads (SQLite, the decoder) that a fork would copy mid-step.
            # They ignore Ctrl-C (sent to the whole process group): the node stops them itself.
            self._pool = ProcessPoolExecutor(self._workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=signal.signal, initargs=(signal.SIGINT, signal.SIG_IGN))
        # Workers hold memory (a Python each): they go when no large batch came for idle_s.
        self._idle = loop.call_later(self.idle_s, self._when_idle)
        size = -(-len(triples) // self._workers)  # one even share per worker
        self._busy += 1
        try:
            parts = await asyncio.gather(*(
                loop.run_in_executor(self._pool, verify_many, triples[i : i + size])
                for i in range(0, len(triples), size)
            ))
        except BrokenProcessPool:
            # A worker died (killed, out of memory): check here, and start new workers next time.
            log.warning("signature workers stopped; verifying %d signatures on a thread", len(triples))
            self._stop_workers()
            return await loop.run_in_executor(self._decoder, verify_many, triples)
        finally:
            self._busy -= 1
        return [ok for part in parts for ok in part]

    def _when_idle(self) -> None:
        if self._busy:  # a batch slower than idle_s: wait for it
            self._idle = asyncio.get_running_loop().call_later(self.idle_s, self._when_idle)
        else:
            self._stop_workers()


@dataclass(slots=True)
class IngestTotals:
    stored: int = 0
    duplicates: int = 0
    forks: int = 0
    gaps: int = 0
    refused: int = 0


async def ingest_batches(store: Store, verifier: Verifier, batches: AsyncIterable[Sequence[RawEntry]]) -> IngestTotals:
    """Ingest a stream of batches: while one batch is stored, the next ones decode and verify
    (up to _LOOKAHEAD at once). Batches must keep each chain in seq order; they are stored in
    the order given, each in one transaction committed before the next is stored."""
    totals = IngestTotals()
    checking: list[asyncio.Task[Checked]] = []
    storing: asyncio.Task[IngestResult] | None = None

    async def finish(task: asyncio.Task[IngestResult]) -> None:
        r = await task
        totals.stored += len(r.stored)
        totals.duplicates += r.duplicates
        totals.forks += len(r.forks)
        totals.gaps += len(r.gaps)
        totals.refused += len(r.refused)

    async def store_next() -> None:
        nonlocal storing
        checked = await checking.pop(0)
        totals.refused += len(checked.refused)
        if storing is not None:
            await finish(storing)
        storing = asyncio.create_task(store.ingest(checked.entries))

    try:
        async for raws in batches:
            checking.append(asyncio.create_task(verifier.check(raws)))
            if len(checking) >= _LOOKAHEAD:
                await store_next()
        while checking:
            await store_next()
        if storing is not None:
            await finish(storing)
    finally:
        for task in checking:
            task.cancel()
    return totals
