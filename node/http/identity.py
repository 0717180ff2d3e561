"""The API's routes for identities that outlive devices (SPEC.md §12, §19, §20).

    POST /api/v1/entries/{entry}/erasure           erase one of this node's entries' payload (owner)

Registered by node/app.py's `build_app`; the handlers use node/http/context.py's access and body helpers.
"""

from __future__ import annotations

from aiohttp import web

from node.http.context import CONFIG, STORE, append_built, own_state, require_owner
from node.http.openapi import CREATED, ENTRY_PARAM, Access, Operation
from protocol import CID, LocalError, ledger_ops


def add_identity_routes(app: web.Application, p: str) -> None:
    app.router.add_post(f"{p}/entries/{{entry}}/erasure", erase_entry)


@Operation(
    "Erase an entry's payload (a `ledger.erase` entry)", CREATED, status=201, access=Access.OWNER,
    parameters=(ENTRY_PARAM,),
    description="Only the key that wrote the entry erases it. Every node that applies the erasure drops the "
                "payload's bytes; the header stays, so the chain still verifies (SPEC.md §20).",
    errors=("bad_cid", "unknown_entry", "unknown_ledger", "not_member", "not_erasable", "catching_up"),
)
async def erase_entry(request: web.Request) -> web.Response:
    require_owner(request)
    entry_id = CID.parse(request.match_info["entry"])
    store = request.app[STORE]
    target = await store.get(entry_id)
    if target is None or target.is_genesis:
        raise LocalError("unknown_entry", f"no entry {entry_id} of a ledger is stored here")
    state = await own_state(request, target.ledger_id)
    me, key = request.app[CONFIG].did, store.public_key
    assert key is not None  # the node's store signs
    return await append_built(request, lambda ts: ledger_ops.erase(state, me, target, key, ts))
