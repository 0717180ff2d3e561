"""Ledger states computed from the store, cached until their entries change.

The state is a pure function of a ledger's entries (protocol/state.py); this
keeps the last computed one per ledger and drops it when new entries or forks
of that ledger are stored. Membership has its own cache, dropped only when
`member.*` entries or forks arrive, because the sync layer asks "may this peer
see this ledger?" on every request while a big ledger streams in. A ledger of
OFFLOAD_ENTRIES entries or more has its state computed in a child process
(node/store/worker.py), so the node keeps serving meanwhile and its memory
stays small afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from node.store.ledgers import load_state
from node.store.store import Store
from node.store.worker import OFFLOAD_ENTRIES, StateWorker
from protocol import CID, Entry, InvalidData
from protocol.state import LedgerState

log = logging.getLogger(__name__)
MEMBER_KIND_PREFIX = ("member.", "key.")  # kinds that change who may see a ledger (key.*: SPEC.md §19.8)


class LedgerStates:
    def __init__(self, store: Store, *, offload_entries: int | None = OFFLOAD_ENTRIES) -> None:
        """`offload_entries`: from this many entries a state is computed in a child process
        (node/store/worker.py); None: always here."""
        self._store = store
        self._offload_entries = offload_entries or 0
        self._worker = StateWorker(store.path) if offload_entries is not None and StateWorker.available() else None
        self._states: dict[bytes, LedgerState] = {}  # current: no entry arrived since
        self._latest: dict[bytes, LedgerState] = {}  # the last computed, even if entries arrived since
        self._refreshing: dict[bytes, asyncio.Task[LedgerState | None]] = {}
        self._members: dict[bytes, frozenset[str]] = {}
        self._locks: dict[bytes, asyncio.Lock] = {}
        # Bumped on every change of a ledger: a state computed while entries arrived is not cached.
        self._versions: dict[bytes, int] = {}
        self._unsubscribe = store.on_new_entries(self._changed)

    def close(self) -> None:
        self._unsubscribe()
        for task in self._refreshing.values():
            task.cancel()
        if self._worker is not None:
            self._worker.close()

    def _changed(self, entries: Sequence[Entry]) -> None:
        for entry in entries:
            raw = entry.ledger_id.raw
            self._versions[raw] = self._versions.get(raw, 0) + 1
            self._states.pop(raw, None)
            if entry.kind.startswith(MEMBER_KIND_PREFIX) or entry.is_genesis:
                self._members.pop(raw, None)

    def forget(self, ledger: CID) -> None:
        """Drop what is cached for `ledger` (e.g. a fork proof arrived)."""
        self._versions[ledger.raw] = self._versions.get(ledger.raw, 0) + 1
        self._states.pop(ledger.raw, None)
        self._members.pop(ledger.raw, None)

    async def get(self, ledger: CID) -> LedgerState | None:
        """The ledger's state, or None when its genesis is not stored here."""
        cached = self._states.get(ledger.raw)
        if cached is not None:
            return cached
        lock = self._locks.setdefault(ledger.raw, asyncio.Lock())
        async with lock:
            cached = self._states.get(ledger.raw)
            if cached is not None:
                return cached
            version = self._versions.get(ledger.raw, 0)
            if self._worker is not None and await self._store.ledger_size(ledger) >= self._offload_entries:
                started = time.perf_counter()
                state = await self._worker.compute(ledger)
                log.info("ledger state computed in a child process", extra={
                    "ledger": str(ledger), "entries": None if state is None else len(state.status),
                    "ms": round((time.perf_counter() - started) * 1000)})
            else:
                state = await load_state(self._store, ledger)
            if state is None:
                return None
            self._latest[ledger.raw] = state
            if self._versions.get(ledger.raw, 0) == version:
                self._states[ledger.raw] = state
                self._members[ledger.raw] = frozenset(state.members)
            return state

    async def latest(self, ledger: CID) -> tuple[LedgerState | None, bool]:
        """The freshest state at hand, and whether it is current, without waiting for a long recompute.

        A big ledger (one whose state is computed in a child) that changed since its last state answers
        that last state at once, marked not current, while a new one is computed in the background; a
        ledger that keeps changing faster than its state can be computed still shows a recent one.
        """
        cached = self._states.get(ledger.raw)
        if cached is not None:
            return cached, True
        last = self._latest.get(ledger.raw)
        if last is None or self._worker is None or len(last.status) < self._offload_entries:
            return await self.get(ledger), True
        if ledger.raw not in self._refreshing:
            task = asyncio.create_task(self.get(ledger), name=f"state {ledger}")
            self._refreshing[ledger.raw] = task
            task.add_done_callback(lambda done: self._refreshed(ledger, done))
        return last, False

    def is_current(self, ledger: CID) -> bool:
        """True if the cached state of `ledger` has every entry stored (no entry arrived since)."""
        return ledger.raw in self._states

    def _refreshed(self, ledger: CID, task: asyncio.Task[LedgerState | None]) -> None:
        self._refreshing.pop(ledger.raw, None)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.warning("ledger=%s: computing its state failed: %s", ledger, error)

    async def members(self, ledger: CID) -> frozenset[str]:
        """The ledger's current members. A genesis whose rules do not parse founds a ledger
        whose only member is its founder (and the problem is logged)."""
        cached = self._members.get(ledger.raw)
        if cached is not None:
            return cached
        try:
            state = await self.get(ledger)
        except InvalidData as exc:
            genesis = await self._store.genesis(ledger)
            founder = frozenset({genesis.author}) if genesis is not None else frozenset()
            log.warning("ledger=%s has no valid rules (%s); only its founder is a member", ledger, exc.message)
            self._members[ledger.raw] = founder
            return founder
        return frozenset() if state is None else frozenset(state.members)
