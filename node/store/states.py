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

States are kept in the store between runs, and their folds too, so that a restart reads a big ledger back
instead of folding it: that half is `SnapshotKeeping` (node/store/keeping.py), which `LedgerStates` extends.

A write need not wait while a big ledger catches up (its fold read back after a restart, or made again after an
upgrade made the kept one stale): `for_write` gives it the last state the node had of the ledger, with the entries
stored since, when the write says none of those changes what it reads (node/store/writes.py `unread_by`), and the
catch-up goes on in the background; the entries are folded in once the fold is ready. A page need not wait either:
`shown` gives it that last state and the entries stored since, which the page lists as not counted yet, however many
arrive meanwhile (past SINCE_LAST a write waits, and only their count and the newest are kept: node/store/since.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from node.store import snapshots
from node.store.keeping import (
    DEFER_ENTRIES,
    FREEZE_ENTRIES,
    QUIET_SAVE_S,
    SNAPSHOT_EVERY,
    THREAD_ENTRIES,
    SnapshotKeeping,
)
from node.store.ledgers import fold_ledger, load_state_with_forks
from node.store.rows import Coverage, Snapshot
from node.store.since import Since
from node.store.store import Store
from node.store.workers import give_back
from protocol import CID, Entry, InvalidData
from protocol.erasure import ERASE_KIND
from protocol.fold import LedgerFold
from protocol.state import LedgerState

log = logging.getLogger(__name__)
MEMBER_KIND_PREFIX = ("member.", "key.")  # kinds that change who may see a ledger (key.*: SPEC.md §19.8)
#: Entries held in folds, all ledgers together, before the least recently read ledger's fold is dropped.
FOLDED_ENTRIES: Final = 1_000_000
#: Entries stored since a ledger's last state beyond which a write waits for the current state (`for_write`; a page
#: still shows that state: `shown`); a kept state this far behind the ledger at most is read back (`_behind`).
SINCE_LAST: Final = 256
#: What a write asks of the entries stored since the state it would be built against: whether none of them changes
#: what it reads of that state (node/store/writes.py `unread_by`).
Unread = Callable[[LedgerState, Sequence[Entry]], bool]
#: What a page shows of a ledger: a state, the newest entries stored after it (oldest first, at most
#: `since.NEWEST`), how many were, and whether the state is exact (current, or the last of this Tally version).
Shown = tuple[LedgerState | None, tuple[Entry, ...], int, bool]


def _nothing() -> None:
    pass


class LedgerStates(SnapshotKeeping):
    def __init__(self, store: Store, *, folded_entries: int = FOLDED_ENTRIES, snapshot_every: int = SNAPSHOT_EVERY,
                 quiet_s: float = QUIET_SAVE_S, one_shot: bool = False, freeze_entries: int = FREEZE_ENTRIES,
                 defer_entries: int = DEFER_ENTRIES) -> None:
        super().__init__(store, snapshot_every=snapshot_every, quiet_s=quiet_s, one_shot=one_shot,
                         freeze_entries=freeze_entries, defer_entries=defer_entries)
        self._budget = folded_entries
        self._folds: OrderedDict[bytes, LedgerFold] = OrderedDict()  # least recently read first
        self._arrived: dict[bytes, list[Entry]] = {}  # per folded (or being folded) ledger: stored since
        self._states: dict[bytes, LedgerState] = {}  # current: no entry arrived since
        self._last: dict[bytes, tuple[LedgerState, Since, bool]] = {}  # see SnapshotKeeping
        self._members: dict[bytes, frozenset[str]] = {}
        self._locks: dict[bytes, asyncio.Lock] = {}
        self._generations: dict[bytes, int] = {}  # bumped by forget(): a fold being made is stale
        self._whole: set[bytes] = set()  # ledgers with key events: their state is folded whole on each change
        self._erasing: set[asyncio.Task[None]] = set()  # states computed because an erasure arrived
        #: ledger -> its state being made current in the background (a write was built against the last one)
        self._catching: dict[bytes, asyncio.Task[LedgerState | None]] = {}
        #: ledger -> set once a last state of it is known (`_last`), for a write waiting for one
        self._told: dict[bytes, asyncio.Event] = {}
        self._unsubscribe = store.on_new_entries(self._changed)

    def close(self) -> None:
        """Give up what is being saved or read back (a snapshot left unsaved is made again on the next run)."""
        for worker in self._workers:
            worker.stop.set()
        for task in [*self._saving.values(), *self._loading.values(), *self._catching.values()]:
            task.cancel()
        for timer in self._quiet.values():
            timer.cancel()
        self._quiet.clear()
        self._unsubscribe()
        self._unsubscribe = _nothing  # closing twice is closing once
        self._let_go()

    def _changed(self, entries: Sequence[Entry]) -> None:
        erasures = {e.ledger_id.raw for e in entries if e.kind == ERASE_KIND}
        for raw in erasures:  # computing the state drops the erased payloads (node/store/ledgers.py load_state)
            task = asyncio.get_running_loop().create_task(self._state_now(CID(raw)))
            self._erasing.add(task)
            task.add_done_callback(self._erasing.discard)
        for entry in entries:
            raw = entry.ledger_id.raw
            if raw in self._deferred:
                self._read_back_deferred(raw)
            queue = self._arrived.get(raw)
            if queue is not None:
                queue.append(entry)
            last = self._last.get(raw)
            if last is not None:  # past SINCE_LAST a write waits for the current state; a page still shows this one
                last[1].add((entry,))
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
        self._whole.discard(ledger.raw)
        self._whole_states.pop(ledger.raw, None)
        self._fold_saved.pop(ledger.raw, None)
        self._deferred.pop(ledger.raw, None)
        self._sorting.pop(ledger.raw, None)
        loading = self._loading.pop(ledger.raw, None)
        if loading is not None:
            loading.cancel()
        self._folds.pop(ledger.raw, None)
        self._let_go(ledger.raw)
        self._arrived.pop(ledger.raw, None)
        self._states.pop(ledger.raw, None)
        self._last.pop(ledger.raw, None)
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
                self._read_back_deferred(raw)  # (an entry arrived: it is being read back already)
                if raw not in self._folds and raw not in self._whole and raw not in self._loading:
                    restored = await self._restored(ledger, generation)
                    if restored is not None:
                        self._states[raw] = restored
                        self._remember(raw, restored, exact=True)
                        self._members[raw] = frozenset(restored.members)
                        return restored
                forks: Mapping[bytes, int] = {}
                if raw in self._whole:
                    self._arrived[raw] = []  # only to know whether entries arrive during the read
                    loaded = await load_state_with_forks(self._store, ledger)
                    state, forks = (None, {}) if loaded is None else loaded
                    if state is not None:
                        self._whole_states[raw] = (state, forks)
                else:
                    state = await self._folded_state(ledger)
                    if raw in self._whole:
                        continue  # the fold met key events
                if self._generations.get(raw, 0) != generation:  # a fork proof arrived meanwhile: again
                    self._folds.pop(raw, None)
                    self._let_go(raw)
                    continue
                if state is not None and not self._arrived.get(raw):  # nothing arrived meanwhile: current
                    self._states[raw] = state
                    self._remember(raw, state, exact=True)
                    self._members[raw] = frozenset(state.members)
                    self._save_if_grown(ledger, state, forks)
                self._keep_within_budget()
                return state

    async def for_write(self, ledger: CID, unread: Unread) -> tuple[LedgerState | None, bool]:
        """The state a write is built against, and whether it is exact (what the write reads of it is what the
        current state holds). The current state when the ledger's fold is at hand; while it is not (read back
        after a restart, made again after an upgrade), the last state the node had when `unread` says that the
        entries stored since change nothing the write reads, while the current state is made in the background;
        else the current state, waited for. A last state read back from a snapshot of the Tally version before
        (`snapshots.provisional`) is not exact: a write refused against it is built again against the current
        state (node/store/writes.py)."""
        def usable(state: LedgerState, since: Since, _exact: bool) -> bool:
            every = since.every()  # None: too many for a write to tell what they change
            return every is not None and unread(state, every)

        last = await self._last_while_catching_up(ledger, usable)
        if last is None:
            return await self.get(ledger), True
        log.info("a write built against the ledger's last state", extra={
            "ledger": str(ledger), "since": last[1].count, "exact": last[2]})
        return last[0], last[2]

    async def shown(self, ledger: CID) -> Shown:
        """The state a page shows, the newest entries stored after it and how many, and whether it is exact
        (current, or the last state of this Tally version). As `for_write`: while the ledger catches up, its last
        state, with the entries stored since (which the page says it does not count yet, however many), also one
        saved by the Tally version before (which the page says too: only what is shown rests on it); else the
        current state."""
        last = await self._last_while_catching_up(ledger, lambda _state, _since, _exact: True)
        if last is None:
            return await self.get(ledger), (), 0, True
        return last[0], last[1].newest(), last[1].count, last[2]

    async def _last_while_catching_up(self, ledger: CID, usable: Callable[[LedgerState, Since, bool], bool]
                                      ) -> tuple[LedgerState, Since, bool] | None:
        """The ledger's last state (with the entries stored since, and whether it is exact) if its fold is not at
        hand and `usable` takes it, while its current state is made in the background; else None, once the
        current state is at hand (`get` then returns it without a fold of the whole ledger)."""
        raw = ledger.raw
        if raw in self._states or raw in self._folds or raw in self._whole:
            return None
        catching = self._catch_up(ledger)
        if raw not in self._last:  # after a restart: the snapshot is read first (its state, if only a stale one)
            told = asyncio.ensure_future(self._told.setdefault(raw, asyncio.Event()).wait())
            try:
                await asyncio.wait([catching, told], return_when=asyncio.FIRST_COMPLETED)
            finally:
                told.cancel()
        last = self._last.get(raw)
        if raw not in self._states and last is not None and usable(*last):
            return last
        await asyncio.shield(catching)
        return None

    def _catch_up(self, ledger: CID) -> asyncio.Task[LedgerState | None]:
        """The ledger's state made current in the background (one task at a time)."""
        raw = ledger.raw
        task = self._catching.get(raw)
        if task is None:
            task = asyncio.get_running_loop().create_task(self.get(ledger))
            self._catching[raw] = task

            def done(_: asyncio.Task[LedgerState | None]) -> None:
                if self._catching.get(raw) is task:
                    del self._catching[raw]
                if not task.cancelled() and task.exception() is not None and self._unsubscribe is not _nothing:
                    log.warning("ledger=%s: no state (%s)", ledger, task.exception())

            task.add_done_callback(done)
        return task

    async def _behind(self, ledger: CID, snapshot: Snapshot, coverage: Coverage, generation: int) -> None:
        """A kept state that covers the ledger's rows but the last few (a node stopped while it caught up, say): read
        back as the last state writes are built against (with those rows as stored since), if the rows before them
        are exactly the ones it covers, while the ledger is made current. One the Tally version before saved (an
        upgrade of a node that had stopped so) is read back as `snapshots.provisional`: not exact."""
        raw, behind = ledger.raw, coverage.entries - snapshot.coverage.entries
        if not 0 < behind <= SINCE_LAST or snapshot.coverage.forks != coverage.forks:
            return
        self._arrived[raw] = []
        exact = snapshot.format == snapshots.FORMAT
        try:
            after = await self._store.log_last(ledger, behind)
            covered = dataclasses.replace(coverage, entries=snapshot.coverage.entries,
                                          rowids=coverage.rowids - sum(rowid for rowid, _ in after))
            state = None
            if len(after) == behind and covered == snapshot.coverage:
                state = (await asyncio.to_thread(snapshots.restore, snapshot, covered, ledger))[0] if exact else \
                    await asyncio.to_thread(snapshots.provisional, snapshot, covered, ledger)
        finally:
            arrived = self._arrived.pop(raw, [])
        if state is not None and self._generations.get(raw, 0) == generation and raw not in self._last:
            self._remember(raw, state, exact=exact)
            self._last[raw][1].add([*(entry for _, entry in after), *arrived])

    def _remember(self, raw: bytes, state: LedgerState, *, exact: bool) -> None:
        """`state` is the ledger's last known state (current, or a stale one only a write may be built against)."""
        self._last[raw] = (state, Since(SINCE_LAST), exact)
        told = self._told.pop(raw, None)
        if told is not None:
            told.set()

    async def _folded_state(self, ledger: CID) -> LedgerState | None:
        raw = ledger.raw
        fold = self._folds.get(raw)
        if fold is None:
            loading = self._loading.get(raw)
            if loading is not None:  # read back from the snapshot: it is nearly there
                try:
                    fold = await asyncio.shield(loading)
                except asyncio.CancelledError:
                    if not loading.cancelled():  # this read itself was cancelled
                        raise
                    fold = None  # forgotten meanwhile (a fork proof): folded from scratch
            if fold is None:
                fold = await self._fold(ledger)
                if fold is None:
                    return None
        await self._hold_still(raw)
        arrived = self._arrived.get(raw, [])
        self._arrived[raw] = []
        if arrived:
            self._changes[raw] = self._changes.get(raw, 0) + 1
        if len(arrived) >= THREAD_ENTRIES:
            await asyncio.to_thread(fold.add, arrived)
        else:
            fold.add(arrived)
        if fold.keyed:  # key events cut keys off outside causal pasts (SPEC.md §19): folded whole from now on
            self._whole.add(raw)
            self._folds.pop(raw, None)
            self._let_go(raw)
            return None
        self._folds.move_to_end(raw)
        return fold.state()

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
        self._hold(ledger.raw, len(fold))
        if len(fold) >= self._freeze_entries:  # the rows read and decoded left the C heap's memory free
            await asyncio.to_thread(give_back)
        log.info("ledger folded", extra={"ledger": str(ledger), "entries": len(fold),
                                         "ms": round((time.perf_counter() - started) * 1000)})
        return fold

    def _keep_within_budget(self) -> None:
        total = sum(len(f) for f in self._folds.values())
        while total > self._budget and len(self._folds) > 1:
            raw, dropped = self._folds.popitem(last=False)
            self._arrived.pop(raw, None)
            self._sorting.pop(raw, None)
            self._let_go(raw)
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
