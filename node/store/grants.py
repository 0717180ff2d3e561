"""Writing as an identity from another key (a device, a recovered key; SPEC.md §19): the `grant` a key's
first entry in a ledger names, looked up in the ledger's state when that entry is appended."""

from __future__ import annotations

from node.store.store import Store
from node.store.writes import FoldedStates, StateSource
from protocol import CID, key_ops


def attach_grants(store: Store, identity: str, key: str, states: StateSource | None = None) -> None:
    """Make `store` name the grant of `key` (a did:key) on its first entry in each ledger, when the home
    writes as another `identity` than its key's (`identity.did`). `states`: where ledger states come from (a
    running node's, kept current, so that such an entry never waits for a fold of the whole ledger); by
    default each is folded from the store (a one-shot CLI command)."""
    if identity == key:
        return
    source = FoldedStates(store) if states is None else states

    async def grant_for(ledger: CID) -> CID | None:
        state = await source.get(ledger)
        return None if state is None else key_ops.grant_for(state, identity, key)

    store.grant_for = grant_for
