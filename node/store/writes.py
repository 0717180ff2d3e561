"""The one way a local member's entry is written, for the API, the dashboard and the offline CLI alike.

A write takes the ledger's current state, builds the entry from it and what the member asked for (the
builders of protocol/ledger_ops.py and governance_ops.py check the request against that state and
raise the code the member sees), refuses while the node is catching up with its peers (safe restore:
nothing is signed on a state that may be behind), then has the store sign and append it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from node.store.states import LedgerStates, Unread
from node.store.store import Store
from protocol import CID, Entry, LocalError, TallyError, public_key_from_did
from protocol.requests import Contribute, Endorse, Found, LedgerWrite, Name
from protocol.state import LedgerState, is_ignored
from protocol.valueflows import ABOUT_KIND, ENDORSE_KIND, EVENT_KIND
from protocol.writes import AppendRequest

#: What a write makes from the ledger's state, the writer's did and the entry's timestamp.
Build = Callable[[LedgerState, str, int], AppendRequest]


class StateSource(Protocol):
    async def get(self, ledger: CID) -> LedgerState | None: ...


class FoldedStates:
    """Each state read from the store when asked (no cache), for a one-shot CLI command: the snapshot a node
    kept of it when that is current (node/store/snapshots.py), else the fold kept with it and the entries stored
    after it folded in, else folded from scratch. Nothing is saved."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, ledger: CID) -> LedgerState | None:
        states = LedgerStates(self._store, one_shot=True)
        try:
            return await states.get(ledger)
        finally:
            states.close()


async def stored_state(store: Store, ledger: CID) -> LedgerState | None:
    """A ledger's state as a one-shot CLI command reads it (`FoldedStates`), or None when it is not stored."""
    return await FoldedStates(store).get(ledger)


#: The writes that may be built against a ledger's last state while it catches up: the everyday ones, whose builds
#: (protocol/ledger_ops.py) read the writer's membership, the rules and their heads, the contribution they name
#: and its endorsements, and the members' names.
UNREAD: Final = (Contribute, Endorse, Name)


def unread_by(request: LedgerWrite, me: str) -> Unread:
    """Whether none of the entries stored since a state changes what `request`'s build, by `me`, reads of it.
    Only these change none of it: an entry outside the ledger's state (an ignored kind); a contribution that
    corrects and pays nothing, an endorsement, unless the request names it or its contribution; `me`'s own
    name, and another member's for a request that sets no name. Admissions, leaves, governance (rules and their
    heads), pledges, erasures, key events: the write waits for the current state."""
    if not isinstance(request, UNREAD) or (isinstance(request, Contribute) and request.fulfills is not None):
        return lambda state, since: False
    named = request.entry if isinstance(request, Endorse) else getattr(request, "corrects", None)

    def unread(state: LedgerState, since: Sequence[Entry]) -> bool:
        for entry in since:
            body = entry.body or {}
            if entry.ledger_id != state.ledger:
                return False
            if is_ignored(entry) and not entry.is_genesis:
                continue
            if entry.kind == EVENT_KIND and "corrects" not in body and "fulfills" not in body:
                if entry.id != named:
                    continue
            elif entry.kind == ENDORSE_KIND:
                if body.get("event") != named and entry.id != named:
                    continue
            elif entry.kind == ABOUT_KIND and (entry.author == me or not isinstance(request, Name)):
                continue
            return False
        return True

    return unread


def never() -> bool:
    """The offline CLI writes only when no node serves its home, so it is never catching up."""
    return False


@dataclass(frozen=True, slots=True)
class LocalWrites:
    store: Store
    states: StateSource
    me: str  # the writer's did: the identity its entries write as
    wall_ms: Callable[[], int]  # the timestamp of a new entry
    catching_up: Callable[[], bool] = never

    async def state(self, ledger: CID) -> LedgerState:
        """The ledger's current state; `unknown_ledger` when it is not stored here."""
        state = await self.states.get(ledger)
        if state is None:
            raise LocalError("unknown_ledger", f"no ledger {ledger} is stored here")
        return state

    async def target_of(self, request: LedgerWrite) -> tuple[CID, Entry | None]:
        """The ledger `request` writes to: the one it names, or the one of the entry it names (with that entry;
        `unknown_entry` when it is not stored here; a motion or an erased entry is never a ledger's genesis)."""
        target = request.target()
        if request.TARGET == "ledger":
            return target, None
        entry = await self.store.get(target)
        if entry is None or (request.TARGET != "entry" and entry.is_genesis):
            where = " of a ledger" if request.TARGET == "written" else ""
            raise LocalError("unknown_entry", f"no entry {target}{where} is stored here")
        return entry.ledger_id, entry

    async def found(self, request: LedgerWrite, state: LedgerState, target: Entry | None = None) -> Found:
        """What `request`'s build reads from the store besides `state` (protocol/requests.py Found)."""
        chain = request.chain_of(state)
        head = None if chain is None else await self.store.head(state.ledger, public_key_from_did(chain))
        return Found(target, self.store.public_key, None if head is None else head.id)

    async def submit(self, request: LedgerWrite) -> Entry:
        """Append the entry a declared write request (protocol/requests.py) asks for."""
        ledger, target = await self.target_of(request)
        state, exact = await self.state_for(request, ledger)
        found = await self.found(request, state, target)
        try:
            made = request.build_with(state, self.me, self.wall_ms(), found)
        except TallyError:  # a builder's refusal (LocalError, or InvalidData from a payload's parser)
            if exact:
                raise
            # Refused against a last state another Tally version saved: the current state says.
            state = await self.state(ledger)
            found = await self.found(request, state, target)
            made = request.build_with(state, self.me, self.wall_ms(), found)
        return await self._append(made)

    async def state_for(self, request: LedgerWrite, ledger: CID) -> tuple[LedgerState, bool]:
        """The state `request` is built against (the current one, or while the ledger catches up the last one,
        `unread_by`), and whether it is exact."""
        if not isinstance(self.states, LedgerStates):
            return await self.state(ledger), True
        state, exact = await self.states.for_write(ledger, unread_by(request, self.me))
        if state is None:
            raise LocalError("unknown_ledger", f"no ledger {ledger} is stored here")
        return state, exact

    async def write(self, ledger: CID, build: Build) -> Entry:
        """Append what `build(state, me, ts)` makes from the ledger's current state."""
        state = await self.state(ledger)
        return await self.append(lambda ts: build(state, self.me, ts))

    async def append(self, build: Callable[[int], AppendRequest]) -> Entry:
        """Append what `build(ts)` makes (it checks the request first): not while catching up."""
        return await self._append(build(self.wall_ms()))

    async def _append(self, made: AppendRequest) -> Entry:
        if self.catching_up():
            raise LocalError(
                "catching_up", "the node is catching up with its peers before it signs new entries; retry shortly"
            )
        return await self.store.append(made)
