"""A ledger as read from the store, and its state folded from it: the same code in the node's process and
in the child that computes a big ledger's state (node/store/worker.py), so both give the same state."""

from __future__ import annotations

import gc
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from node.store import store as store_file
from node.store.store import Store
from protocol import CID, Entry, ForkProof
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
    entries = [e async for e in store.log(ledger)]
    return StoredLedger(genesis, entries, _fork_points(await store.forks(), ledger))


def read_ledger_file(path: Path, ledger: CID) -> StoredLedger | None:
    """`read_ledger` from the store's file, in another process (node/store/worker.py)."""
    entries, proofs = store_file.read_ledger_file(path, ledger)
    genesis = next((e for e in entries if e.id == ledger and e.is_genesis), None)
    return None if genesis is None else StoredLedger(genesis, entries, _fork_points(proofs, ledger))


def _fork_points(proofs: Sequence[ForkProof], ledger: CID) -> dict[bytes, int]:
    """Each forked author's lowest forked seq in `ledger`."""
    forks: dict[bytes, int] = {}
    for proof in proofs:
        if proof.a.ledger_id == ledger:
            author = proof.a.header.author
            forks[author] = min(forks.get(author, proof.seq), proof.seq)
    return forks


def state_of(stored: StoredLedger) -> LedgerState:
    """compute_state with the cycle collector paused.

    The state keeps a few objects per entry alive until it returns, so each full
    collection meanwhile rescans that growing heap and finds no garbage: ~15 % of
    the time on a 100,000-entry ledger. It runs without awaiting, so no other task
    of the event loop runs meanwhile; reference counting still frees everything else.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return compute_state(stored.genesis, stored.entries, stored.forks)
    finally:
        if enabled:
            gc.enable()


async def load_state(store: Store, ledger: CID) -> LedgerState | None:
    """Compute a ledger's state from the store (no cache): for one-shot CLI commands."""
    stored = await read_ledger(store, ledger)
    return None if stored is None else state_of(stored)
