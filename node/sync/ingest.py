"""Taking in entries from elsewhere: decode, verify, link-check, store.

The node decodes (SPEC §5.4 steps 1-7) on one thread off the event loop, so the loop keeps
answering while a large batch decodes. For large batches, the costliest check runs in worker
processes (node/sync/verify_worker.py: a small Python that imports only `protocol`, rather than
multiprocessing's, which re-imports the whole node), where it neither waits for the GIL nor
holds up decoding: the signature (step 8). The payload's canonical form (step 7) is checked by
the decoding thread, which decodes the payload anyway: in a worker it cost twice what it adds
to the thread, and the workers are the busier side (README, Performance). Smaller batches are
checked on the decoding thread (handing them to a process costs more than it saves), and the
smallest (a live push) on the event loop, which is quicker than any hand-off. Every path runs
the same checks (`decode_entry`'s, and libsodium's `crypto_sign_open` through PyNaCl), so what
is accepted, and the code of what is refused, is the same. Nothing is stored, let alone
acknowledged, before the whole batch is checked; storing commits before anything is reported
(node/store/store.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections import deque
from collections.abc import AsyncIterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Final

from node.store.store import Store
from node.sync.verify_worker import SIG_OK, Job, check_jobs, encode_batch
from protocol import Entry, InvalidData, decode_entry
from protocol.entry import signing_bytes_of

log = logging.getLogger(__name__)

RawEntry = tuple[bytes, bytes | None]  # (header bytes, payload bytes or None)
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
_LOOKAHEAD: Final = 4  # batches `ingest_batches` checks ahead of the one it stores
GROUP_BATCHES: Final = 8  # batches `ingest_batches` stores in one transaction at most


@dataclass(slots=True)
class Checked:
    """The outcome of decoding and verifying a batch, in input order."""

    entries: list[Entry] = field(default_factory=list)
    refused: list[tuple[int, InvalidData]] = field(default_factory=list)  # (input index, error)


def _decode(raws: Sequence[RawEntry]) -> tuple[list[Entry | InvalidData], list[Job]]:
    """Decode each entry in full but for its signature (steps 1-7 of §5.4); the signature checks of those that
    decoded, as the workers take them (without the payload, checked here: their PAYLOAD_OK is then always set)."""
    decoded: list[Entry | InvalidData] = []
    jobs: list[Job] = []
    for header, payload in raws:
        try:
            entry = decode_entry(header, payload, check_signature=False)
        except InvalidData as exc:
            decoded.append(exc)
            continue
        decoded.append(entry)
        jobs.append((entry.header.author, entry.header.sig + signing_bytes_of(entry), None))
    return decoded, jobs


def _signed(answers: bytes) -> list[bool]:
    return [bool(answer & SIG_OK) for answer in answers]


def _decode_and_verify(raws: Sequence[RawEntry]) -> tuple[list[Entry | InvalidData], list[bool]]:
    decoded, jobs = _decode(raws)
    return decoded, _signed(check_jobs(jobs))


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


class _Worker:
    """One signature-check process (node/sync/verify_worker.py), one batch at a time."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.turn = asyncio.Lock()

    @classmethod
    async def start(cls) -> _Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "node.sync.verify_worker", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE)
        return cls(proc)

    async def check(self, jobs: Sequence[Job]) -> bytes:
        async with self.turn:
            stdin, stdout = self.proc.stdin, self.proc.stdout
            assert stdin is not None and stdout is not None
            stdin.write(encode_batch(jobs))
            await stdin.drain()
            return await stdout.readexactly(len(jobs))

    def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


