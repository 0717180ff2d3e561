"""The API's routes for members: erasure (SPEC.md §20) and invitations (§12, node/http/invites.py).

    POST /api/v1/entries/{entry}/erasure           erase one of this node's entries' payload (owner)
    POST /api/v1/ledgers/{ledger}/invitations      invite: a link with a secret, shown once (owner)
    GET  /api/v1/invitations                       the invitations this node issued (owner)
    POST /api/v1/invitations/{id}/revoke           revoke one (owner)
    POST /api/v1/invitations/redeem                a newcomer's node redeems a secret (anyone holding one)
    POST /api/v1/join                              this node joins by a link: redeems it at the inviter (owner)
    GET  /api/v1/devices                           the owner's devices across their ledgers (owner)
    GET  /api/v1/ledgers/{ledger}/recoveries       key recoveries approved so far (readers)
    POST /api/v1/ledgers/{ledger}/recoveries       approve one (owner)

Registered by node/app.py's `build_app`; the handlers use node/http/context.py's access and body helpers.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from node.http import invites
from node.http.context import (
    AUTH_FAILURES,
    CONFIG,
    REPLICATION,
    STATES,
    STORE,
    WRITES,
    own_state,
    read_request,
    readable_state,
    require_owner,
    submit,
)
from node.http.openapi import ENTRY_PARAM, LEDGER_PARAM, Access, Operation, Param
from node.http.schemas import CID_SCHEMA, CREATED, DID_SCHEMA
from node.ledger_views import device_rows
from node.store.store import Store
from protocol import CID, LocalError, key_ops, ledger_ops
from protocol.requests import Erase, Invite, InviteRevoke, Join, RecoverApprove, Redeem
from protocol.state import LedgerState

INVITATION: Final[dict[str, Any]] = {
    "type": "object", "required": ["id", "ledger", "uses", "expires", "created", "state"],
    "description": "an invitation this node issued: `id` the start of its secret's hash (never the secret), "
                   "`uses` redemptions left, `expires` and `created` in ms, `state` open, used, expired or revoked",
    "properties": {"id": {"type": "string"}, "ledger": CID_SCHEMA, "uses": {"type": "integer"},
                   "expires": {"type": "integer"}, "created": {"type": "integer"},
                   "state": {"type": "string", "enum": ["open", "used", "expired", "revoked"]}},
}
JOINED: Final[dict[str, Any]] = {
    "type": "object", "required": ["ledger", "name", "sponsor", "member"],
    "description": "the ledger joined, its name, the inviter (whose sponsorship was written), the sponsorship's id, "
                   "and whether the newcomer is a member already (else more members must sponsor them)",
    "properties": {"ledger": CID_SCHEMA, "name": {"type": "string"}, "sponsor": DID_SCHEMA,
                   "sponsorship": {"type": ["string", "null"]}, "member": {"type": "boolean"}},
}
INVITATION_PARAM: Final = Param("invitation", "path", {"type": "string"}, "an invitation's id (or its start)")


def add_identity_routes(app: web.Application, p: str) -> None:
    app.router.add_post(f"{p}/entries/{{entry}}/erasure", erase_entry)
    app.router.add_post(f"{p}/ledgers/{{ledger}}/invitations", create_invitation)
    app.router.add_get(f"{p}/invitations", list_invitations)
    app.router.add_post(f"{p}/invitations/redeem", redeem_invitation)
    app.router.add_post(f"{p}/invitations/{{invitation}}/revoke", revoke_invitation)
    app.router.add_post(f"{p}/join", join_ledger)
    app.router.add_get(f"{p}/devices", list_devices)
    app.router.add_get(f"{p}/ledgers/{{ledger}}/recoveries", list_recoveries)
    app.router.add_post(f"{p}/ledgers/{{ledger}}/recoveries", approve_recovery)


@Operation(
    Erase.SUMMARY, CREATED, status=201, access=Access.OWNER, parameters=(ENTRY_PARAM,), request=Erase,
    description="Only the key that wrote the entry erases it. Every node that applies the erasure drops the "
                "payload's bytes; the header stays, so the chain still verifies (SPEC.md §20). The body, `{}`, "
                "may be left out.",
    errors=("bad_cid", "unknown_entry", "unknown_ledger", "not_member", "not_erasable", "catching_up"),
)
async def erase_entry(request: web.Request) -> web.Response:
    return await submit(request, Erase)


@Operation(
    Invite.SUMMARY, {
        "type": "object", "required": ["id", "link", "ledger", "uses", "expires"],
        "properties": {"id": {"type": "string"}, "link": {"type": "string"}, "ledger": CID_SCHEMA,
                       "uses": {"type": "integer"}, "expires": {"type": "integer"}}},
    status=201, access=Access.OWNER, parameters=(LEDGER_PARAM,), request=Invite,
    description="The first `uses` (default 1) who redeem the link before it expires get this node's owner's "
                "sponsorship. Only the secret's hash is kept: the link cannot be shown again.",
    errors=("bad_cid", "unknown_ledger", "not_member", "bad_request"),
)
async def create_invitation(request: web.Request) -> web.Response:
    require_owner(request)
    asked = await read_request(request, Invite)
    state = await own_state(request, asked.ledger)
    ledger_ops.membership(state, request.app[CONFIG].did)  # a non-member's sponsorship would count for nothing
    address = asked.address or f"{request.scheme}://{request.host}"
    link, invitation = invites.new_invitation(asked.ledger, asked.uses, asked.expires, request.app[CONFIG].wall_ms(),
                                              invites.check_address(address))
    await request.app[STORE].add_invitation(invitation)
    return web.json_response({"link": str(link), **invites.invitation_row(invitation, invitation.created)},
                             status=201)


@Operation("The invitations this node issued", {
    "type": "object", "required": ["invitations"],
    "properties": {"invitations": {"type": "array", "items": INVITATION}}}, access=Access.OWNER)
async def list_invitations(request: web.Request) -> web.Response:
    require_owner(request)
    now = request.app[CONFIG].wall_ms()
    return web.json_response({"invitations": [invites.invitation_row(i, now)
                                              for i in await request.app[STORE].invitations()]})


@Operation(InviteRevoke.SUMMARY, INVITATION, access=Access.OWNER, parameters=(INVITATION_PARAM,),
           request=InviteRevoke, description="The body, `{}`, may be left out.", errors=("unknown_invitation",))
async def revoke_invitation(request: web.Request) -> web.Response:
    require_owner(request)
    asked = await read_request(request, InviteRevoke)
    revoked = await request.app[STORE].revoke_invitation(asked.invitation)
    if revoked is None:
        raise LocalError("unknown_invitation", "no open invitation has that id (or several start with it)")
    now = request.app[CONFIG].wall_ms()
    return web.json_response({**invites.invitation_row(revoked, now), "state": "revoked"})


@Operation(
    Redeem.SUMMARY, JOINED, status=201, request=Redeem,
    description="Writes this node's owner's sponsorship of `agent` (once per agent and invitation; again, the same "
                "answer). Wrong secrets count as wrong tokens (rate limited per address).",
    errors=("invitation_refused", "bad_did", "already_member", "not_member", "catching_up", "rate_limited"),
)
async def redeem_invitation(request: web.Request) -> web.Response:
    failures, remote = request.app[AUTH_FAILURES], request.remote or "-"
    if failures.blocked(remote):
        raise LocalError("rate_limited", "too many refused invitations from this address; retry later")
    asked = await read_request(request, Redeem)
    writes = request.app[WRITES]

    async def state_of(ledger: CID) -> LedgerState:
        return await writes.state(ledger)

    try:
        answer = await invites.redeem_here(request.app[STORE], state_of, request.app[CONFIG].did,
                                           asked.secret, asked.agent, asked.sig,
                                           request.app[CONFIG].wall_ms(), lambda r: writes.append(lambda _ts: r))
    except LocalError as exc:
        if exc.code == "invitation_refused":
            failures.record(remote)
        raise
    return web.json_response(answer, status=201)


@Operation(
    Join.SUMMARY, JOINED, status=201, access=Access.OWNER, request=Join,
    description="This node redeems the link at the inviter's node, follows the ledger and dials that node from "
                "now on (and at every start).",
    errors=("bad_invitation", "invitation_refused", "not_running", "already_member", "forbidden"),
)
async def join_ledger(request: web.Request) -> web.Response:
    require_owner(request)
    link = invites.Link.parse((await read_request(request, Join)).link)
    key = request.app[CONFIG].key
    if key is None:
        raise LocalError("forbidden", "this node has no key to prove who joins")
    answer = await invites.redeem_there(link, key, request.app[CONFIG].did)
    ledger = await invites.joined(request.app[STORE], link, answer)
    await request.app[REPLICATION].follow(ledger)
    request.app[REPLICATION].add_peer(link.peer, "invite")
    return web.json_response(answer, status=201)


async def recovery_rows(store: Store, state: LedgerState) -> list[dict[str, Any]]:
    """Each recovery approved so far: the identity, the new key, the approvals and their approvers' identities,
    how many it needs (the rules' recovery quorum, SPEC.md §19.5) and whether the key is the identity's now."""
    rows = []
    for (identity, key), approvals in state.recoveries.items():
        entries = [await store.get(cid) for cid in approvals]
        approvers = sorted({state.agent_of(e.author) for e in entries if e is not None})
        done = key_ops.keys_of(state, identity).key == key
        rows.append({"identity": identity, "key": key, "approvals": [str(c) for c in approvals],
                     "approvers": approvers, "needed": state.rules.recovery, "complete": done})
    return rows


DEVICE: Final[dict[str, Any]] = {
    "type": "object", "required": ["key", "name", "added", "revoked", "ledgers"],
    "description": "a device that writes as the owner (`tally device list --json`): times ISO 8601 UTC",
    "properties": {"key": DID_SCHEMA, "name": {"type": "string"}, "added": {"type": "string"},
                   "revoked": {"type": ["string", "null"]}, "ledgers": {"type": "array", "items": CID_SCHEMA}},
}
RECOVERY: Final[dict[str, Any]] = {
    "type": "object", "required": ["identity", "key", "approvals", "approvers", "needed", "complete"],
    "properties": {"identity": DID_SCHEMA, "key": DID_SCHEMA, "approvals": {"type": "array", "items": CID_SCHEMA},
                   "approvers": {"type": "array", "items": DID_SCHEMA}, "needed": {"type": "integer"},
                   "complete": {"type": "boolean"}},
}


@Operation("The owner's devices across the ledgers they belong to", {
    "type": "object", "required": ["devices"], "properties": {"devices": {"type": "array", "items": DEVICE}}},
    access=Access.OWNER)
async def list_devices(request: web.Request) -> web.Response:
    require_owner(request)
    me, states = request.app[CONFIG].did, []
    for info in await request.app[STORE].ledgers():
        state = await request.app[STATES].get(info.id)
        if state is not None and me in state.members:
            states.append(state)
    return web.json_response({"devices": device_rows(states, me)})


@Operation("Key recoveries of a ledger approved so far", {
    "type": "object", "required": ["recoveries"], "properties": {"recoveries": {"type": "array", "items": RECOVERY}}},
    access=Access.OPTIONAL, parameters=(LEDGER_PARAM,), errors=("bad_cid", "unknown_ledger"))
async def list_recoveries(request: web.Request) -> web.Response:
    state = await readable_state(request)
    return web.json_response({"recoveries": await recovery_rows(request.app[STORE], state)})


@Operation(
    RecoverApprove.SUMMARY, CREATED, status=201, access=Access.OWNER, parameters=(LEDGER_PARAM,),
    request=RecoverApprove,
    errors=("bad_cid", "unknown_ledger", "not_member", "self_recovery", "bad_did", "catching_up"),
)
async def approve_recovery(request: web.Request) -> web.Response:
    return await submit(request, RecoverApprove)
