"""The node's HTTP API under /api/v1: routes, owner access, JSON errors.

Owner access: a call that writes, and a read of a members-only ledger, needs
`Authorization: Bearer <token>` (the home's `api.token`). Without a token a
caller (a LAN neighbour) reads public ledgers only; a members-only ledger is
answered exactly like an unknown one. A request that carries a token must
carry the right one (401), and an address that keeps sending wrong tokens is
refused for a while (429).

Every error is `{"error": {"code": …, "message": …}}` with the status from
`STATUS`; nothing answers with aiohttp's HTML pages, not even an unknown route
or a bug (500 `internal`, details only in the log).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Final, Protocol

from aiohttp import hdrs, web

from protocol import (
    CID,
    GENESIS_KIND,
    Entry,
    InvalidData,
    LocalError,
    TallyError,
    parse_body,
    public_key_from_did,
)
from protocol.rules import Rules, format_decimal, parse_decimal
from protocol.state import LedgerState

from . import ledger_ops
from .forms import check_append_kind, genesis_body
from .ledger_states import LedgerStates
from .ledger_views import HistoryQuery, contribution_row, state_json
from .openapi import (
    CID_SCHEMA,
    CREATED,
    DID_SCHEMA,
    ENTRY_PARAM,
    LEDGER_PARAM,
    Access,
    Operation,
    Param,
    array_of,
    links_to,
    ref,
)
from .openapi import openapi_document as _openapi_document
from .sessions import Sessions
from .store import AppendRequest, Store, wall_clock_ms
from .views import entry_row, fork_row, ledger_row

log = logging.getLogger(__name__)

API_PREFIX: Final = "/api/v1"
PROTOCOL_VERSION: Final = 1  # SPEC.md "Version 1"
MAX_REQUEST_BYTES: Final = 64 * 1024
AUTH_FAILURES_MAX: Final = 20  # wrong tokens from one address within the window…
AUTH_WINDOW_S: Final = 60.0  # …before it is refused (429) until the oldest leaves the window
AUTH_TRACKED_MAX: Final = 4096  # addresses remembered at once
MAX_PAGE_ENTRIES: Final = 1000  # entries in one page of GET …/entries (its `limit`'s maximum and default)

#: The HTTP status of every error code, in one place. A test checks it covers CODES.
STATUS: Final[Mapping[str, int]] = {
    **dict.fromkeys(
        (
            "bad_encoding", "bad_cid", "bad_did", "unknown_version", "missing_field", "unknown_field",
            "bad_field", "bad_signature", "payload_mismatch", "bad_payload", "bad_genesis", "bad_prev",
            "seq_gap", "ts_regression", "wrong_ledger", "wrong_author", "bad_fork_proof", "bad_body",
            "bad_key_file", "bad_message", "unknown_message", "handshake_failed", "bad_frame", "frame_too_large",
            "protocol_error", "bad_request", "bad_config",
            "bad_rules", "unknown_rule_key", "unknown_action", "unknown_unit", "bad_quantity",
            "unknown_bucket_recipient",
            "bad_reference", "bad_correction", "bad_agent", "not_party", "bad_time", "bad_time_range",
            "bad_amount", "bad_name",
        ),
        400,
    ),
    "unauthorized": 401,
    **dict.fromkeys(("forbidden", "not_member", "self_endorsement"), 403),
    **dict.fromkeys(("not_found", "unknown_ledger", "unknown_entry", "not_contribution"), 404),
    "method_not_allowed": 405,
    **dict.fromkeys(
        ("fork", "catching_up", "identity_exists", "already_running", "already_member", "duplicate_endorsement",
         "distribution_mismatch", "confusable_name"), 409
    ),
    "oversize": 413,
    "rate_limited": 429,
    **dict.fromkeys(("internal", "no_identity", "store_corrupt", "schema_too_new", "listen_failed"), 500),
    "not_running": 503,
    "link_timeout": 504,
    "unreachable": 502,
    # governance and pledges (SPEC.md §18)
    **dict.fromkeys(("bad_motion", "unknown_option", "vote_out_of_range", "bad_amendment", "bad_pledge",
                     "unknown_pledge", "bad_payment"), 400),
    "not_proposer": 403,
    **dict.fromkeys(("motion_closed", "motion_not_closed"), 409),
}

#: The code for an HTTP error aiohttp raises itself (unknown route, wrong method, body too large).
_HTTP_CODES: Final[Mapping[int, str]] = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 413: "oversize", 429: "rate_limited",
}


class PeerView(Protocol):
    def as_json(self) -> dict[str, object]: ...


class Replication(Protocol):
    """What the API uses of the node's replicator (node.replication.Replicator)."""

    @property
    def catching_up(self) -> bool: ...

    async def follow(self, ledger: CID) -> None: ...

    def peers(self) -> Sequence[PeerView]: ...

    async def handle_sync(self, request: web.Request) -> web.StreamResponse: ...


