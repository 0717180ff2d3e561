"""What `LedgerStates` keeps between runs: each ledger's state and fold saved in the store and read back.

States are kept in the store between runs (node/store/snapshots.py): a ledger without a fold in memory is first
read back from its snapshot, when one is there and covers exactly what is stored; a state folded from scratch is
saved as a snapshot, and again once the ledger has grown by SNAPSHOT_EVERY entries (or a tenth), once it has
stayed unchanged for QUIET_SAVE_S, and when the node stops (`aclose`, for at most SAVE_AT_STOP_S: a save not done
by then is abandoned, and the snapshot saved before stays). So a restart reads a big ledger's state back instead
of folding it.

The fold is saved with the state (in a thread, in parts: snapshots.encode_fold) and read back in the background
(snapshots.decode_fold): a small one as soon as the state is, a big one (DEFER_ENTRIES) once an entry arrives for
its ledger, so that a node that only reads a big ledger never holds its fold; the first entry to arrive after a
restart is folded into it, at the cost of what it touches (waiting, at most, for the read-back to finish), not of a
fold of the whole ledger. A fold is never changed while it is being saved: an entry to fold in gives that save up
first (the snapshot kept before stays; a new one is tried SAVE_RETRY_S later). A ledger with key events keeps its
state only (it is folded whole on each change anyway).

A big fold, once made or read back, is left out of the cycle collector's passes (`gc.freeze`, FREEZE_ENTRIES): it
is made with the collector paused, so the first passes after it would each go through all of it (~0.1 s for a
million notes, more for a ledger of events, with the interpreter lock held: the write waiting for it waited that
long), and every full pass after them too. What it holds is freed by reference counting as before; a dropped fold
puts what was frozen back in the collector's care (`gc.unfreeze`).

`SnapshotKeeping` is the saving and reading-back half of `LedgerStates` (node/store/states.py), which keeps the
states current and holds what both halves read (the folds, the current states, what arrived meanwhile).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import gc
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from node.store import snapshots
from node.store.kept_status import Abandoned, Sorting
from node.store.rows import Coverage, FoldRef, Snapshot, fork_points
from node.store.since import Since
from node.store.store import Store
from node.store.workers import Worker, give_back, on_loop, timed, wait
from protocol import CID, Entry
from protocol.fold import LedgerFold
from protocol.state import LedgerState

log = logging.getLogger("node.store.states")  # one logger for the states and their snapshots, as before
#: From this many queued entries a fold takes them in a worker thread (a sync batch), not in the event loop.
THREAD_ENTRIES: Final = 2_000
#: A ledger's snapshot is made again once it has grown by this many entries (or a tenth, if more) since the last.
SNAPSHOT_EVERY: Final = 10_000
#: A ledger whose state has not changed for this long has it saved (not its fold), if it changed since the last
#: save: a node stopping then has nothing left to save, and a restart finds the state current.
QUIET_SAVE_S: Final = 30.0
#: How long a stopping node goes on saving snapshots (`aclose`): a save not done by then is given up.
SAVE_AT_STOP_S: Final = 3.0
#: A fold whose save was given up (entries arrived meanwhile) is not saved again for this long (but at stop).
SAVE_RETRY_S: Final = 60.0
#: A fold of this many entries or more is left out of the cycle collector's passes once made or read back.
FREEZE_ENTRIES: Final = 50_000
#: A kept fold of this many entries or more is read back only once an entry arrives for its ledger (or its state is
#: stale), not with its state: a node that only reads the ledger never holds it (hundreds of MB at a million entries).
DEFER_ENTRIES: Final = 50_000


class SnapshotKeeping:
    """Saving states and folds to the store, and reading them back: the half of `LedgerStates` that outlives a
    run. The attributes annotated here without a value are `LedgerStates`'s, which keeps the states current."""

    _folds: OrderedDict[bytes, LedgerFold]  # least recently read first
    _arrived: dict[bytes, list[Entry]]  # per folded (or being folded) ledger: stored since
    _states: dict[bytes, LedgerState]  # current: no entry arrived since
    _generations: dict[bytes, int]  # bumped by forget(): a fold being made is stale
    _whole: set[bytes]  # ledgers with key events: their state is folded whole on each change
    #: ledger -> its last known state, the entries stored since, and whether it is exact (of this Tally version)
    _last: dict[bytes, tuple[LedgerState, Since, bool]]

    def __init__(self, store: Store, *, snapshot_every: int, quiet_s: float, one_shot: bool = False,
                 freeze_entries: int = FREEZE_ENTRIES, defer_entries: int = DEFER_ENTRIES) -> None:
        self._store = store
        self._freeze_entries = freeze_entries
        self._defer_entries = defer_entries
        #: ledger -> the fold its state was last saved from, and where that state's ids were in it (the next save of
        #: that fold's state sorts in only the ids added since: kept_status.Sorting)
        self._sorting: dict[bytes, tuple[LedgerFold, Sorting]] = {}
        #: ledger -> its kept fold not read back yet (big, and its state read back current): read when an entry arrives
        self._deferred: dict[bytes, tuple[FoldRef, bytes, int]] = {}
        self._frozen: set[bytes] = set()  # ledgers whose folds were big enough to be frozen (gc.freeze)
        #: a one-shot command's (node/store/writes.py FoldedStates): snapshots are read back, never saved, and a
        #: kept fold only when the state beside it is stale (else nothing would read it)
        self._one_shot = one_shot
        self._snapshot_every = snapshot_every
        self._quiet_s = quiet_s
        self._quiet: dict[bytes, asyncio.TimerHandle] = {}  # ledger -> its state's save once it stays quiet
        self._saved: dict[bytes, int] = {}  # ledger -> how many entries its snapshot in the store holds
        self._saving: dict[bytes, asyncio.Task[bool]] = {}
        self._pickling: dict[bytes, Worker] = {}  # ledger -> the thread saving its fold (which must not change)
        self._loading: dict[bytes, asyncio.Task[LedgerFold | None]] = {}  # folds being read back from snapshots
        self._workers: set[Worker] = set()  # threads saving or reading back: stopped when the node stops
        self._changes: dict[bytes, int] = {}  # ledger -> how many times its fold took entries in
        self._retry: dict[bytes, float] = {}  # ledger -> when to try saving its fold again (given up)
        self._fold_saved: dict[bytes, int] = {}  # ledger -> how many entries the fold in its snapshot holds
        #: ledger -> how long its fold last took to pickle or unpickle (s): a stopping node does not start a fold's
        #: save that would not end in the time left (a million-entry fold takes longer than SAVE_AT_STOP_S)
        self._fold_s: dict[bytes, float] = {}
        #: ledger folded whole -> its latest state and the fork points it was folded with (saved at stop)
        self._whole_states: dict[bytes, tuple[LedgerState, Mapping[bytes, int]]] = {}

    # LedgerStates's, which these call
    async def get(self, ledger: CID) -> LedgerState | None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _keep_within_budget(self) -> None:
        raise NotImplementedError

    def _remember(self, raw: bytes, state: LedgerState, *, exact: bool) -> None:
        raise NotImplementedError

    async def _behind(self, ledger: CID, snapshot: Snapshot, coverage: Coverage, generation: int) -> None:
        raise NotImplementedError

    async def aclose(self, within_s: float = SAVE_AT_STOP_S) -> None:
        """Save the states of the ledgers that grew since their last snapshot, then (pickling takes longer) their
        folds, for at most `within_s` seconds in all, then close (the node stopping). A save still going at the
        end is given up: the snapshot kept before stays valid, and a fold saved before stays with a newer state
        (the rows after it are folded in when it is read back)."""
        for worker in self._workers:  # the saves going on are given up: they would take the time (and the CPU)
            worker.stop.set()
        try:
            await asyncio.wait_for(self._save_all(time.monotonic() + within_s), within_s)
        except TimeoutError:
            log.warning("ledger snapshots not all saved: the node stops", extra={"s": within_s})
        finally:
            self.close()

    async def _save_all(self, deadline: float) -> None:
        await asyncio.gather(*self._saving.values(), return_exceptions=True)
        for raw in list(self._folds):
            try:
                state = await self.get(CID(raw))
            except Exception as exc:  # a snapshot is only a shortcut: the node stops all the same
                log.warning("ledger snapshot not saved", extra={"ledger": str(CID(raw)), "detail": str(exc)})
                continue
            fold = self._folds.get(raw)
            if state is not None and fold is not None and self._saved.get(raw) != len(state.status):
                await self._save(CID(raw), fold.forks, state, None, 0)
        for raw, (state, forks) in list(self._whole_states.items()):  # current ones only: no refold at stop
            if raw in self._whole and self._states.get(raw) is state and self._saved.get(raw) != len(state.status):
                await self._save(CID(raw), forks, state, None, 0, whole=True)
        # Then, while time is left, the folds not saved as they are now (small ones take milliseconds).
        for raw, fold in list(self._folds.items()):
            state = self._states.get(raw)
            if self._fold_s.get(raw, 0.0) > deadline - time.monotonic():
                log.info("ledger fold not saved: no time left", extra={"ledger": str(CID(raw)),
                                                                       "s": round(self._fold_s[raw], 1)})
            elif state is not None and self._fold_saved.get(raw) != len(fold):
                await self._save(CID(raw), fold.forks, state, fold, self._changes.get(raw, 0))

    def _hold(self, raw: bytes, entries: int) -> None:
        """A fold (or a state) of `entries` entries was just made or read back: if it is big, leave it (and all else
        alive now) out of the collector's passes, which would go through all of it for nothing."""
        if entries >= self._freeze_entries:
            gc.freeze()
            self._frozen.add(raw)

    def _let_go(self, raw: bytes | None = None) -> None:
        """The fold of `raw` (None: every one) is dropped: if it was frozen, what was frozen is the collector's
        again (a cycle in what is dropped is collected; the folds kept are frozen again when the next is made)."""
        if self._frozen and (raw is None or raw in self._frozen):
            self._frozen.clear()
            gc.unfreeze()

    def _worker(self, func: Callable[[threading.Event], Any]) -> Worker:
        worker = Worker(func)
        self._workers.add(worker)
        return worker

    async def _hold_still(self, raw: bytes) -> None:
        """Give up saving the ledger's fold, if it is being saved: it is about to change."""
        worker = self._pickling.get(raw)
        if worker is not None:
            worker.stop.set()
            await asyncio.wait([worker.done])

    async def _restored(self, ledger: CID, generation: int) -> LedgerState | None:
        """The ledger's state read back from its snapshot, if that one is there, checked, and nothing arrived
        or was forgotten meanwhile. Its fold is then read back in the background (also when the state is stale:
        the rows after it are folded in)."""
        raw = ledger.raw
        self._arrived[raw] = []  # only to know whether entries arrive during the read
        try:
            snapshot = await self._store.snapshot(ledger)
            if snapshot is None:
                return None
            coverage = await self._store.coverage(ledger)
            started = time.perf_counter()
            state, why = await asyncio.to_thread(snapshots.restore, snapshot, coverage, ledger)
            # Saved by the Tally version before (an upgrade): only a write may be built against it while the
            # ledger is folded again (LedgerStates.for_write), if it is checked as sound and covers what is stored.
            older = None if state is not None or self._one_shot else await asyncio.to_thread(
                snapshots.provisional, snapshot, coverage, ledger)
        finally:
            arrived = self._arrived.pop(raw, None)
        if arrived or self._generations.get(raw, 0) != generation:
            return None
        if older is not None and raw not in self._last:
            self._remember(raw, older, exact=False)
        elif state is None and not self._one_shot and raw not in self._last:
            await self._behind(ledger, snapshot, coverage, generation)
        extra = {"ledger": str(ledger), "entries": coverage.entries, "why": why,
                 "ms": round((time.perf_counter() - started) * 1000)}
        if state is None:
            (log.warning if why.startswith("damaged") else log.info)("ledger snapshot not used", extra=extra)
        else:
            self._saved[raw] = len(state.status)
            log.info("ledger snapshot restored", extra=extra)
            self._hold(raw, len(state.status))
        ref = snapshot.fold
        if ref == snapshots.WHOLE and state is not None:
            self._whole.add(raw)
        elif ref is not None and ref.parts and raw not in self._folds and (state is None or not self._one_shot):
            if state is not None and ref.entries >= self._defer_entries:  # read back when an entry arrives
                self._deferred[raw] = (ref, coverage.forks, generation)
            else:
                self._read_back(ledger, ref, coverage.forks, generation)
        return state

    def _read_back(self, ledger: CID, ref: FoldRef, forks: bytes, generation: int) -> None:
        """Start reading the kept fold back (`_load`), in the background."""
        raw = ledger.raw
        self._deferred.pop(raw, None)
        self._arrived[raw] = []  # what arrives from now on is folded in once the fold is read back
        task = asyncio.create_task(self._load(ledger, ref, forks, generation))
        self._loading[raw] = task
        task.add_done_callback(lambda done: self._loading.pop(raw, None) if self._loading.get(raw) is done else None)

    def _read_back_deferred(self, raw: bytes) -> None:
        """An entry arrived for a ledger whose state was read back but not its big fold: read the fold back now."""
        deferred = self._deferred.get(raw)
        if deferred is not None:
            self._read_back(CID(raw), *deferred)

    async def _load(self, ledger: CID, ref: FoldRef, forks: bytes, generation: int) -> LedgerFold | None:
        """The fold a snapshot keeps, read back and checked (in a thread), with the rows stored after it folded
        in, kept as the ledger's fold; None if it is not usable (the ledger is folded from scratch instead)."""
        raw, loop = ledger.raw, asyncio.get_running_loop()
        started = time.perf_counter()

        def fetch(i: int) -> concurrent.futures.Future[bytes | None]:
            return asyncio.run_coroutine_threadsafe(self._store.fold_part(ledger, ref.token, i), loop)

        def parts(stop: threading.Event) -> Iterator[bytes | None]:
            # The next part is read from SQLite (without the interpreter lock) while this one is unpickled.
            this = fetch(0)
            for i in range(1, ref.parts + 1):
                ahead = fetch(i) if i < ref.parts else None
                try:
                    yield wait(this, stop)
                except BaseException:  # given up (or closed): the part read ahead is not wanted
                    if ahead is not None:
                        ahead.cancel()
                    raise
                if ahead is None:
                    return
                this = ahead

        worker = self._worker(lambda stop: timed(snapshots.decode_fold, ref, parts(stop), ledger))
        # Read meanwhile (the store's reader thread waits on SQLite, not on the lock): what it covers, and the rows
        # after it (what arrives from now on is in `_arrived` too: the fold leaves out what it holds).
        checks = asyncio.gather(self._store.coverage_upto(ledger, ref.last), self._store.log_after(ledger, ref.last))
        fold: LedgerFold | None
        later: list[Entry] = []
        try:
            (fold, why), self._fold_s[raw] = await worker.done
            upto, later = await checks
            if fold is not None and (fork_points(dict(fold.forks)) != forks or upto != (ref.entries, ref.rowids)):
                fold, why = None, "stale"  # the rows it covers changed (a fork proof arrived since, say)
        except Exception as exc:  # an abandoned read, say: folded from scratch when needed
            fold, why = None, f"not read back ({type(exc).__name__}: {exc})"
        finally:
            self._workers.discard(worker)
            if not checks.cancel() and not checks.cancelled():  # done: its failure, if any, is seen
                checks.exception()
        if fold is not None:
            if len(later) >= THREAD_ENTRIES:
                await asyncio.to_thread(fold.add, later)
            else:
                fold.add(later)
        extra = {"ledger": str(ledger), "entries": ref.entries, "later": len(later), "why": why,
                 "ms": round((time.perf_counter() - started) * 1000)}
        if fold is None:
            (log.warning if why.startswith("damaged") else log.info)("ledger fold not read back", extra=extra)
            return None
        if self._generations.get(raw, 0) != generation or raw in self._folds:
            return None
        log.info("ledger fold read back", extra=extra)
        self._fold_saved[raw] = ref.entries
        self._folds[raw] = fold
        self._keep_within_budget()
        self._hold(raw, len(fold))
        if len(fold) >= self._freeze_entries:
            await asyncio.to_thread(give_back)
        return fold

    def _save_if_grown(self, ledger: CID, state: LedgerState, forks: Mapping[bytes, int]) -> None:
        """Save a ledger's snapshot in the background if it has none yet or grew enough since (or its fold's save
        was given up a while ago). `forks`: what a ledger folded whole was folded with."""
        raw = ledger.raw
        fold = self._folds.get(raw)
        saved = self._saved.get(raw)
        if (fold is None and raw not in self._whole) or raw in self._saving or self._one_shot:
            return
        if time.monotonic() < self._retry.get(raw, 0.0):  # its fold's save was given up a moment ago
            return
        if saved is not None and len(state.status) - saved < max(self._snapshot_every, saved // 10):
            if saved != len(state.status):
                self._save_when_quiet(ledger, state, forks)
            return
        kept = self._fold_saved.get(raw, 0)
        grown = fold is not None and (not kept or len(fold) - kept >= max(self._snapshot_every, kept // 10))
        # A fold kept a little older is as good (the rows after it are folded in when it is read back).
        task = asyncio.create_task(self._save(ledger, forks if fold is None else fold.forks, state,
                                              fold if grown else None, self._changes.get(raw, 0),
                                              whole=fold is None))
        self._saving[raw] = task
        task.add_done_callback(lambda _: self._saving.pop(raw, None))

    def _save_when_quiet(self, ledger: CID, state: LedgerState, forks: Mapping[bytes, int]) -> None:
        """Save `state` (not its fold) once it has stayed the ledger's current state for QUIET_SAVE_S."""
        raw = ledger.raw
        timer = self._quiet.pop(raw, None)
        if timer is not None:
            timer.cancel()

        def due() -> None:
            self._quiet.pop(raw, None)
            fold = self._folds.get(raw)
            if self._states.get(raw) is not state or raw in self._saving or (fold is None and raw not in self._whole):
                return  # changed since, or being saved, or dropped
            task = asyncio.create_task(self._save(ledger, forks if fold is None else fold.forks, state, None, 0,
                                                  whole=fold is None))
            self._saving[raw] = task
            task.add_done_callback(lambda _: self._saving.pop(raw, None))

        self._quiet[raw] = asyncio.get_running_loop().call_later(self._quiet_s, due)

    async def save(self, ledger: CID) -> bool:
        """Save the ledger's snapshot now, with its fold (after any save going on): whether it was kept."""
        raw = ledger.raw
        await asyncio.gather(*[t for r, t in self._saving.items() if r == raw], return_exceptions=True)
        state = await self.get(ledger)
        fold = self._folds.get(raw)
        if state is None or (fold is None and raw not in self._whole_states):
            return False
        if fold is None:
            return await self._save(ledger, self._whole_states[raw][1], state, None, 0, whole=True)
        if self._saved.get(raw) == len(state.status) and self._fold_saved.get(raw) == len(fold):
            return True  # saved as it is
        return await self._save(ledger, fold.forks, state, fold, self._changes.get(raw, 0))

    async def _save(self, ledger: CID, forks: Mapping[bytes, int], state: LedgerState, fold: LedgerFold | None,
                    changes: int, *, whole: bool = False) -> bool:
        """Save `state`, and the fold it came from unless that changed since (`changes`: how many times it had
        taken entries in then) or is None (the fold kept before, if any, stays: the rows after it are folded in
        when it is read back). `whole`: a ledger folded whole, which keeps no fold."""
        raw = ledger.raw
        started = time.perf_counter()
        # A current state is the current fold's: the last save of a state of that fold says where its ids were.
        source = self._folds.get(raw) if self._states.get(raw) is state else None
        sorted_before = self._sorting.get(raw)
        since = sorted_before[1] if sorted_before is not None and sorted_before[0] is source else None
        try:
            maker = self._worker(lambda stop: snapshots.make_sorted(state, forks, stop, since))
            try:
                snapshot, sorting = await maker.done
            finally:
                self._workers.discard(maker)
            if source is not None and sorting is not None and self._folds.get(raw) is source:
                self._sorting[raw] = (source, sorting)
            ref: FoldRef | None = snapshots.WHOLE if whole else None
            if fold is not None:
                ref = await self._save_fold(ledger, fold, state.digest, changes)
                if ref is None:  # given up: entries arrive, so wait a while before pickling it again
                    self._retry[raw] = time.monotonic() + SAVE_RETRY_S
            # The store keeps it only if it covers every entry stored now (one may have arrived meanwhile).
            kept = await self._store.keep_snapshot(ledger, dataclasses.replace(snapshot, fold=ref))
        except Exception as exc:  # a snapshot is only a shortcut (a full disk, say): the next restart folds instead
            log.warning("ledger snapshot not saved", extra={"ledger": str(ledger), "detail": str(exc)})
            return False
        if kept:
            self._saved[raw] = len(state.status)
            if ref is not None:
                self._retry.pop(raw, None)
            if ref is not None and ref.parts:
                self._fold_saved[raw] = ref.entries
            log.info("ledger snapshot saved", extra={"ledger": str(ledger), "entries": len(state.status),
                                                     "bytes": len(snapshot.state), "fold": ref is not None,
                                                     "ms": round((time.perf_counter() - started) * 1000)})
        del snapshot  # what the save made (the state pickled, its kept status, the fold's parts) is freed: give it back
        if len(state.status) >= self._freeze_entries and not self._one_shot:
            await asyncio.to_thread(give_back)
        return bool(kept)

    async def _save_fold(self, ledger: CID, fold: LedgerFold, digest: bytes, changes: int) -> FoldRef | None:
        """The fold pickled into its parts in the store (in a thread), or None when it changed or is about to."""
        raw, loop = ledger.raw, asyncio.get_running_loop()
        if self._changes.get(raw, 0) != changes or raw in self._pickling:
            return None
        token = os.urandom(16)

        def put(stop: threading.Event, part: int, data: bytes) -> None:
            on_loop(loop, stop, lambda: self._store.keep_fold_part(ledger, token, part, data))

        worker = self._worker(lambda stop: timed(snapshots.encode_fold, fold, digest, token,
                                                  lambda i, b: put(stop, i, b), stop))
        self._pickling[raw] = worker
        try:
            ref: FoldRef
            ref, self._fold_s[raw] = await worker.done
            return ref
        except Abandoned:
            log.info("ledger fold not saved: entries arrived", extra={"ledger": str(ledger)})
            return None
        finally:
            self._workers.discard(worker)
            if self._pickling.get(raw) is worker:
                del self._pickling[raw]
