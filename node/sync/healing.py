"""The store heals itself (SPEC.md §10): a stored entry found damaged is quarantined and fetched again from peers.

A damaged entry is found when it is read (a ledger's log, an entry by id, a chain served to a peer) and by one
scrub of the whole store when the node starts. It is moved to the store's quarantine table, where it is kept for
inspection and no longer read as part of its ledger, and each link on which its ledger is shared (for a
members-only ledger: its members, who may hold it) is asked for it by seq, at once and again every `retry_s`
seconds (`heal_retry_s` in tally.toml, 5 by default) on links not asked yet. A copy comes back through sync's
ordinary checks (§5.4), and the store takes it only if it has the id the damaged entry was stored under: its id is
the hash of its header.

What healing did is kept in a `HealRecord` (rounds made, entries waiting, which peer was asked for which entry,
entries restored): the node's owner reads it in `GET /api/v1/peers` as `healing`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from node.store.states import LedgerStates
from node.store.store import Store
from node.sync.peers import wall_ms
from node.sync.session import SyncSession
from protocol import Entry

log = logging.getLogger(__name__)

SCRUB_PAUSE_S: Final = 0.02  # between reads of 512 rows: a 1M-entry store takes ~40 s, ~2 s of it CPU
MAX_ASKED_KEPT: Final = 64  # the latest asks the record keeps: a disk failing wholesale must not grow the answer


@dataclass(frozen=True, slots=True)
class Asked:
    """A peer asked for a damaged entry (once per entry and link)."""

    entry: str
    peer: str
    at: int  # ms, wall clock


@dataclass(slots=True)
class HealRecord:
    """What healing has done since the node started: `healing` in `GET /api/v1/peers`. A node that does not heal
    (a one-shot `tally sync`) keeps the empty record."""

    rounds: int = 0  # rounds completed: quarantine what was found, ask every link for what waits
    last_round: int | None = None  # ms, wall clock: when the latest round ended
    waiting: int = 0  # quarantined entries waiting for a good copy, as of the latest round
    restored: int = 0  # damaged entries a peer's good copy replaced
    asked: deque[Asked] = field(default_factory=lambda: deque(maxlen=MAX_ASKED_KEPT))  # oldest first

    def as_json(self) -> dict[str, object]:
        return {
            "rounds": self.rounds,
            "last_round": self.last_round,
            "waiting": self.waiting,
            "restored": self.restored,
            "asked": [{"entry": a.entry, "peer": a.peer, "at": a.at} for a in self.asked],
        }


class Healer:
    def __init__(
        self, store: Store, states: LedgerStates, sessions: Callable[[], Iterable[SyncSession]], record: HealRecord,
        retry_s: float,  # how often quarantined entries are asked for on links not asked yet
    ) -> None:
        self._store = store
        self._retry_s = retry_s
        self.record = record
        self._states = states
        self._sessions = sessions
        self._found: set[bytes] = set()  # damaged ids not yet quarantined
        self._waiting: set[bytes] = set()  # quarantined ids
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._unsubscribe: list[Callable[[], None]] = []

    def start(self) -> None:
        self._unsubscribe = [self._store.on_damaged(self._on_damaged), self._store.on_new_entries(self._on_stored)]
        self._tasks = [asyncio.create_task(self._run(), name="heal"), asyncio.create_task(self._scrub(), name="scrub")]

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _on_damaged(self, entry_id: bytes) -> None:
        self._found.add(entry_id)
        self._wake.set()

    def _on_stored(self, entries: Sequence[Entry]) -> None:
        for entry in entries:
            if entry.id.raw in self._waiting:
                self._waiting.discard(entry.id.raw)
                self.record.restored += 1
                self._states.forget(entry.ledger_id)
                log.warning("damaged entry restored from a peer", extra={"entry": str(entry.id)})

    async def _scrub(self) -> None:
        try:
            async with contextlib.aclosing(self._store.scrub(pause_s=SCRUB_PAUSE_S)) as damaged:
                count = sum([1 async for _ in damaged])
        except Exception:  # a store that cannot be read is reported where it is read
            log.exception("store scrub failed")
            return
        log.info("store scrubbed", extra={"damaged": count})

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._retry_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._heal()
            except Exception:  # never let one bad row stop healing for good
                log.exception("healing the store failed")
                continue
            self.record.rounds += 1
            self.record.last_round = wall_ms()

    async def _heal(self) -> None:
        for entry_id in sorted(self._found):
            self._found.discard(entry_id)
            moved = await self._store.quarantine(entry_id)
            if moved is not None:
                self._states.forget(moved.ledger)  # folded again without it: not counted while damaged
        quarantined = await self._store.quarantined()
        self._waiting = {q.id.raw for q in quarantined}
        self.record.waiting = len(quarantined)
        for q in quarantined:
            for session in list(self._sessions()):
                if session.refetch(q.ledger, q.author, q.seq):
                    self.record.asked.append(Asked(str(q.id), session.peer_did, wall_ms()))


__all__ = ["MAX_ASKED_KEPT", "Asked", "HealRecord", "Healer"]
