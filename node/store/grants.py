"""Writing as an identity from another key (a device, a recovered key; SPEC.md §19): the `grant` a key's
first entry in a ledger names, looked up in the ledger's state when that entry is appended."""

from __future__ import annotations

from node.store.ledgers import load_state
from node.store.store import Store
from protocol import CID, key_ops


def attach_grants(store: Store, identity: str, key: str) -> None:
    """Make `store` name the grant of `key` (a did:key) on its first entry in each ledger, when the home
    writes as another `identity` than its key's (`identity.did`)."""
    if identity == key:
        return

    async def grant_for(ledger: CID) -> CID | None:
        state = await load_state(store, ledger)
        return None if state is None else key_ops.grant_for(state, identity, key)

    store.grant_for = grant_for
