"""The API's value-equation routes (SPEC.md §12 and §17): preview, record, export.

    GET  /api/v1/ledgers/{ledger}/distribution?amount=&unit=&since=&until=   a preview (readers)
    POST /api/v1/ledgers/{ledger}/distributions                            record one (owner)
    GET  /api/v1/ledgers/{ledger}/export?format=jsonld|csv                 the export (readers)

Registered by node/http/ledger.py's `build_app`; the handlers use its access and body helpers.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from node.exports import FORMATS, MEDIA_TYPES, distribution_json, export_text
from node.http.context import (
    WRITES,
    read_request,
    readable_state,
    require_owner,
)
from node.http.openapi import LEDGER_PARAM, Access, Operation, Param, query_params
from node.http.schemas import CID_SCHEMA, DID_SCHEMA
from protocol import LocalError, ledger_ops
from protocol.requests import RecordDistribution

# Leading zeros are accepted (the node reads "007" as 7), so the pattern allows them: a schema stricter than
# the node would call an accepted request schema-violating.
_DECIMAL: Final[dict[str, Any]] = {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?$",
                                   "description": "an exact decimal, e.g. \"600\" or \"99.95\""}
_DAY: Final[dict[str, Any]] = {"type": "string", "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                               "description": "a day, YYYY-MM-DD (UTC), inclusive"}
DISTRIBUTION: Final[dict[str, Any]] = {
    "type": "object", "required": ["ledger", "amount", "unit", "since", "until", "lines"],
    "description": "a distribution as `tally distribute --json` prints it; the lines sum exactly to the amount",
    "properties": {
        "ledger": CID_SCHEMA, "amount": _DECIMAL, "unit": {"type": "string"},
        "since": {**_DAY, "type": ["string", "null"]}, "until": {**_DAY, "type": ["string", "null"]},
        "lines": {"type": "array", "items": {
            "type": "object", "required": ["bucket", "recipient", "amount"], "properties": {
                "bucket": {"type": "string"},
                "recipient": {"type": "string", "description": "a did:key, or the ledger's id", "examples": [
                    DID_SCHEMA["examples"][0]]},
                "amount": {"type": "string", "description": "with exactly the unit's minor-unit places"},
            }}},
    },
}
_ERRORS: Final = ("bad_cid", "unknown_ledger", "bad_request", "unknown_unit", "bad_amount", "bad_time",
                  "bad_time_range")
_QUERY: Final = frozenset(f.wire for f in RecordDistribution.body_fields())


def add_distribution_routes(app: web.Application, prefix: str) -> None:
    app.router.add_get(f"{prefix}/ledgers/{{ledger}}/distribution", preview_distribution)
    app.router.add_post(prefix + RecordDistribution.PATH, record_distribution)
    app.router.add_get(f"{prefix}/ledgers/{{ledger}}/export", export_ledger)


@Operation(
    "What the ledger's value equation gives for an amount now (nothing is written)", DISTRIBUTION,
    access=Access.OPTIONAL, parameters=(LEDGER_PARAM, *query_params(RecordDistribution)), errors=_ERRORS,
    description="Its query is what recording one takes (`RecordDistribution`), as `tally distribute` without "
    "`--record` reads it.",
)
async def preview_distribution(request: web.Request) -> web.Response:
    state = await readable_state(request)
    unknown = sorted(set(request.query) - _QUERY)
    if unknown:
        raise LocalError("bad_request", f"unknown query parameter {unknown[0]!r}")
    asked = RecordDistribution.decode(dict(request.query), request.match_info)
    return web.json_response(distribution_json(state.ledger, asked.preview(state)))


@Operation(
    RecordDistribution.SUMMARY,
    {**DISTRIBUTION, "required": ["id", *DISTRIBUTION["required"]],
     "properties": {"id": CID_SCHEMA, **DISTRIBUTION["properties"]}},
    status=201, access=Access.OWNER, parameters=(LEDGER_PARAM,), request=RecordDistribution,
    errors=(*_ERRORS, "not_member", "oversize", "catching_up"),
)
async def record_distribution(request: web.Request) -> web.Response:
    require_owner(request)
    asked = await read_request(request, RecordDistribution)
    writes = request.app[WRITES]
    state = await writes.state(asked.ledger)
    payout = asked.preview(state)  # a JSON float amount: bad_amount
    entry = await writes.append(lambda ts: ledger_ops.record_distribution(state, writes.me, payout, ts))
    return web.json_response({"id": str(entry.id), **distribution_json(asked.ledger, payout)}, status=201)


@Operation(
    "The ledger's events and distributions as ValueFlows JSON-LD (application/ld+json), or its events as CSV "
    "(text/csv)", None, access=Access.OPTIONAL,
    parameters=(LEDGER_PARAM, Param("format", "query", {"type": "string", "enum": list(FORMATS),
                                                           "default": "jsonld"}, "jsonld or csv")),
    errors=("bad_cid", "unknown_ledger", "bad_request"), media_types=tuple(MEDIA_TYPES.values()),
    description="JSON-LD with the VF 1.0 context and Tally's terms inlined (nothing to fetch); SPEC.md §17.",
)
async def export_ledger(request: web.Request) -> web.Response:
    state = await readable_state(request)
    unknown = sorted(set(request.query) - {"format"})
    if unknown:
        raise LocalError("bad_request", f"unknown query parameter {unknown[0]!r}")
    fmt = request.query.get("format", "jsonld")
    if fmt not in FORMATS:
        raise LocalError("bad_request", f"format is {' or '.join(FORMATS)}, not {fmt!r:.40}")
    return web.Response(text=export_text(state, fmt), content_type=MEDIA_TYPES[fmt], charset="utf-8")
