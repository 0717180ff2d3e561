"""The API's routes for the node itself (identity, OpenAPI, forks, peers, login links, the sync socket) and
for the open-value ledger (SPEC.md §16)."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from aiohttp import hdrs, web

from node.http.client import API_PREFIX
from node.http.context import (
    CONFIG,
    LEDGER_WRITE_ERRORS,
    MAX_PAGE_ENTRIES,
    PROTOCOL_VERSION,
    REPLICATION,
    SESSIONS,
    STORE,
    WRITES,
    api_routes,
    int_query,
    is_owner,
    is_public,
    json_object,
    ledger_param,
    read_request,
    readable_state,
    require_owner,
    submit,
    unknown_ledger,
)
from node.http.errors import STATUS
from node.http.openapi import ENTRY_PARAM, LEDGER_PARAM, Access, Operation, Param, links_to
from node.http.openapi import openapi_document as _openapi_document
from node.http.schemas import CID_SCHEMA, CREATED, DID_SCHEMA, array_of, ref
from node.ledger_views import HistoryQuery, state_json
from node.views import entry_row, fork_row, ledger_row
from protocol import (
    CID,
    LocalError,
    public_key_from_did,
)
from protocol.kel import founding_proof
from protocol.requests import Admit, AppendEntry, Contribute, Endorse, Follow, Leave, LedgerCreate, Name

log = logging.getLogger(__name__)


def add_ledger_routes(app: web.Application, p: str) -> None:
    """The node's and the open-value ledger's routes under the API prefix `p`."""
    app.router.add_get(f"{p}/identity", get_identity)
    app.router.add_get(f"{p}/openapi.json", get_openapi)
    app.router.add_get(f"{p}/ledgers", list_ledgers)
    app.router.add_post(p + LedgerCreate.PATH, create_ledger)
    app.router.add_get(f"{p}/ledgers/{{ledger}}", get_ledger)
    app.router.add_get(f"{p}/ledgers/{{ledger}}/entries", list_entries)
    app.router.add_post(p + AppendEntry.PATH, append_entry)
    app.router.add_get(f"{p}/ledgers/{{ledger}}/state", get_state)
    app.router.add_get(f"{p}/ledgers/{{ledger}}/history", get_history)
    app.router.add_post(p + Admit.PATH, admit_member)
    app.router.add_post(p + Leave.PATH, leave_ledger)
    app.router.add_post(p + Name.PATH, name_member)
    app.router.add_post(p + Contribute.PATH, add_contribution)
    app.router.add_post(p + Endorse.PATH, endorse_entry)
    app.router.add_post(p + Follow.PATH, follow_ledger)
    app.router.add_get(f"{p}/forks", list_forks)
    app.router.add_get(f"{p}/peers", list_peers)
    app.router.add_get(f"{p}/sync", sync, allow_head=False)
    app.router.add_post(f"{p}/login-links", create_login_link)


@Operation("Who this node is", ref("Identity"))
async def get_identity(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    return web.json_response({"id": config.did, "version": config.version, "protocol": PROTOCOL_VERSION})


@Operation("This API's OpenAPI 3.1 document", {"type": "object", "required": ["openapi", "info", "paths"]},
           description="Built from the routes: every route is described (node/http/openapi.py).")
async def get_openapi(request: web.Request) -> web.Response:
    document = _openapi_document(api_routes(request.app), version=request.app[CONFIG].version, status=STATUS)
    return web.json_response(document)


@Operation("The ledgers stored here", array_of("Ledger", "ledgers"), access=Access.OPTIONAL,
           description="All of them for the owner; the public ones without a token.")
async def list_ledgers(request: web.Request) -> web.Response:
    owner = is_owner(request)
    ledgers = await request.app[STORE].ledgers()
    return web.json_response({"ledgers": [ledger_row(i) for i in ledgers if owner or i.visibility == "public"]})


@Operation(
    LedgerCreate.SUMMARY, CREATED, status=201, access=Access.OWNER, request=LedgerCreate,
    errors=("bad_rules", "bad_name", "unknown_rule_key", "unknown_action", "unknown_unit", "bad_quantity",
            "unknown_bucket_recipient", "bad_did", "catching_up", "key_not_authorized"),
    headers={"Location": "the new ledger's path"},
    links=links_to("ledger", "$response.body#/id", "get_ledger", "list_entries", "append_entry", "get_state",
                   "get_history", "admit_member", "add_contribution", "leave_ledger", "preview_distribution",
                   "record_distribution", "export_ledger"),
)
async def create_ledger(request: web.Request) -> web.Response:
    require_owner(request)
    founding = await read_request(request, LedgerCreate)
    me, key = request.app[CONFIG].did, request.app[STORE].public_key
    assert key is not None  # the node's store signs
    proof = founding_proof(me, key, request.app[CONFIG].key_log)  # a later key of the identity (SPEC.md §19.9)
    entry = await request.app[WRITES].append(partial(founding.build, me, proof=proof))
    return web.json_response(
        {"id": str(entry.id)}, status=201, headers={hdrs.LOCATION: f"{API_PREFIX}/ledgers/{entry.id}"}
    )


@Operation("One ledger", ref("Ledger"), access=Access.OPTIONAL, parameters=(LEDGER_PARAM,),
           errors=("bad_cid", "unknown_ledger"))
async def get_ledger(request: web.Request) -> web.Response:
    ledger = ledger_param(request)
    owner = is_owner(request)
    for info in await request.app[STORE].ledgers():
        if info.id == ledger and (owner or info.visibility == "public"):
            return web.json_response(ledger_row(info))
    raise unknown_ledger(ledger)


@Operation(
    "A page of a ledger's entries, by author then seq",
    {"type": "object", "required": ["entries"], "properties": {
        "entries": {"type": "array", "items": ref("Entry")},
        "next": {**CID_SCHEMA, "description": "present when more entries may follow: the next page's `after`"},
    }},
    access=Access.OPTIONAL,
    parameters=(
        LEDGER_PARAM,
        Param("author", "query", DID_SCHEMA, "only this author's chain"),
        Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_ENTRIES,
                                 "default": MAX_PAGE_ENTRIES}, "at most this many entries"),
        Param("after", "query", CID_SCHEMA, "the entries after this one (the previous page's `next`)"),
    ),
    errors=("bad_cid", "bad_did", "bad_request", "unknown_ledger", "unknown_entry"),
)
async def list_entries(request: web.Request) -> web.Response:
    ledger = ledger_param(request)
    owner = is_owner(request)
    store = request.app[STORE]
    genesis = await store.genesis(ledger)
    if genesis is None or not (owner or is_public(genesis)):
        raise unknown_ledger(ledger)
    author_did = request.query.get("author")
    author = None if author_did is None else public_key_from_did(author_did)
    after = request.query.get("after")
    limit = int_query(request, "limit", MAX_PAGE_ENTRIES, 1, MAX_PAGE_ENTRIES)
    page = await store.log_page(ledger, limit + 1, author=author, after=None if after is None else CID.parse(after))
    answer: dict[str, Any] = {"entries": [entry_row(entry) for entry in page[:limit]]}
    if len(page) > limit:
        answer["next"] = str(page[limit - 1].id)
    return web.json_response(answer)


@Operation(
    AppendEntry.SUMMARY,
    {"type": "object", "required": ["id", "seq"], "properties": {"id": CID_SCHEMA, "seq": {"type": "integer"}}},
    status=201, access=Access.OWNER, parameters=(LEDGER_PARAM,), request=AppendEntry,
    errors=("bad_cid", "bad_field", "bad_genesis", "bad_encoding", "unknown_ledger", "catching_up"),
    links=links_to("entry", "$response.body#/id", "endorse_entry"),
)
async def append_entry(request: web.Request) -> web.Response:
    require_owner(request)
    entry = await request.app[WRITES].append((await read_request(request, AppendEntry)).build)
    return web.json_response({"id": str(entry.id), "seq": entry.seq}, status=201)


@Operation("A ledger's state: members, totals, pending contributions", ref("State"), access=Access.OPTIONAL,
           parameters=(LEDGER_PARAM,), errors=("bad_cid", "unknown_ledger"))
async def get_state(request: web.Request) -> web.Response:
    state = await readable_state(request)
    return web.json_response(state_json(state, await request.app[STORE].forks()))


@Operation(
    "A ledger's contributions, oldest event first", array_of("Contribution", "contributions"),
    access=Access.OPTIONAL,
    parameters=(
        LEDGER_PARAM,
        Param("agent", "query", DID_SCHEMA, "only contributions this agent provided, received or wrote"),
        Param("action", "query", {"type": "string"}, "only this ValueFlows action"),
        Param("since", "query", {"type": "string"}, "events from this ISO 8601 date or date-time on"),
        Param("until", "query", {"type": "string"}, "events until this date (its whole day) or date-time"),
        Param("status", "query", {"type": "string", "enum": ["", "final", "pending", "rejected"]},
              "only contributions in this status"),
    ),
    errors=("bad_cid", "unknown_ledger", "bad_request", "unknown_action", "bad_time"),
    description="An empty query parameter counts as absent.",
)
async def get_history(request: web.Request) -> web.Response:
    state = await readable_state(request)
    unknown = sorted(set(request.query) - {"agent", "action", "since", "until", "status"})
    if unknown:
        raise LocalError("bad_request", f"unknown query parameter {unknown[0]!r}")
    query = HistoryQuery(**{k: v for k, v in request.query.items() if v != ""})
    return web.json_response({"contributions": query.rows(state)})


@Operation(
    Admit.SUMMARY, CREATED, status=201, access=Access.OWNER, parameters=(LEDGER_PARAM,), request=Admit,
    errors=(*LEDGER_WRITE_ERRORS, "bad_did", "bad_agent", "already_member"),
)
async def admit_member(request: web.Request) -> web.Response:
    return await submit(request, Admit)


@Operation(
    Leave.SUMMARY, CREATED, status=201, access=Access.OWNER, parameters=(LEDGER_PARAM,), request=Leave,
    errors=LEDGER_WRITE_ERRORS,
)
async def leave_ledger(request: web.Request) -> web.Response:
    return await submit(request, Leave)


@Operation(
    Name.SUMMARY, CREATED, status=201, access=Access.OWNER, parameters=(LEDGER_PARAM,), request=Name,
    errors=(*LEDGER_WRITE_ERRORS, "bad_field", "bad_name", "confusable_name"),
)
async def name_member(request: web.Request) -> web.Response:
    return await submit(request, Name)


@Operation(
    Contribute.SUMMARY, CREATED, status=201, access=Access.OWNER, parameters=(LEDGER_PARAM,), request=Contribute,
    errors=(*LEDGER_WRITE_ERRORS, "unknown_action", "unknown_unit", "bad_quantity", "bad_agent", "bad_did",
            "not_party", "bad_time", "bad_time_range", "bad_correction", "bad_reference", "bad_field",
            "unknown_pledge", "bad_payment"),
    links=links_to("entry", "$response.body#/id", "endorse_entry"),
)
async def add_contribution(request: web.Request) -> web.Response:
    return await submit(request, Contribute)


@Operation(
    Endorse.SUMMARY, CREATED, status=201, access=Access.OWNER, parameters=(ENTRY_PARAM,), request=Endorse,
    errors=("bad_cid", "unknown_entry", "unknown_ledger", "not_member", "not_contribution", "self_endorsement",
            "duplicate_endorsement", "catching_up"),
)
async def endorse_entry(request: web.Request) -> web.Response:
    return await submit(request, Endorse)


@Operation(
    Follow.SUMMARY,
    {"type": "object", "required": ["ledger", "following"],
     "properties": {"ledger": CID_SCHEMA, "following": {"type": "boolean", "const": True}}},
    access=Access.OWNER, request=Follow, errors=("bad_cid",),
)
async def follow_ledger(request: web.Request) -> web.Response:
    # Not held while catching up: following signs nothing, so it cannot fork a chain.
    require_owner(request)
    ledger = (await read_request(request, Follow)).ledger
    await request.app[STORE].follow(ledger)
    await request.app[REPLICATION].follow(ledger)
    return web.json_response({"ledger": str(ledger), "following": True})


@Operation("The forks this node knows of", array_of("Fork", "forks"), access=Access.OWNER)
async def list_forks(request: web.Request) -> web.Response:
    require_owner(request)
    return web.json_response({"forks": [fork_row(proof) for proof in await request.app[STORE].forks()]})


@Operation(
    "The node's peers, and what healing its store asked of them",
    {"type": "object", "required": ["peers", "healing"],
     "properties": {"peers": {"type": "array", "items": ref("Peer")}, "healing": ref("Healing")}},
    access=Access.OWNER,
)
async def list_peers(request: web.Request) -> web.Response:
    require_owner(request)
    replication = request.app[REPLICATION]
    return web.json_response({
        "peers": [peer.as_json() for peer in replication.peers()], "healing": replication.healing.as_json(),
    })


@Operation(
    "A one-time login link to this node's dashboard (what `tally open` prints)",
    {"type": "object", "required": ["path", "expires"], "properties": {
        "path": {"type": "string", "description": "`/login?token=…`: append it to the node's address"},
        "expires": {"type": "integer", "description": "when the link stops working, ms since the Unix epoch"},
    }},
    status=201, access=Access.OWNER, body={"type": "object", "additionalProperties": False, "properties": {}},
    description="The link works once, within 5 minutes; following it gives the browser an owner session "
    "(an HttpOnly, SameSite=Strict cookie). It is not the API token and does not reveal it.",
)
async def create_login_link(request: web.Request) -> web.Response:
    require_owner(request)
    await json_object(request, {})
    token, ttl_s = request.app[SESSIONS].new_link()
    expires = request.app[CONFIG].wall_ms() + int(ttl_s * 1000)
    return web.json_response({"path": f"/login?token={token}", "expires": expires}, status=201)


@Operation("The WebSocket peer link (SPEC.md §11)", None, status=101, errors=("bad_request",),
           description="Peers authenticate in the Noise handshake, not with the token.")
async def sync(request: web.Request) -> web.StreamResponse:
    return await request.app[REPLICATION].handle_sync(request)
