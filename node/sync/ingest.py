"""Taking in entries from elsewhere: decode, verify, link-check, store.

Signature checks dominate the cost, and libsodium releases the GIL while it
verifies, so they run on a thread pool while the event loop decodes the next
batch and SQLite (in aiosqlite's thread) stores the previous one. On two cores
that keeps both busy.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from node.store.store import IngestResult, Store
from protocol import Entry, InvalidData, decode_entry

RawEntry = tuple[bytes, bytes | None]  # (header bytes, payload bytes or None)
VERIFY_CHUNK = 128  # entries per pool task: large enough to amortize the hand-off


@dataclass(slots=True)
class Checked:
    """The outcome of decoding and verifying a batch, in input order."""

    entries: list[Entry] = field(default_factory=list)
    refused: list[tuple[int, InvalidData]] = field(default_factory=list)  # (input index, error)


def _decode_and_verify(raws: Sequence[RawEntry]) -> list[Entry | InvalidData]:
    """Decode then verify each entry in turn (run on a pool thread).

    Item by item rather than phase by phase: the thread drops the GIL inside
    every signature check, so two such threads interleave (one decodes while
    the other verifies) instead of queueing for the GIL behind a long decode.
    """
    out: list[Entry | InvalidData] = []
    for header, payload in raws:
        try:
            out.append(decode_entry(header, payload))
        except InvalidData as exc:
            out.append(exc)
    return out


class Verifier:
    """Decodes raw entries and checks their signatures on `workers` threads."""

    def __init__(self, workers: int | None = None) -> None:
        self._workers = workers or os.cpu_count() or 2
        self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="verify")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    async def check(self, raws: Sequence[RawEntry]) -> Checked:
        """Decode every entry (refusing bad bytes with their code) and verify signatures."""
        loop = asyncio.get_running_loop()
        # Even chunks, at least one per worker, so no thread idles while another has the tail.
        size = max(16, min(VERIFY_CHUNK, -(-len(raws) // self._workers)))
        chunks = [raws[i : i + size] for i in range(0, len(raws), size)]
        outcomes = await asyncio.gather(
            *(loop.run_in_executor(self._pool, _decode_and_verify, chunk) for chunk in chunks)
        )
        result = Checked()
        index = 0
        for outcome in outcomes:
            for item in outcome:
                if isinstance(item, Entry):
                    result.entries.append(item)
                else:
                    result.refused.append((index, item))
                index += 1
        return result


@dataclass(slots=True)
class IngestTotals:
    stored: int = 0
    duplicates: int = 0
    forks: int = 0
    gaps: int = 0
    refused: int = 0


async def ingest_batches(store: Store, verifier: Verifier, batches: AsyncIterable[Sequence[RawEntry]]) -> IngestTotals:
    """Ingest a stream of batches, overlapping the verification of one batch with
    the storing of the one before. Batches must keep each chain in seq order."""
    totals = IngestTotals()
    storing: asyncio.Task[IngestResult] | None = None

    async def finish(task: asyncio.Task[IngestResult]) -> None:
        r = await task
        totals.stored += len(r.stored)
        totals.duplicates += r.duplicates
        totals.forks += len(r.forks)
        totals.gaps += len(r.gaps)
        totals.refused += len(r.refused)

    async for raws in batches:
        checked = await verifier.check(raws)
        totals.refused += len(checked.refused)
        if storing is not None:
            await finish(storing)
        storing = asyncio.create_task(store.ingest(checked.entries))
    if storing is not None:
        await finish(storing)
    return totals
