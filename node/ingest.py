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

from protocol import Entry, InvalidData, decode_entry
from protocol.entry import signing_bytes_of
from protocol.identity import verify_many

from .store import IngestResult, Store

RawEntry = tuple[bytes, bytes | None]  # (header bytes, payload bytes or None)
VERIFY_CHUNK = 128  # entries per pool task: large enough to amortize the hand-off


@dataclass(slots=True)
class Checked:
    """The outcome of decoding and verifying a batch, in input order."""

    entries: list[Entry] = field(default_factory=list)
    refused: list[tuple[int, InvalidData]] = field(default_factory=list)  # (input index, error)


def _signed_items(entries: Sequence[Entry]) -> list[tuple[bytes, bytes, bytes]]:
    return [(e.header.author, e.header.sig, signing_bytes_of(e)) for e in entries]


class Verifier:
    """Decodes raw entries and checks their signatures on `workers` threads."""

    def __init__(self, workers: int | None = None) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2, thread_name_prefix="verify")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    async def check(self, raws: Sequence[RawEntry]) -> Checked:
        """Decode every entry (refusing bad bytes with their code) and verify signatures."""
        # Each chunk goes to the pool as soon as it is decoded, so decoding the
        # next chunk overlaps with verifying this one.
        loop = asyncio.get_running_loop()
        result = Checked()
        chunks: list[list[tuple[int, Entry]]] = []
        pending: list[asyncio.Future[list[bool]]] = []
        chunk: list[tuple[int, Entry]] = []
        for i, (header, payload) in enumerate(raws):
            try:
                chunk.append((i, decode_entry(header, payload, check_signature=False)))
            except InvalidData as exc:
                result.refused.append((i, exc))
            if len(chunk) == VERIFY_CHUNK or (i == len(raws) - 1 and chunk):
                chunks.append(chunk)
                items = _signed_items([e for _, e in chunk])
                pending.append(loop.run_in_executor(self._pool, verify_many, items))
                chunk = []
        verdicts = await asyncio.gather(*pending)
        for done, oks in zip(chunks, verdicts, strict=True):
            for (i, entry), ok in zip(done, oks, strict=True):
                if ok:
                    result.entries.append(entry)
                else:
                    result.refused.append((i, InvalidData("bad_signature", f"signature of {entry.id} does not verify")))
        result.refused.sort(key=lambda item: item[0])
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
