"""Ledger states kept current as entries arrive (protocol/fold.py).

A ledger's state is a pure function of its entries (protocol/state.py). The first time a
ledger's state is asked for, its entries are read from the store and folded into a
`LedgerFold` (in a worker thread, so the event loop keeps serving); from then on every
entry the store takes in is queued for that fold, which takes it in at the next read: a
state after one new entry costs in proportion to what it touches, never a full rebuild.
A fork proof (`forget`) quarantines entries already applied, so that ledger is folded
again; a ledger with key events (SPEC.md §19) is folded whole on each change. Folds are
kept for the most recently read ledgers, up to FOLDED_ENTRIES entries in all (a dropped
one is folded again when next read), which bounds the memory they take. Membership has
its own cache, dropped only when `member.*` or `key.*` entries or forks arrive, because the sync
layer asks "may this peer see this ledger?" on every request.

States are kept in the store between runs (node/store/snapshots.py): a ledger without a fold here is first
read back from its snapshot, when one is there and covers exactly what is stored; a state folded from
scratch is saved as a snapshot, and again once the ledger has grown by SNAPSHOT_EVERY entries (or a tenth)
and when the node stops (`aclose`). So a restart reads a big ledger's state back instead of folding it; the
fold itself is made when the first entry arrives after that.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Final

from node.store import snapshots
from node.store.ledgers import fold_ledger, load_state
from node.store.store import Store
from protocol import CID, Entry, InvalidData
from protocol.erasure import ERASE_KIND
from protocol.fold import LedgerFold
from protocol.state import LedgerState

log = logging.getLogger(__name__)
MEMBER_KIND_PREFIX = ("member.", "key.")  # kinds that change who may see a ledger (key.*: SPEC.md §19.8)
#: Entries held in folds, all ledgers together, before the least recently read ledger's fold is dropped.
FOLDED_ENTRIES: Final = 1_000_000
#: From this many queued entries a fold takes them in a worker thread (a sync batch), not in the event loop.
THREAD_ENTRIES: Final = 2_000
#: A ledger's snapshot is made again once it has grown by this many entries (or a tenth, if more) since the last.
SNAPSHOT_EVERY: Final = 10_000


def _nothing() -> None:
    pass


class LedgerStates:
    def __init__(self, store: Store, *, folded_entries: int = FOLDED_ENTRIES, snapshot_every: int = SNAPSHOT_EVERY
                 ) -> None:
        self._store = store
        self._budget = folded_entries
        self._snapshot_every = snapshot_every
        self._saved: dict[bytes, int] = {}  # ledger -> how many entries its snapshot in the store holds
        self._saving: dict[bytes, asyncio.Task[None]] = {}
        self._folds: OrderedDict[bytes, LedgerFold] = OrderedDict()  # least recently read first
        self._arrived: dict[bytes, list[Entry]] = {}  # per folded (or being folded) ledger: stored since
        self._states: dict[bytes, LedgerState] = {}  # current: no entry arrived since
        self._members: dict[bytes, frozenset[str]] = {}
        self._locks: dict[bytes, asyncio.Lock] = {}
        self._generations: dict[bytes, int] = {}  # bumped by forget(): a fold being made is stale
        self._whole: set[bytes] = set()  # ledgers with key events: their state is folded whole on each change
        self._erasing: set[asyncio.Task[None]] = set()  # states computed because an erasure arrived
        self._unsubscribe = store.on_new_entries(self._changed)

    def close(self) -> None:
        for task in self._saving.values():  # a snapshot left unsaved is made again on the next run
            task.cancel()
        self._unsubscribe()
        self._unsubscribe = _nothing  # closing twice is closing once

    async def aclose(self) -> None:
        """Save the snapshots of the ledgers that grew since their last one, then close (the node stopping)."""
        await asyncio.gather(*self._saving.values(), return_exceptions=True)
        for raw in list(self._folds):
            try:
                state = await self.get(CID(raw))
            except Exception as exc:  # a snapshot is only a shortcut: the node stops all the same
                log.warning("ledger snapshot not saved", extra={"ledger": str(CID(raw)), "detail": str(exc)})
                continue
            fold = self._folds.get(raw)
            if state is not None and fold is not None and self._saved.get(raw) != len(state.status):
                await self._save(CID(raw), fold.forks, state)
        self.close()

    def _changed(self, entries: Sequence[Entry]) -> None:
        erasures = {e.ledger_id.raw for e in entries if e.kind == ERASE_KIND}
        for raw in erasures:  # computing the state drops the erased payloads (node/store/ledgers.py load_state)
            task = asyncio.get_running_loop().create_task(self._state_now(CID(raw)))
            self._erasing.add(task)
            task.add_done_callback(self._erasing.discard)
        for entry in entries:
            raw = entry.ledger_id.raw
            queue = self._arrived.get(raw)
            if queue is not None:
                queue.append(entry)
            self._states.pop(raw, None)
            if entry.kind.startswith(MEMBER_KIND_PREFIX) or entry.is_genesis:
                self._members.pop(raw, None)

    async def _state_now(self, ledger: CID) -> None:
        try:
            await self.get(ledger)
        except InvalidData as exc:
            log.warning("ledger=%s: no state, so its erasures wait (%s)", ledger, exc.message)

    def forget(self, ledger: CID) -> None:
        """Drop what is kept for `ledger` (a fork proof arrived: entries past the fork stop counting)."""
        self._generations[ledger.raw] = self._generations.get(ledger.raw, 0) + 1
        self._saved.pop(ledger.raw, None)
        self._folds.pop(ledger.raw, None)
        self._arrived.pop(ledger.raw, None)
        self._states.pop(ledger.raw, None)
        self._members.pop(ledger.raw, None)

    async def get(self, ledger: CID) -> LedgerState | None:
        """The ledger's current state, or None when its genesis is not stored here."""
        raw = ledger.raw
        cached = self._states.get(raw)
        if cached is not None:
            return cached
        async with self._locks.setdefault(raw, asyncio.Lock()):
            while True:
                cached = self._states.get(raw)
                if cached is not None:
                    return cached
                generation = self._generations.get(raw, 0)
                if raw not in self._folds and raw not in self._whole:
                    restored = await self._restored(ledger, generation)
                    if restored is not None:
                        self._states[raw] = restored
                        self._members[raw] = frozenset(restored.members)
                        return restored
                if raw in self._whole:
                    self._arrived[raw] = []  # only to know whether entries arrive during the read
                    state = await load_state(self._store, ledger)
                else:
                    state = await self._folded_state(ledger)
                    if raw in self._whole:
                        continue  # the fold met key events
                if self._generations.get(raw, 0) != generation:  # a fork proof arrived meanwhile: again
                    self._folds.pop(raw, None)
                    continue
                if state is not None and not self._arrived.get(raw):  # nothing arrived meanwhile: current
                    self._states[raw] = state
                    self._members[raw] = frozenset(state.members)
                    self._save_if_grown(ledger, state)
                self._keep_within_budget()
                return state

    async def _folded_state(self, ledger: CID) -> LedgerState | None:
        raw = ledger.raw
        fold = self._folds.get(raw)
        if fold is None:
            fold = await self._fold(ledger)
            if fold is None:
                return None
        arrived = self._arrived.get(raw, [])
        self._arrived[raw] = []
        if len(arrived) >= THREAD_ENTRIES:
            await asyncio.to_thread(fold.add, arrived)
        else:
            fold.add(arrived)
        if fold.keyed:  # key events cut keys off outside causal pasts (SPEC.md §19): folded whole from now on
            self._whole.add(raw)
            self._folds.pop(raw, None)
            return None
        self._folds.move_to_end(raw)
        return fold.state()

    async def _restored(self, ledger: CID, generation: int) -> LedgerState | None:
        """The ledger's state read back from its snapshot, if that one is there, checked, and nothing arrived
        or was forgotten meanwhile."""
        raw = ledger.raw
        self._arrived[raw] = []  # only to know whether entries arrive during the read
        try:
            snapshot = await self._store.snapshot(ledger)
            if snapshot is None:
                return None
            coverage = await self._store.coverage(ledger)
            started = time.perf_counter()
            state, why = await asyncio.to_thread(snapshots.restore, snapshot, coverage, ledger)
        finally:
            arrived = self._arrived.pop(raw, None)
        extra = {"ledger": str(ledger), "entries": coverage.entries, "why": why,
                 "ms": round((time.perf_counter() - started) * 1000)}
        if state is None:
            (log.warning if why.startswith("damaged") else log.info)("ledger snapshot not used", extra=extra)
            return None
        if arrived or self._generations.get(raw, 0) != generation:
            return None
        self._saved[raw] = len(state.status)
        log.info("ledger snapshot restored", extra=extra)
        return state

    def _save_if_grown(self, ledger: CID, state: LedgerState) -> None:
        """Save a folded ledger's snapshot in the background if it has none yet or grew enough since."""
        raw = ledger.raw
        fold = self._folds.get(raw)
        saved = self._saved.get(raw)
        if fold is None or raw in self._saving:
            return
        if saved is not None and len(state.status) - saved < max(self._snapshot_every, saved // 10):
            return
        task = asyncio.create_task(self._save(ledger, fold.forks, state))
        self._saving[raw] = task
        task.add_done_callback(lambda _: self._saving.pop(raw, None))

    async def _save(self, ledger: CID, forks: Mapping[bytes, int], state: LedgerState) -> None:
        started = time.perf_counter()
        try:
            snapshot = await asyncio.to_thread(snapshots.make, state, forks)
            # The store keeps it only if it covers every entry stored now (one may have arrived meanwhile).
            kept = await self._store.keep_snapshot(ledger, snapshot)
        except Exception as exc:  # a snapshot is only a shortcut (a full disk, say): the next restart folds instead
            log.warning("ledger snapshot not saved", extra={"ledger": str(ledger), "detail": str(exc)})
            return
        if kept:
            self._saved[ledger.raw] = len(state.status)
            log.info("ledger snapshot saved", extra={"ledger": str(ledger), "entries": len(state.status),
                                                     "bytes": len(snapshot.state),
                                                     "ms": round((time.perf_counter() - started) * 1000)})

    def folded(self) -> list[CID]:
        """The ledgers whose folds are kept, least recently read first."""
        return [CID(raw) for raw in self._folds]

    async def _fold(self, ledger: CID) -> LedgerFold | None:
        """Fold the ledger from the store; what is stored meanwhile is queued for it."""
        self._arrived[ledger.raw] = []
        started = time.perf_counter()
        try:
            fold = await fold_ledger(self._store, ledger)
        except BaseException:
            self._arrived.pop(ledger.raw, None)
            raise
        if fold is None:
            self._arrived.pop(ledger.raw, None)
            return None
        self._folds[ledger.raw] = fold
        log.info("ledger folded", extra={"ledger": str(ledger), "entries": len(fold),
                                         "ms": round((time.perf_counter() - started) * 1000)})
        return fold

    def _keep_within_budget(self) -> None:
        total = sum(len(f) for f in self._folds.values())
        while total > self._budget and len(self._folds) > 1:
            raw, dropped = self._folds.popitem(last=False)
            self._arrived.pop(raw, None)
            total -= len(dropped)

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
