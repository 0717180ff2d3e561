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

from .forms import check_append_kind, genesis_body
from .store import AppendRequest, Store, wall_clock_ms
from .views import entry_row, fork_row, ledger_row

log = logging.getLogger(__name__)

API_PREFIX: Final = "/api/v1"
PROTOCOL_VERSION: Final = 1  # SPEC.md "Version 1"
MAX_REQUEST_BYTES: Final = 64 * 1024
AUTH_FAILURES_MAX: Final = 20  # wrong tokens from one address within the window…
AUTH_WINDOW_S: Final = 60.0  # …before it is refused (429) until the oldest leaves the window
AUTH_TRACKED_MAX: Final = 4096  # addresses remembered at once

#: The HTTP status of every error code, in one place. A test checks it covers CODES.
STATUS: Final[Mapping[str, int]] = {
    **dict.fromkeys(
        (
            "bad_encoding", "bad_cid", "bad_did", "unknown_version", "missing_field", "unknown_field",
            "bad_field", "bad_signature", "payload_mismatch", "bad_payload", "bad_genesis", "bad_prev",
            "seq_gap", "ts_regression", "wrong_ledger", "wrong_author", "bad_fork_proof", "bad_body",
            "bad_key_file", "bad_message", "unknown_message", "handshake_failed", "bad_frame", "frame_too_large",
            "protocol_error", "bad_request",
        ),
        400,
    ),
    "unauthorized": 401,
    "forbidden": 403,
    **dict.fromkeys(("not_found", "unknown_ledger", "unknown_entry"), 404),
    "method_not_allowed": 405,
    **dict.fromkeys(("fork", "catching_up", "identity_exists", "already_running"), 409),
    "oversize": 413,
    "rate_limited": 429,
    **dict.fromkeys(("internal", "no_identity", "store_corrupt", "schema_too_new", "listen_failed"), 500),
    "not_running": 503,
    "link_timeout": 504,
    "unreachable": 502,
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
REPLICATION: Final[web.AppKey[Replication]] = web.AppKey("replication")
CONFIG: Final = web.AppKey("config", ApiConfig)
AUTH_FAILURES: Final = web.AppKey("auth_failures", AuthFailures)


def package_version() -> str:
    try:
        return metadata.version("tally-node")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def build_app(store: Store, replication: Replication, config: ApiConfig) -> web.Application:
    """The API application over an open store and a started (or starting) replicator."""
    app = web.Application(middlewares=[_access_log, _errors], client_max_size=MAX_REQUEST_BYTES)
    app[STORE] = store
    app[REPLICATION] = replication
    app[CONFIG] = config
    app[AUTH_FAILURES] = AuthFailures(AUTH_FAILURES_MAX, AUTH_WINDOW_S, config.monotonic)
    p = API_PREFIX
    app.router.add_get(f"{p}/identity", get_identity)
    app.router.add_get(f"{p}/ledgers", list_ledgers)
    app.router.add_post(f"{p}/ledgers", create_ledger)
    app.router.add_get(f"{p}/ledgers/{{ledger}}", get_ledger)
    app.router.add_get(f"{p}/ledgers/{{ledger}}/entries", list_entries)
    app.router.add_post(f"{p}/ledgers/{{ledger}}/entries", append_entry)
    app.router.add_post(f"{p}/follow", follow_ledger)
    app.router.add_get(f"{p}/forks", list_forks)
    app.router.add_get(f"{p}/peers", list_peers)
    app.router.add_get(f"{p}/sync", sync, allow_head=False)
    return app


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
        return error_response(exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _http_error(request, exc)
    except Exception:
        log.exception("internal error", extra={"method": request.method, "path": request.path})
        return error_response("internal", "the node failed to answer this request; its log has the details")


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    code = _HTTP_CODES.get(exc.status, "internal" if exc.status >= 500 else "bad_request")
    message = {
        404: f"no API route {request.path}",
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


def _ledger_param(request: web.Request) -> CID:
    return CID.parse(request.match_info["ledger"])


# ---- handlers ------------------------------------------------------------------


async def get_identity(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    return web.json_response({"id": config.did, "version": config.version, "protocol": PROTOCOL_VERSION})


async def list_ledgers(request: web.Request) -> web.Response:
    owner = _is_owner(request)
    ledgers = await request.app[STORE].ledgers()
    return web.json_response({"ledgers": [ledger_row(i) for i in ledgers if owner or i.visibility == "public"]})


async def create_ledger(request: web.Request) -> web.Response:
    _require_owner(request)
    obj = await _json_object(request, {"name": str, "visibility": str})
    body = genesis_body(_required(obj, "name"), obj.get("visibility", "members"))
    _refuse_while_catching_up(request)
    entry = await request.app[STORE].append(AppendRequest(None, GENESIS_KIND, body, request.app[CONFIG].wall_ms()))
    return web.json_response(
        {"id": str(entry.id)}, status=201, headers={hdrs.LOCATION: f"{API_PREFIX}/ledgers/{entry.id}"}
    )


async def get_ledger(request: web.Request) -> web.Response:
    ledger = _ledger_param(request)
    owner = _is_owner(request)
    for info in await request.app[STORE].ledgers():
        if info.id == ledger and (owner or info.visibility == "public"):
            return web.json_response(ledger_row(info))
    raise _unknown_ledger(ledger)


async def list_entries(request: web.Request) -> web.Response:
    ledger = _ledger_param(request)
    owner = _is_owner(request)
    store = request.app[STORE]
    genesis = await store.genesis(ledger)
    if genesis is None or not (owner or _is_public(genesis)):
        raise _unknown_ledger(ledger)
    author_did = request.query.get("author")
    author = None if author_did is None else public_key_from_did(author_did)
    async with contextlib.aclosing(store.log(ledger, author)) as entries:
        rows = [entry_row(entry) async for entry in entries]
    return web.json_response({"entries": rows})


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


async def follow_ledger(request: web.Request) -> web.Response:
    # Not held while catching up: following signs nothing, so it cannot fork a chain.
    _require_owner(request)
    obj = await _json_object(request, {"ledger": str})
    ledger = CID.parse(_required(obj, "ledger").strip())
    await request.app[STORE].follow(ledger)
    await request.app[REPLICATION].follow(ledger)
    return web.json_response({"ledger": str(ledger), "following": True})


async def list_forks(request: web.Request) -> web.Response:
    _require_owner(request)
    return web.json_response({"forks": [fork_row(proof) for proof in await request.app[STORE].forks()]})


async def list_peers(request: web.Request) -> web.Response:
    _require_owner(request)
    return web.json_response({"peers": [peer.as_json() for peer in request.app[REPLICATION].peers()]})


async def sync(request: web.Request) -> web.StreamResponse:
    return await request.app[REPLICATION].handle_sync(request)