class Verifier:
    """Decodes raw entries on a thread and checks their signatures, in worker processes for
    batches of at least `pool_min` signatures (`workers` of them, started on first use and
    stopped after `idle_s` without such a batch)."""

    def __init__(self, workers: int | None = None, *, pool_min: int = POOL_MIN, idle_s: float = POOL_IDLE_S) -> None:
        self._count = workers or min(MAX_WORKERS, os.cpu_count() or 2)
        self.pool_min = pool_min
        self.idle_s = idle_s
        self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")
        self._workers: list[_Worker] = []
        self._starting = asyncio.Lock()
        self._idle: asyncio.TimerHandle | None = None
        self._busy = 0  # batches in the workers now
        self._stopping: asyncio.Task[None] | None = None  # idle workers being stopped

    @property
    def worker_pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers]

    async def aclose(self) -> None:
        await self._stop_workers()
        self._decoder.shutdown(wait=True)

    async def _stop_workers(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.stop()
        for worker in workers:
            await worker.proc.wait()  # reaped, its pipes closed

    async def __aenter__(self) -> Verifier:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def check(self, raws: Sequence[RawEntry]) -> Checked:
        """Decode every entry (refusing bad bytes with their code) and verify signatures."""
        loop = asyncio.get_running_loop()
        if len(raws) <= INLINE_MAX:
            return _verdicts(*_decode_and_verify(raws))  # a live push: no hop to a thread and back
        if len(raws) < self.pool_min:
            decoded, valid = await loop.run_in_executor(self._decoder, _decode_and_verify, raws)
            return _verdicts(decoded, valid)
        decoded, jobs = await loop.run_in_executor(self._decoder, _decode, raws)
        return _verdicts(decoded, _signed(await self._check_in_workers(jobs)))

    async def _check_in_workers(self, jobs: list[Job]) -> bytes:
        loop = asyncio.get_running_loop()
        if len(jobs) < self.pool_min:  # most of the batch failed to decode: not worth the hop
            return await loop.run_in_executor(self._decoder, check_jobs, jobs)
        if self._idle is not None:
            self._idle.cancel()
        # Workers hold memory (a Python each): they go when no large batch came for idle_s.
        self._idle = loop.call_later(self.idle_s, self._when_idle)
        self._busy += 1
        try:
            async with self._starting:
                if not self._workers:
                    self._workers = list(await asyncio.gather(*(_Worker.start() for _ in range(self._count))))
            workers = self._workers
            size = -(-len(jobs) // len(workers))  # one even share per worker
            shares = range(0, len(jobs), size)  # as many as workers, or fewer
            parts = await asyncio.gather(*(
                worker.check(jobs[i : i + size]) for worker, i in zip(workers, shares, strict=False)
            ))
        except (OSError, ValueError, TypeError, asyncio.IncompleteReadError) as exc:
            # A worker died (killed, out of memory) or cannot start: check here; new workers next time.
            log.warning("signature workers failed (%r); checking %d entries on a thread", exc, len(jobs))
            await self._stop_workers()
            return await loop.run_in_executor(self._decoder, check_jobs, jobs)
        finally:
            self._busy -= 1
        return b"".join(parts)

    def _when_idle(self) -> None:
        if self._busy:  # a batch slower than idle_s: wait for it
            self._idle = asyncio.get_running_loop().call_later(self.idle_s, self._when_idle)
        else:
            self._stopping = asyncio.get_running_loop().create_task(self._stop_workers())


@dataclass(slots=True)
class IngestTotals:
    stored: int = 0
    duplicates: int = 0
    forks: int = 0
    gaps: int = 0
    refused: int = 0


async def ingest_batches(store: Store, verifier: Verifier, batches: AsyncIterable[Sequence[RawEntry]]) -> IngestTotals:
    """Ingest a stream of batches: they are decoded and verified ahead (up to _LOOKAHEAD at once) while earlier
    ones are stored, each batch's check starting as soon as there is room, not when a commit ends. The batches
    checked by the time a commit ends go into the next transaction together (group commit: a slow fsync makes
    fewer, larger commits). Batches must keep each chain in seq order; they are stored in the order given, all
    committed before this returns."""
    totals = IngestTotals()
    checks: deque[asyncio.Task[Checked]] = deque()
    room = asyncio.Semaphore(_LOOKAHEAD)
    news = asyncio.Event()
    finished = False

    async def produce() -> None:
        nonlocal finished
        try:
            async for raws in batches:
                await room.acquire()
                checks.append(asyncio.create_task(verifier.check(raws)))
                news.set()
        finally:
            finished = True
            news.set()

    producer = asyncio.create_task(produce())
    try:
        while True:
            while not checks and not finished:
                news.clear()
                await news.wait()
            if not checks:
                break
            group = [await checks[0]]
            checks.popleft()
            room.release()
            # What else is checked already joins this transaction, in order.
            while checks and checks[0].done() and len(group) < GROUP_BATCHES:
                group.append(checks.popleft().result())
                room.release()
            r = await store.ingest([e for checked in group for e in checked.entries])
            totals.refused += sum(len(checked.refused) for checked in group) + len(r.refused)
            totals.stored += len(r.stored)
            totals.duplicates += r.duplicates
            totals.forks += len(r.forks)
            totals.gaps += len(r.gaps)
        await producer  # its error, if the batches' iterator failed
    finally:
        producer.cancel()
        for task in checks:
            task.cancel()
    return totals
