"""A ledger as read from the store, and its state folded from it: from scratch (`load_state`, for one-shot
CLI commands) or into a fold that the node keeps current as entries arrive (`fold_ledger`, node/store/states.py)."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

from node.store.reads import Damage, StoredRow, decode_rows
from node.store.store import Store
from protocol import CID, Entry, ForkProof
from protocol.fold import LedgerFold
from protocol.state import LedgerState, compute_state

log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class StoredLedger:
    """What a ledger's state is computed from, as read from the store."""

    genesis: Entry
    entries: list[Entry]
    forks: dict[bytes, int]  # author's public key -> the seq their chain forked at


async def read_ledger(store: Store, ledger: CID) -> StoredLedger | None:
    """A ledger's entries and fork points, or None when its genesis is not stored here."""
    genesis = await store.genesis(ledger)
    if genesis is None:
        return None
    entries: list[Entry] = []
    with collector_paused():  # a list growing by an object or more per entry: each collection would rescan it
        async for rows in store.log_rows(ledger, size=FOLD_CHUNK):
            decoded, damaged = decode_rows(rows)
            store.report_damaged(damaged)
            entries += decoded
    return StoredLedger(genesis, entries, _fork_points(await store.forks(), ledger))


def _fork_points(proofs: Sequence[ForkProof], ledger: CID) -> dict[bytes, int]:
    """Each forked author's lowest forked seq in `ledger`."""
    forks: dict[bytes, int] = {}
    for proof in proofs:
        if proof.a.ledger_id == ledger:
            author = proof.a.header.author
            forks[author] = min(forks.get(author, proof.seq), proof.seq)
    return forks


def state_of(stored: StoredLedger) -> LedgerState:
    """compute_state with the cycle collector paused (see collector_paused)."""
    with collector_paused():
        return compute_state(stored.genesis, stored.entries, stored.forks)


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cycle collector paused while a ledger is folded.

    A fold keeps a few objects per entry alive, so each full collection meanwhile
    rescans that growing heap and finds no garbage: ~15 % of the time on a
    100,000-entry ledger. Reference counting still frees everything else.

    What was made meanwhile and is still alive is then moved to the oldest generation as it is, untraversed
    (`gc.freeze` then `gc.unfreeze`): left young, the first collection after the pause went through all of it
    (after each 10,000 entries of a fold from the store, ~70 ms: 12 % of the fold's time), and every 20th again.
    Not while another fold is frozen (node/store/keeping.py): that would unfreeze it.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if not gc.get_freeze_count():
                gc.freeze()
                gc.unfreeze()
            gc.enable()


#: Entries read from the store, then folded, at a time (`fold_ledger`): a big ledger's bytes and payloads are
#: never all in memory at once, only what the fold keeps of them.
FOLD_CHUNK: Final = 10_000


async def fold_ledger(store: Store, ledger: CID) -> LedgerFold | None:
    """A fold of the ledger's stored entries, or None when its genesis is not stored here. They are read in
    time order (`fold_rows`), decoded in one pass (`decode_rows`) and folded FOLD_CHUNK at a time in a worker
    thread (the event loop keeps serving meanwhile), so the read never holds the whole ledger. It keeps no
    entries: a ledger with key events is folded whole
    instead (`LedgerFold.keyed`), so its read stops at the first."""
    genesis = await store.genesis(ledger)
    if genesis is None:
        return None
    fold = LedgerFold(genesis, _fork_points(await store.forks(), ledger), keep_entries=False)
    async for rows in store.fold_rows(ledger, size=FOLD_CHUNK):
        store.report_damaged(await asyncio.to_thread(_fold, fold, rows))
        if fold.keyed:
            break
    return fold


def _fold(fold: LedgerFold, rows: list[StoredRow]) -> list[Damage]:
    """Decode stored rows and fold them, in a worker thread: the event loop only hands the rows over."""
    with collector_paused():
        entries, damaged = decode_rows(rows)
        fold.add(entries)
    return damaged


async def load_state(store: Store, ledger: CID) -> LedgerState | None:
    """Compute a ledger's state from the store (no cache): for one-shot CLI commands, and ledgers folded whole.

    Whoever computes a state honours the erasures in it (SPEC.md §20): payloads it erased that are still
    stored are dropped from the store there and then."""
    loaded = await load_state_with_forks(store, ledger)
    return None if loaded is None else loaded[0]


async def load_state_with_forks(store: Store, ledger: CID) -> tuple[LedgerState, dict[bytes, int]] | None:
    """`load_state`, with the fork points it was computed with (what its snapshot covers)."""
    stored = await read_ledger(store, ledger)
    if stored is None:
        return None
    state = state_of(stored)
    if state.erased:
        held = {e.id.raw for e in stored.entries if e.payload_raw is not None}
        await store.erase_payloads([e.id for e in state.erased if e.id.raw in held])
    return state, stored.forks
