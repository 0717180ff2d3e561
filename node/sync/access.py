"""Who may see a ledger over sync (SPEC.md §13.4): anyone a public ledger, its members a members-only one.

The Replicator (node/sync/replication.py) asks it for each ledger a link could share, and again when a ledger's
members change; a member's rotated-in key or device (§19.8) sees what the member sees.
"""

from __future__ import annotations

from node.store.states import LedgerStates
from node.store.store import Store
from protocol import CID, InvalidData


class LedgerAccess:
    """Answers whether a peer may see a ledger; each ledger's visibility is read from its genesis once."""

    def __init__(self, store: Store, states: LedgerStates) -> None:
        self._store = store
        self._states = states
        self._visibility: dict[bytes, str] = {}  # by ledger: "public" or "members", as its genesis says
        # Peers found to be members of a members-only ledger here (a key of theirs): the peer table keeps their
        # rows though they only dial in (SPEC.md §13.9). Bounded by the admissions of the ledgers replicated.
        self.members_seen: set[str] = set()

    async def may_share(self, ledger: CID, peer: str) -> bool:
        """Whether `peer` may see `ledger`: anyone a public ledger, members a members-only one."""
        visibility = self._visibility.get(ledger.raw)
        if visibility is None:
            genesis = await self._store.genesis(ledger)
            if genesis is None or genesis.body is None:
                return False
            visibility = self._visibility[ledger.raw] = str(genesis.body.get("visibility", "members"))
        if visibility == "public":
            return True
        members = await self._states.members(ledger)
        if peer not in members:
            # A member's rotated-in key or device (SPEC.md §19.8) sees what the member sees.
            try:
                state = await self._states.get(ledger)
            except InvalidData:
                return False
            if state is None or state.agent_of(peer) not in members:
                return False
        self.members_seen.add(peer)
        return True


__all__ = ["LedgerAccess"]
