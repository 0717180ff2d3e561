"""The API's governance and pledge routes (SPEC.md §12 and §18).

    GET  /api/v1/ledgers/{ledger}/motions          the ledger's motions with their counts (readers)
    POST /api/v1/ledgers/{ledger}/motions          propose a motion (owner)
    GET  /api/v1/motions/{motion}                  one motion (readers of its ledger)
    POST /api/v1/motions/{motion}/votes            vote, or vote again (owner)
    POST /api/v1/motions/{motion}/close            close it and count (owner)
    GET  /api/v1/ledgers/{ledger}/pledges?as_of=   pledges with their schedule and arrears (readers)
    POST /api/v1/ledgers/{ledger}/pledges          pledge recurring transfers (owner)
    GET  /api/v1/entries/{entry}                   one entry, e.g. a citation, if the caller may read its ledger

Registered by node/http/ledger.py's `build_app`; the handlers use its access and body helpers.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from node.governance_views import motion_json, parse_day, pledge_json, today
from node.http.context import (
    STATES,
    STORE,
    is_owner,
    is_public,
    readable_state,
    submit,
    unknown_ledger,
)
from node.http.openapi import ENTRY_PARAM, LEDGER_PARAM, Access, Operation, Param
from node.http.schemas import CID_SCHEMA, CREATED, DID_SCHEMA, ref
from node.views import entry_row
from protocol import CID, InvalidData, LocalError, governance_ops
from protocol.requests import MotionClose, MotionCreate, PledgeCreate, Vote
from protocol.state import LedgerState

_DECIMAL: Final[dict[str, Any]] = {"type": "string", "description": "an exact decimal, e.g. \"2.5\""}
_COUNTS: Final[dict[str, Any]] = {"type": "object", "additionalProperties": {"type": "integer"}}
MOTION: Final[dict[str, Any]] = {
    "type": "object", "required": ["id", "title", "options", "closed", "totals", "winner", "ballots"],
    "description": "a motion and its count, as `tally motion show --json` prints it; `winner` is null until it is "
                   "closed (`leading` says who leads meanwhile); `ballots` are the counted ones, one per voter",
    "properties": {
        "id": CID_SCHEMA, "proposer": DID_SCHEMA, "title": {"type": "string"},
        "options": {"type": "array", "items": {"type": "string"}},
        "closes": {"type": ["string", "null"]}, "amend": {"type": ["object", "null"]},
        "closed": {"type": "boolean"}, "closing": {**CID_SCHEMA, "type": ["string", "null"]},
        "closed_by": {"type": ["string", "null"], "description": "who wrote the deciding closing"},
        "closed_at": {"type": ["string", "null"], "description": "the deciding closing's time"},
        "closed_early": {"type": "boolean", "description": "closed before `closes` (a version 1 proposer may)"},
        "totals": _COUNTS, "scored": _COUNTS, "averages": {"type": "object"},
        "winner": {"type": ["string", "null"]}, "leading": {"type": ["string", "null"]},
        "tie_break": {"type": ["string", "null"], "enum": ["runoff", "listed-first", None]},
        "amended": {"type": ["boolean", "null"]}, "voters": {"type": "integer"},
        "ballots": {"type": "array", "items": {"type": "object"}},
    },
}
PLEDGE: Final[dict[str, Any]] = {
    "type": "object", "required": ["id", "pledger", "amount", "unit", "every", "start", "due", "paid", "arrears",
                                   "periods"],
    "description": "a pledge with its schedule as of a date, as `tally pledges --json` prints it",
    "properties": {
        "id": CID_SCHEMA, "pledger": DID_SCHEMA, "amount": _DECIMAL, "unit": {"type": "string"},
        "per": {"type": ["string", "null"]}, "basis": {"type": ["string", "null"]},
        "every": {"type": "string", "enum": ["month", "quarter", "year"]}, "start": {"type": "string"},
        "until": {"type": ["string", "null"]}, "as_of": {"type": "string", "format": "date"},
        "due": _DECIMAL, "paid": _DECIMAL, "arrears": _DECIMAL, "credit": _DECIMAL,
        "period_count": {"type": "integer", "description": "periods due so far; periods lists the latest of them"},
        "periods": {"type": "array", "maxItems": 24,
                    "items": {"type": "object", "required": ["period", "due", "paid", "arrears"]}},
        "payments": {"type": "array", "items": {"type": "object"}},
    },
}
MOTION_PARAM: Final = Param("motion", "path", CID_SCHEMA, "the motion's id (its gov.motion entry's CID)")
_WRITE_ERRORS: Final = ("bad_cid", "unknown_ledger", "not_member", "catching_up")


def add_governance_routes(app: web.Application, prefix: str) -> None:
    app.router.add_get(f"{prefix}/ledgers/{{ledger}}/motions", list_motions)
    app.router.add_post(prefix + MotionCreate.PATH, create_motion)
    app.router.add_get(f"{prefix}/motions/{{motion}}", get_motion)
    app.router.add_post(prefix + Vote.PATH, vote)
    app.router.add_post(prefix + MotionClose.PATH, close_motion)
    app.router.add_get(f"{prefix}/ledgers/{{ledger}}/pledges", list_pledges)
    app.router.add_post(prefix + PledgeCreate.PATH, create_pledge)
    app.router.add_get(f"{prefix}/entries/{{entry}}", get_entry)


async def _motion_state(request: web.Request, *, owner: bool) -> tuple[LedgerState, CID]:
    """The state of the motion's ledger (readable by this caller) and the motion's id."""
    motion = CID.parse(request.match_info["motion"])
    entry = await request.app[STORE].get(motion)
    if entry is None or entry.is_genesis:
        raise LocalError("unknown_entry", f"no entry {motion} is stored here")
    genesis = await request.app[STORE].genesis(entry.ledger_id)
    if genesis is None or not (owner or is_public(genesis)):
        raise LocalError("unknown_entry", f"no entry {motion} is stored here")
    state = await request.app[STATES].get(entry.ledger_id)
    if state is None:
        raise unknown_ledger(entry.ledger_id)
    return state, motion


@Operation("A ledger's motions with their counts, in canonical order", {
    "type": "object", "required": ["motions"], "properties": {"motions": {"type": "array", "items": MOTION}}},
    access=Access.OPTIONAL, parameters=(LEDGER_PARAM,), errors=("bad_cid", "unknown_ledger"))
async def list_motions(request: web.Request) -> web.Response:
    state = await readable_state(request)
    return web.json_response({"motions": [motion_json(m) for m in state.motions]})


@Operation(
    MotionCreate.SUMMARY, CREATED, status=201, access=Access.OWNER, parameters=(LEDGER_PARAM,), request=MotionCreate,
    errors=(*_WRITE_ERRORS, "bad_motion", "bad_amendment", "bad_time"),
)
async def create_motion(request: web.Request) -> web.Response:
    return await submit(request, MotionCreate)


@Operation("One motion and its count", MOTION, access=Access.OPTIONAL, parameters=(MOTION_PARAM,),
           errors=("bad_cid", "unknown_entry", "bad_reference"))
async def get_motion(request: web.Request) -> web.Response:
    state, motion = await _motion_state(request, owner=is_owner(request))
    return web.json_response(motion_json(governance_ops.find_motion(state, motion)))


@Operation(
    Vote.SUMMARY, CREATED, status=201, access=Access.OWNER, parameters=(MOTION_PARAM,), request=Vote,
    errors=(*_WRITE_ERRORS, "unknown_entry", "bad_reference", "unknown_option", "vote_out_of_range",
            "motion_closed"),
)
async def vote(request: web.Request) -> web.Response:
    return await submit(request, Vote)


@Operation(
    MotionClose.SUMMARY, CREATED, status=201, access=Access.OWNER, parameters=(MOTION_PARAM,), request=MotionClose,
    errors=(*_WRITE_ERRORS, "unknown_entry", "bad_reference", "motion_closed", "motion_not_closed",
            "not_proposer"),
)
async def close_motion(request: web.Request) -> web.Response:
    return await submit(request, MotionClose)


@Operation(
    "A ledger's pledges with their schedule: due, paid and running arrears per period, as of a day",
    {"type": "object", "required": ["pledges"], "properties": {"pledges": {"type": "array", "items": PLEDGE}}},
    access=Access.OPTIONAL,
    parameters=(LEDGER_PARAM, Param("as_of", "query", {"type": "string", "format": "date"},
                                    "the day (YYYY-MM-DD) to count up to; default today (UTC)")),
    errors=("bad_cid", "unknown_ledger", "bad_request", "bad_time"),
)
async def list_pledges(request: web.Request) -> web.Response:
    state = await readable_state(request)
    unknown = sorted(set(request.query) - {"as_of"})
    if unknown:
        raise LocalError("bad_request", f"unknown query parameter {unknown[0]!r}")
    as_of = parse_day(request.query["as_of"], "as_of") if "as_of" in request.query else today()
    return web.json_response({"pledges": [pledge_json(p, as_of) for p in state.pledges]})


@Operation(
    PledgeCreate.SUMMARY, CREATED, status=201, access=Access.OWNER, parameters=(LEDGER_PARAM,), request=PledgeCreate,
    errors=(*_WRITE_ERRORS, "bad_pledge", "bad_quantity", "unknown_unit", "bad_time", "bad_field"),
)
async def create_pledge(request: web.Request) -> web.Response:
    return await submit(request, PledgeCreate)


@Operation(
    "One entry by id, e.g. to resolve a citation (`cites`), if the caller may read its ledger", ref("Entry"),
    access=Access.OPTIONAL, parameters=(ENTRY_PARAM,), errors=("bad_cid", "unknown_entry"),
    description="An entry of a members-only ledger is answered as unknown without the owner's token, so a "
                "citation reveals nothing to those who may not see the cited ledger (SPEC.md §18.6).",
)
async def get_entry(request: web.Request) -> web.Response:
    entry_id = CID.parse(request.match_info["entry"])
    owner = is_owner(request)
    store = request.app[STORE]
    try:
        entry = await store.get(entry_id)
    except InvalidData as exc:
        if exc.code != "store_corrupt" or owner:
            raise
        entry = None  # damaged here: others learn nothing of an entry they may not see (SPEC.md §13.4)
    genesis = None if entry is None else await store.genesis(entry.ledger_id)
    if entry is None or genesis is None or not (owner or is_public(genesis)):
        raise LocalError("unknown_entry", f"no entry {entry_id} is stored here")
    return web.json_response(entry_row(entry))