@dataclass(frozen=True, slots=True)
class ApiConfig:
    did: str
    token: str = field(repr=False)
    version: str
    wall_ms: Callable[[], int] = wall_clock_ms  # timestamps of local appends
    monotonic: Callable[[], float] = time.monotonic  # the rate limit's clock

    def __post_init__(self) -> None:
        if not self.token:
            raise ValueError("the API token must not be empty")


class AuthFailures:
    """Wrong tokens per remote address within a sliding window."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float]) -> None:
        self._limit = limit
        self._window_s = window_s
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}

    def blocked(self, remote: str) -> bool:
        times = self._seen.get(remote)
        if times is None:
            return False
        horizon = self._clock() - self._window_s
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._seen[remote]
        return len(times) >= self._limit

    def record(self, remote: str) -> None:
        self._seen.setdefault(remote, deque(maxlen=self._limit)).append(self._clock())
        if len(self._seen) > AUTH_TRACKED_MAX:  # many addresses (IPv6): forget the expired, then the oldest
            for other in [r for r in self._seen if r != remote]:
                self.blocked(other)
            while len(self._seen) > AUTH_TRACKED_MAX:
                del self._seen[next(iter(self._seen))]


STORE: Final = web.AppKey("store", Store)
STATES: Final = web.AppKey("states", LedgerStates)
REPLICATION: Final[web.AppKey[Replication]] = web.AppKey("replication")
CONFIG: Final = web.AppKey("config", ApiConfig)
AUTH_FAILURES: Final = web.AppKey("auth_failures", AuthFailures)
SESSIONS: Final = web.AppKey("sessions", Sessions)  # the dashboard's login links and sessions


def package_version() -> str:
    try:
        return metadata.version("tally-node")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def build_app(store: Store, replication: Replication, config: ApiConfig) -> web.Application:
    """The API application over an open store and a started (or starting) replicator.

    Ledger states come from the replicator's cache (`replication.states`) when it has one, so
    sync and the API compute each state once; otherwise the app keeps its own.
    """
    app = web.Application(middlewares=[_access_log, _errors], client_max_size=MAX_REQUEST_BYTES)
    app[STORE] = store
    shared = getattr(replication, "states", None)
    if isinstance(shared, LedgerStates):
        app[STATES] = shared
    else:
        app[STATES] = LedgerStates(store)
        app.on_cleanup.append(_close_states)
    app[REPLICATION] = replication
    app[CONFIG] = config
    app[AUTH_FAILURES] = AuthFailures(AUTH_FAILURES_MAX, AUTH_WINDOW_S, config.monotonic)
    app[SESSIONS] = Sessions(config.monotonic)
    p = API_PREFIX
    app.router.add_get(f"{p}/identity", get_identity)
    app.router.add_get(f"{p}/openapi.json", get_openapi)
    app.router.add_get(f"{p}/ledgers", list_ledgers)
    app.router.add_post(f"{p}/ledgers", create_ledger)
    app.router.add_get(f"{p}/ledgers/{{ledger}}", get_ledger)
    app.router.add_get(f"{p}/ledgers/{{ledger}}/entries", list_entries)
    app.router.add_post(f"{p}/ledgers/{{ledger}}/entries", append_entry)
    app.router.add_get(f"{p}/ledgers/{{ledger}}/state", get_state)
    app.router.add_get(f"{p}/ledgers/{{ledger}}/history", get_history)
    app.router.add_post(f"{p}/ledgers/{{ledger}}/members", admit_member)
    app.router.add_post(f"{p}/ledgers/{{ledger}}/leave", leave_ledger)
    app.router.add_post(f"{p}/ledgers/{{ledger}}/about", name_member)
    app.router.add_post(f"{p}/ledgers/{{ledger}}/contributions", add_contribution)
    app.router.add_post(f"{p}/entries/{{entry}}/endorsements", endorse_entry)
    app.router.add_post(f"{p}/follow", follow_ledger)
    app.router.add_get(f"{p}/forks", list_forks)
    app.router.add_get(f"{p}/peers", list_peers)
    app.router.add_get(f"{p}/sync", sync, allow_head=False)
    app.router.add_post(f"{p}/login-links", create_login_link)
    from .distribution_api import add_distribution_routes  # its handlers use this module's helpers

    add_distribution_routes(app, p)
    from .governance_api import add_governance_routes  # its handlers use this module's helpers too

    add_governance_routes(app, p)
    from .dashboard import add_dashboard_routes  # the pages at / (node/dashboard.py) use this module's keys

    add_dashboard_routes(app)
    return app


async def _close_states(app: web.Application) -> None:
    app[STATES].close()


# ---- errors and logging ------------------------------------------------------


def error_response(code: str, message: str, status: int | None = None) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status or STATUS.get(code, 500)
    )


@web.middleware
async def _errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                  ) -> web.StreamResponse:
    try:
        return await handler(request)
    except TallyError as exc:
        return _error(request, exc.code, exc.message, STATUS.get(exc.code, 500))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _http_error(request, exc)
        if not _is_api(request):
            error = json.loads(response.text or "{}")["error"]
            return _error(request, error["code"], error["message"], response.status)
        return response
    except Exception:
        log.exception("internal error", extra={"method": request.method, "path": request.path})
        return _error(request, "internal", "the node failed to answer this request; its log has the details", 500)


def _is_api(request: web.Request) -> bool:
    return request.path == API_PREFIX or request.path.startswith(API_PREFIX + "/")


def _error(request: web.Request, code: str, message: str, status: int) -> web.Response:
    """An error as JSON for the API, as an HTML page for the dashboard."""
    log.info("refused", extra={"method": request.method, "path": request.path, "code": code, "status": status})
    if _is_api(request):
        return error_response(code, message, status)
    from .dashboard import error_page

    return error_page(request, code, message, status)


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    code = _HTTP_CODES.get(exc.status, "internal" if exc.status >= 500 else "bad_request")
    message = {
        404: f"no API route {request.path}" if _is_api(request) else f"no page {request.path}",
        405: f"{request.method} is not allowed on {request.path}",
        413: f"the request body is larger than {MAX_REQUEST_BYTES} bytes",
    }.get(exc.status, exc.reason)
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        # A handler (the replicator) that answers in our shape keeps its own code.
        given = json.loads(exc.text or "")["error"]
        if isinstance(given["code"], str) and isinstance(given["message"], str):
            code, message = given["code"], given["message"]
    response = error_response(code, message, exc.status)
    if hdrs.ALLOW in exc.headers:
        response.headers[hdrs.ALLOW] = exc.headers[hdrs.ALLOW]
    return response


@web.middleware
async def _access_log(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> web.StreamResponse:
    """One line per request: method, path (never the query or headers), status, time."""
    started = time.perf_counter()
    response = await handler(request)
    log.info(
        "request",
        extra={
            "method": request.method, "path": request.path, "status": response.status,
            "ms": round((time.perf_counter() - started) * 1000, 1), "remote": request.remote,
        },
    )
    return response


# ---- access --------------------------------------------------------------------


def _is_owner(request: web.Request) -> bool:
    """True with the right token, False with none; a wrong token raises (and counts)."""
    header = request.headers.get(hdrs.AUTHORIZATION)
    if header is None:
        return False
    failures = request.app[AUTH_FAILURES]
    remote = request.remote or "-"
    if failures.blocked(remote):
        raise LocalError("rate_limited", "too many wrong API tokens from this address; retry later")
    scheme, _, given = header.strip().partition(" ")
    expected = request.app[CONFIG].token
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode()):
        return True
    failures.record(remote)
    log.warning("refused token", extra={"remote": remote, "path": request.path})
    raise LocalError("unauthorized", "wrong API token")


def _require_owner(request: web.Request) -> None:
    if not _is_owner(request):
        raise LocalError("unauthorized", "this call needs the owner's API token (Authorization: Bearer <token>)")


def _refuse_while_catching_up(request: web.Request) -> None:
    if request.app[REPLICATION].catching_up:
        raise LocalError(
            "catching_up", "the node is catching up with its peers before it signs new entries; retry shortly"
        )


def _is_public(genesis: Entry) -> bool:
    return bool((genesis.body or {}).get("visibility", "members") == "public")


def _unknown_ledger(ledger: CID) -> LocalError:
    return LocalError("unknown_ledger", f"no ledger {ledger} is stored here")


# ---- request bodies ------------------------------------------------------------


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise InvalidData("bad_body", "duplicate key in a JSON object")
    return result


async def _json_object(request: web.Request, fields: Mapping[str, type]) -> dict[str, Any]:
    """The request body as a JSON object with only `fields` (name -> type; `object` is any)."""
    raw = await request.read()  # HTTPRequestEntityTooLarge past client_max_size
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except UnicodeDecodeError:
        raise LocalError("bad_request", "the request body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise LocalError("bad_request", f"the request body is not JSON: {exc.msg}") from None
    except RecursionError:
        raise LocalError("bad_request", "the request body is nested too deeply") from None
    if not isinstance(value, dict):
        raise LocalError("bad_request", "the request body must be a JSON object")
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise LocalError("bad_request", f"unknown field {unknown[0]!r}")
    for name, kind in fields.items():
        if name in value and not isinstance(value[name], kind):
            raise LocalError("bad_request", f"field {name!r} must be of type {kind.__name__}")
    return value


def _required(obj: Mapping[str, Any], name: str) -> Any:
    if name not in obj:
        raise LocalError("bad_request", f"missing field {name!r}")
    return obj[name]


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit() and low <= int(text) <= high):
        raise LocalError("bad_request", f"{name} is a whole number from {low} to {high}")
    return int(text)


def _ledger_param(request: web.Request) -> CID:
    return CID.parse(request.match_info["ledger"])


# ---- handlers ------------------------------------------------------------------


def api_routes(app: web.Application) -> list[web.AbstractRoute]:
    """The API's routes (under /api/v1), not the dashboard's pages."""
    return [r for r in app.router.routes()
            if r.resource is not None and r.resource.canonical.startswith(API_PREFIX + "/")]


@Operation("Who this node is", ref("Identity"))
async def get_identity(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    return web.json_response({"id": config.did, "version": config.version, "protocol": PROTOCOL_VERSION})


@Operation("This API's OpenAPI 3.1 document", {"type": "object", "required": ["openapi", "info", "paths"]},
           description="Built from the routes: every route is described (node/openapi.py).")
async def get_openapi(request: web.Request) -> web.Response:
    document = _openapi_document(api_routes(request.app), version=request.app[CONFIG].version, status=STATUS)
    return web.json_response(document)


@Operation("The ledgers stored here", array_of("Ledger", "ledgers"), access=Access.OPTIONAL,
           description="All of them for the owner; the public ones without a token.")
async def list_ledgers(request: web.Request) -> web.Response:
    owner = _is_owner(request)
    ledgers = await request.app[STORE].ledgers()
    return web.json_response({"ledgers": [ledger_row(i) for i in ledgers if owner or i.visibility == "public"]})


@Operation(
    "Found a ledger", CREATED, status=201, access=Access.OWNER,
    body={"type": "object", "required": ["name"], "additionalProperties": False, "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "visibility": {"type": "string", "enum": ["members", "public"]},
        "rules": {"type": "object", "description": "the rules file (README, Ledger rules) as JSON, decimals strings"},
    }},
    errors=("bad_rules", "bad_name", "unknown_rule_key", "unknown_action", "unknown_unit", "bad_quantity",
            "unknown_bucket_recipient", "bad_did", "catching_up"),
    headers={"Location": "the new ledger's path"},
    links=links_to("ledger", "$response.body#/id", "get_ledger", "list_entries", "append_entry", "get_state",
                   "get_history", "admit_member", "add_contribution", "leave_ledger", "preview_distribution",
                   "record_distribution", "export_ledger"),
)
async def create_ledger(request: web.Request) -> web.Response:
    _require_owner(request)
    obj = await _json_object(request, {"name": str, "visibility": str, "rules": dict})
    name = genesis_body(_required(obj, "name"), obj.get("visibility", "members"))["name"]
    config: dict[str, Any] = obj.get("rules", {})
    visibility = obj.get("visibility")
    if visibility is not None and isinstance(config.get("visibility"), str) and config["visibility"] != visibility:
        raise LocalError("bad_request", f"visibility {visibility!r} differs from rules.visibility")
    rules = Rules.from_config(config, name=name, creator=request.app[CONFIG].did, public=visibility == "public")
    body = rules.to_body()
    _refuse_while_catching_up(request)
    entry = await request.app[STORE].append(AppendRequest(None, GENESIS_KIND, body, request.app[CONFIG].wall_ms()))
    return web.json_response(
        {"id": str(entry.id)}, status=201, headers={hdrs.LOCATION: f"{API_PREFIX}/ledgers/{entry.id}"}
    )


@Operation("One ledger", ref("Ledger"), access=Access.OPTIONAL, parameters=(LEDGER_PARAM,),
           errors=("bad_cid", "unknown_ledger"))
async def get_ledger(request: web.Request) -> web.Response:
    ledger = _ledger_param(request)
    owner = _is_owner(request)
    for info in await request.app[STORE].ledgers():
        if info.id == ledger and (owner or info.visibility == "public"):
            return web.json_response(ledger_row(info))
    raise _unknown_ledger(ledger)


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
    ledger = _ledger_param(request)
    owner = _is_owner(request)
    store = request.app[STORE]
    genesis = await store.genesis(ledger)
    if genesis is None or not (owner or _is_public(genesis)):
        raise _unknown_ledger(ledger)
    author_did = request.query.get("author")
    author = None if author_did is None else public_key_from_did(author_did)
    after = request.query.get("after")
    limit = _int_query(request, "limit", MAX_PAGE_ENTRIES, 1, MAX_PAGE_ENTRIES)
    page = await store.log_page(ledger, limit + 1, author=author, after=None if after is None else CID.parse(after))
    answer: dict[str, Any] = {"entries": [entry_row(entry) for entry in page[:limit]]}
    if len(page) > limit:
        answer["next"] = str(page[limit - 1].id)
    return web.json_response(answer)


@Operation(
    "Append an entry to the owner's chain in a ledger",
    {"type": "object", "required": ["id", "seq"], "properties": {"id": CID_SCHEMA, "seq": {"type": "integer"}}},
    status=201, access=Access.OWNER, parameters=(LEDGER_PARAM,),
    body={"type": "object", "required": ["kind", "body"], "additionalProperties": False, "properties": {
        "kind": {"type": "string", "description": "namespaced, e.g. `note.text`; not `ledger.genesis`"},
        "body": {"type": "object", "description": "the payload in the DAG-JSON mapping (SPEC.md §8); no floats"},
    }},
    errors=("bad_cid", "bad_field", "bad_genesis", "bad_encoding", "unknown_ledger", "catching_up"),
    links=links_to("entry", "$response.body#/id", "endorse_entry"),
)
async def append_entry(request: web.Request) -> web.Response:
    _require_owner(request)
    ledger = _ledger_param(request)
    obj = await _json_object(request, {"kind": str, "body": object})
    kind = _required(obj, "kind")
    check_append_kind(kind)
    # The same rules as `tally append --body`: re-serialized, a float stays a float and is refused.
    body = parse_body(json.dumps(_required(obj, "body")))
    _refuse_while_catching_up(request)
    entry = await request.app[STORE].append(AppendRequest(ledger, kind, body, request.app[CONFIG].wall_ms()))
    return web.json_response({"id": str(entry.id), "seq": entry.seq}, status=201)


# ---- the open-value ledger (SPEC.md §16) ------------------------------------------


#: What every write of the open-value ledger may answer, besides its own codes.
_LEDGER_WRITE_ERRORS: Final = ("bad_cid", "unknown_ledger", "not_member", "catching_up")


async def _readable_state(request: web.Request) -> LedgerState:
    """The state of the ledger in the path, if this caller may read it (else `unknown_ledger`)."""
    ledger = _ledger_param(request)
    owner = _is_owner(request)
    genesis = await request.app[STORE].genesis(ledger)
    if genesis is None or not (owner or _is_public(genesis)):
        raise _unknown_ledger(ledger)
    state = await request.app[STATES].get(ledger)
    if state is None:
        raise _unknown_ledger(ledger)
    return state


async def _own_state(request: web.Request, ledger: CID) -> LedgerState:
    state = await request.app[STATES].get(ledger)
    if state is None:
        raise _unknown_ledger(ledger)
    return state


async def _ledger_write(
    request: web.Request, ledger: CID, build: Callable[[LedgerState, str, int], AppendRequest]
) -> web.Response:
    """Append what `build(state, me, ts)` makes from the ledger's state and the owner's did: 201 `{"id"}`."""
    state = await _own_state(request, ledger)
    me = request.app[CONFIG].did
    return await _append_built(request, lambda ts: build(state, me, ts))


async def _append_built(request: web.Request, build: Callable[[int], AppendRequest]) -> web.Response:
    """Append what `build(ts)` makes (it checks the request against the state first): 201 `{"id"}`."""
    append = build(request.app[CONFIG].wall_ms())
    _refuse_while_catching_up(request)
    entry = await request.app[STORE].append(append)
    return web.json_response({"id": str(entry.id)}, status=201)


@Operation("A ledger's state: members, totals, pending contributions", ref("State"), access=Access.OPTIONAL,
           parameters=(LEDGER_PARAM,), errors=("bad_cid", "unknown_ledger"))
async def get_state(request: web.Request) -> web.Response:
    state = await _readable_state(request)
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
    state = await _readable_state(request)
    unknown = sorted(set(request.query) - {"agent", "action", "since", "until", "status"})
    if unknown:
        raise LocalError("bad_request", f"unknown query parameter {unknown[0]!r}")
    query = HistoryQuery(**{k: v for k, v in request.query.items() if v != ""})
    return web.json_response({"contributions": [contribution_row(c) for c in query.select(state)]})


@Operation(
    "Admit an agent to a ledger (a `member.admit` entry)", CREATED, status=201, access=Access.OWNER,
    parameters=(LEDGER_PARAM,),
    body={"type": "object", "required": ["agent"], "additionalProperties": False,
           "properties": {"agent": DID_SCHEMA}},
    errors=(*_LEDGER_WRITE_ERRORS, "bad_did", "bad_agent", "already_member"),
)
async def admit_member(request: web.Request) -> web.Response:
    _require_owner(request)
    ledger = _ledger_param(request)
    agent = _required(await _json_object(request, {"agent": str}), "agent")
    return await _ledger_write(request, ledger, lambda state, me, ts: ledger_ops.admit(state, me, agent, ts))


@Operation(
    "Leave a ledger (a `member.leave` entry)", CREATED, status=201, access=Access.OWNER, parameters=(LEDGER_PARAM,),
    body={"type": "object", "additionalProperties": False, "properties": {}}, errors=_LEDGER_WRITE_ERRORS,
)
async def leave_ledger(request: web.Request) -> web.Response:
    _require_owner(request)
    ledger = _ledger_param(request)
    await _json_object(request, {})
    return await _ledger_write(request, ledger, lambda state, me, ts: ledger_ops.leave(state, me, ts))


@Operation(
    "Set the name the other members see for the owner in a ledger (a `member.about` entry)", CREATED, status=201,
    access=Access.OWNER, parameters=(LEDGER_PARAM,),
    body={"type": "object", "required": ["name"], "additionalProperties": False,
          "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 80}}},
    errors=(*_LEDGER_WRITE_ERRORS, "bad_field", "bad_name", "confusable_name"),
)
async def name_member(request: web.Request) -> web.Response:
    _require_owner(request)
    ledger = _ledger_param(request)
    name = _required(await _json_object(request, {"name": str}), "name")
    return await _ledger_write(request, ledger, lambda state, me, ts: ledger_ops.about(state, me, name, ts))


_CONTRIBUTION_FIELDS: Final[Mapping[str, type]] = {
    "action": str, "quantity": object, "unit": str, "resource": str, "provider": str, "receiver": str,
    "at": str, "from": str, "to": str, "note": str, "corrects": str, "fulfills": str, "cites": list,
}


@Operation(
    "Log a contribution (a `vf.event` entry)", CREATED, status=201, access=Access.OWNER, parameters=(LEDGER_PARAM,),
    body={"type": "object", "required": ["action", "quantity", "unit"], "additionalProperties": False,
           "properties": {
               "action": {"type": "string", "description": "a ValueFlows action, e.g. `work`"},
               "quantity": {"type": ["string", "integer"], "description": "an exact decimal; never a float"},
               **{name: {"type": "string"} for name in (
                   "unit", "resource", "provider", "receiver", "at", "from", "to", "note")},
               "corrects": CID_SCHEMA,
               "fulfills": {**CID_SCHEMA, "description": "the pledge this transfer pays (SPEC.md §18.5)"},
               "cites": {"type": "array", "items": CID_SCHEMA,
                         "description": "entries of other ledgers it cites (SPEC.md §18.6)"},
           }},
    errors=(*_LEDGER_WRITE_ERRORS, "unknown_action", "unknown_unit", "bad_quantity", "bad_agent", "bad_did",
            "not_party", "bad_time", "bad_time_range", "bad_correction", "bad_reference", "bad_field",
            "unknown_pledge", "bad_payment"),
    links=links_to("entry", "$response.body#/id", "endorse_entry"),
)
async def add_contribution(request: web.Request) -> web.Response:
    _require_owner(request)
    ledger = _ledger_param(request)
    obj = await _json_object(request, _CONTRIBUTION_FIELDS)
    action, unit = _required(obj, "action"), _required(obj, "unit")
    quantity = format_decimal(parse_decimal(_required(obj, "quantity"), "quantity"))  # a JSON float: bad_quantity
    corrects = CID.parse(obj["corrects"].strip()) if "corrects" in obj else None
    fulfills = CID.parse(obj["fulfills"].strip()) if "fulfills" in obj else None
    if not all(isinstance(c, str) for c in obj.get("cites", [])):
        raise LocalError("bad_request", "field 'cites' must be a list of entry ids")
    cites = tuple(CID.parse(c.strip()) for c in obj.get("cites", []))
    return await _ledger_write(request, ledger, lambda state, me, ts: ledger_ops.contribute(
        state, me, action=action, quantity=quantity, unit=unit, ts=ts, resource=obj.get("resource"),
        provider=obj.get("provider"), receiver=obj.get("receiver"), at=obj.get("at"), start=obj.get("from"),
        end=obj.get("to"), note=obj.get("note"), corrects=corrects, fulfills=fulfills, cites=cites,
    ))


@Operation(
    "Accept or reject a contribution (a `vf.endorse` entry)", CREATED, status=201, access=Access.OWNER,
    parameters=(ENTRY_PARAM,),
    body={"type": "object", "required": ["verdict"], "additionalProperties": False, "properties": {
        "verdict": {"type": "string", "enum": ["accept", "reject"]}, "note": {"type": "string"}}},
    errors=("bad_cid", "unknown_entry", "unknown_ledger", "not_member", "not_contribution", "self_endorsement",
            "duplicate_endorsement", "catching_up"),
)
async def endorse_entry(request: web.Request) -> web.Response:
    _require_owner(request)
    entry_id = CID.parse(request.match_info["entry"])
    obj = await _json_object(request, {"verdict": str, "note": str})
    verdict = _required(obj, "verdict")
    if verdict not in ("accept", "reject"):
        raise LocalError("bad_request", "verdict is \"accept\" or \"reject\"")
    entry = await request.app[STORE].get(entry_id)
    if entry is None:
        raise LocalError("unknown_entry", f"no entry {entry_id} is stored here")
    state = await _own_state(request, entry.ledger_id)
    me = request.app[CONFIG].did
    return await _append_built(request, lambda ts: ledger_ops.endorse(
        state, me, entry_id, accept=verdict == "accept", note=obj.get("note"), ts=ts,
    ))


@Operation(
    "Replicate a ledger this node did not found",
    {"type": "object", "required": ["ledger", "following"],
     "properties": {"ledger": CID_SCHEMA, "following": {"type": "boolean", "const": True}}},
    access=Access.OWNER,
    body={"type": "object", "required": ["ledger"], "additionalProperties": False,
          "properties": {"ledger": CID_SCHEMA}},
    errors=("bad_cid",),
)
async def follow_ledger(request: web.Request) -> web.Response:
    # Not held while catching up: following signs nothing, so it cannot fork a chain.
    _require_owner(request)
    obj = await _json_object(request, {"ledger": str})
    ledger = CID.parse(_required(obj, "ledger").strip())
    await request.app[STORE].follow(ledger)
    await request.app[REPLICATION].follow(ledger)
    return web.json_response({"ledger": str(ledger), "following": True})


@Operation("The forks this node knows of", array_of("Fork", "forks"), access=Access.OWNER)
async def list_forks(request: web.Request) -> web.Response:
    _require_owner(request)
    return web.json_response({"forks": [fork_row(proof) for proof in await request.app[STORE].forks()]})


@Operation("The node's peers", array_of("Peer", "peers"), access=Access.OWNER)
async def list_peers(request: web.Request) -> web.Response:
    _require_owner(request)
    return web.json_response({"peers": [peer.as_json() for peer in request.app[REPLICATION].peers()]})


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
    _require_owner(request)
    await _json_object(request, {})
    token, ttl_s = request.app[SESSIONS].new_link()
    expires = request.app[CONFIG].wall_ms() + int(ttl_s * 1000)
    return web.json_response({"path": f"/login?token={token}", "expires": expires}, status=201)


@Operation("The WebSocket peer link (SPEC.md §11)", None, status=101, errors=("bad_request",),
           description="Peers authenticate in the Noise handshake, not with the token.")
async def sync(request: web.Request) -> web.StreamResponse:
    return await request.app[REPLICATION].handle_sync(request)

