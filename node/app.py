"""The node's web application: the API under /api/v1 (node/http/) and the dashboard at / (node/web/).

Every API error is `{"error": {"code": …, "message": …}}` with the status from
`STATUS`; nothing answers with aiohttp's HTML pages, not even an unknown route
or a bug (500 `internal`, details only in the log). The dashboard's errors are
pages of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import hdrs, web

from node.http.client import API_PREFIX
from node.http.context import (
    AUTH_FAILURES,
    AUTH_FAILURES_MAX,
    AUTH_WINDOW_S,
    BODY_TIMEOUT_S,
    CONFIG,
    MAX_REQUEST_BYTES,
    REPLICATION,
    SESSIONS,
    STATES,
    STORE,
    WRITES,
    ApiConfig,
    AuthFailures,
    Replication,
    check_token,
)
from node.http.distribution import add_distribution_routes
from node.http.errors import HTTP_CODES, STATUS, error_response
from node.http.governance import add_governance_routes
from node.http.identity import add_identity_routes
from node.http.ledger import add_ledger_routes
from node.http.sessions import Sessions
from node.store.failures import store_failure
from node.store.states import LedgerStates
from node.store.store import Store
from node.store.writes import LocalWrites
from node.web.i18n import language_middleware
from node.web.layout import error_page
from node.web.pages import add_dashboard_routes
from protocol import LocalError, TallyError

log = logging.getLogger(__name__)


def build_app(store: Store, replication: Replication, config: ApiConfig) -> web.Application:
    """The API application over an open store and a started (or starting) replicator.

    Ledger states come from the replicator's cache (`replication.states`) when it has one, so
    sync and the API compute each state once; otherwise the app keeps its own.
    """
    # the language first: an error page is written in the page's language too
    app = web.Application(middlewares=[_link_gate, language_middleware, _access_log, _errors],
                          client_max_size=MAX_REQUEST_BYTES)
    app[STORE] = store
    shared = getattr(replication, "states", None)
    if isinstance(shared, LedgerStates):
        app[STATES] = shared
    else:
        app[STATES] = LedgerStates(store)
        app.on_cleanup.append(_close_states)
    app[REPLICATION] = replication
    app[CONFIG] = config
    app[WRITES] = LocalWrites(store, app[STATES], config.did, config.wall_ms, lambda: replication.catching_up)
    app[AUTH_FAILURES] = AuthFailures(AUTH_FAILURES_MAX, AUTH_WINDOW_S, config.monotonic)
    app[SESSIONS] = Sessions(config.monotonic)
    p = API_PREFIX
    add_ledger_routes(app, p)
    add_distribution_routes(app, p)
    add_governance_routes(app, p)
    add_identity_routes(app, p)
    add_dashboard_routes(app)
    return app


async def _close_states(app: web.Application) -> None:
    await app[STATES].aclose()


@web.middleware
async def _errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                  ) -> web.StreamResponse:
    try:
        if _is_api(request):
            await check_token(request)
            await _read_body(request)
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
    except (sqlite3.Error, OSError) as exc:
        failure = store_failure(exc, request.app[STORE].path)
        if failure is None:
            log.exception("internal error", extra={"method": request.method, "path": request.path})
            return _error(request, "internal", "the node failed to answer this request; its log has the details",
                          500)
        log.error("store failure", extra={"code": failure.code, "detail": failure.message})
        return _error(request, failure.code, failure.message, STATUS[failure.code])
    except Exception:
        log.exception("internal error", extra={"method": request.method, "path": request.path})
        return _error(request, "internal", "the node failed to answer this request; its log has the details", 500)


async def _read_body(request: web.Request) -> None:
    """Read a request's body (cached for the handler) within BODY_TIMEOUT_S: a client that sends its body slowly
    holds a connection no longer than that."""
    if request.body_exists and request.content_length != 0:
        try:
            async with asyncio.timeout(BODY_TIMEOUT_S):
                await request.read()
        except TimeoutError:
            raise LocalError("request_timeout", f"the request body did not arrive within {BODY_TIMEOUT_S:g} s"
                             ) from None
        except ConnectionError:  # the client hung up before its body was sent: nothing failed here
            raise LocalError("bad_request", "the connection ended before the request body arrived") from None


def _is_api(request: web.Request) -> bool:
    return request.path == API_PREFIX or request.path.startswith(API_PREFIX + "/")


def _error(request: web.Request, code: str, message: str, status: int) -> web.Response:
    """An error as JSON for the API, as an HTML page for the dashboard."""
    log.info("refused", extra={"method": request.method, "path": request.path, "code": code, "status": status})
    if _is_api(request):
        return error_response(code, message, status)
    return error_page(request, code, message, status)


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    code = HTTP_CODES.get(exc.status, "internal" if exc.status >= 500 else "bad_request")
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


_SYNC_PATH: Final = f"{API_PREFIX}/sync"


@web.middleware
async def _link_gate(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
    """A peer link attempt beyond the replicator's caps is answered first, with nothing else done for it
    (no language, no access-log line: the replicator logs a count per host), so that a flood of them
    costs the node as little as it can and its other requests wait the less (SPEC §13.9)."""
    if request.path == _SYNC_PATH:
        refused = request.app[REPLICATION].refuse_link(request)
        if refused is not None:
            return refused
    return await handler(request)


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
