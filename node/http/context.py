"""What the API's handlers share: the app's keys and config, owner access, request bodies, ledger writes.

Owner access: a call that writes, and a read of a members-only ledger, needs
`Authorization: Bearer <token>` (the home's `api.token`). Without a token a
caller (a LAN neighbour) reads public ledgers only; a members-only ledger is
answered exactly like an unknown one. A request that carries a token must
carry the right one (401). Wrong tokens are counted per guess and per client, and
slowed: each waits before its 401, longer each time the same guess comes back, and a
client that keeps sending them is refused for a while (429). The right token is
checked first and never waits. Behind a reverse proxy the node is told to trust
(`trusted_proxies`), the client is the address the proxy forwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Final, Protocol, TypeVar

from aiohttp import hdrs, web

from node.http.client import API_PREFIX
from node.http.sessions import Sessions
from node.store.states import LedgerStates
from node.store.store import Store, wall_clock_ms
from node.store.writes import LocalWrites
from protocol import (
    CID,
    Entry,
    InvalidData,
    LocalError,
    SigningKey,
)
from protocol.kel import KeyLog
from protocol.request_fields import WriteRequest
from protocol.requests import LedgerWrite
from protocol.state import LedgerState
from protocol.writes import AppendRequest

log = logging.getLogger(__name__)
R = TypeVar("R", bound=WriteRequest)

PROTOCOL_VERSION: Final = 1  # SPEC.md "Version 1"
MAX_REQUEST_BYTES: Final = 64 * 1024
AUTH_FAILURES_MAX: Final = 20  # wrong tokens from one address within the window…
AUTH_WINDOW_S: Final = 60.0  # …before it is refused (429) until the oldest leaves the window
AUTH_TRACKED_MAX: Final = 4096  # addresses, and guesses, remembered at once
AUTH_DELAY_S: Final = 0.25  # a wrong token's 401 waits this long, doubled for each earlier failure of the same guess…
AUTH_DELAY_MAX_S: Final = 8.0  # …up to this
AUTH_SLOWED_MAX: Final = 32  # wrong-token answers waiting at once; beyond, 429 at once (they hold connections)
WRONG_TOKEN: Final = "wrong API token"  # the one answer to a wrong token, on every route
BODY_TIMEOUT_S: Final = 30.0  # a request body (at most MAX_REQUEST_BYTES) must arrive within this
MAX_PAGE_ENTRIES: Final = 1000  # entries in one page of GET …/entries (its `limit`'s maximum and default)


class JsonView(Protocol):
    """A record the API answers as it is (a peer's row, the healing record)."""

    def as_json(self) -> dict[str, object]: ...


class Replication(Protocol):
    """What the API uses of the node's replicator (node.sync.replication.Replicator)."""

    @property
    def catching_up(self) -> bool: ...

    async def follow(self, ledger: CID) -> None: ...

    def add_peer(self, url: str, found: str, expected_remote: str | None = None) -> None: ...

    def peers(self) -> Sequence[JsonView]: ...

    @property
    def healing(self) -> JsonView: ...

    def refuse_link(self, request: web.Request) -> web.Response | None: ...

    async def handle_sync(self, request: web.Request) -> web.StreamResponse: ...


@dataclass(frozen=True, slots=True)
class ApiConfig:
    did: str
    token: str = field(repr=False)
    version: str
    wall_ms: Callable[[], int] = wall_clock_ms  # timestamps of local appends
    monotonic: Callable[[], float] = time.monotonic  # the rate limit's clock
    pause: Callable[[float], Awaitable[None]] = asyncio.sleep  # a wrong token's wait before its 401
    trusted_proxies: frozenset[str] = frozenset()  # addresses whose X-Forwarded-For names the client
    #: signs what is not an entry: a newcomer's proof when this node joins by invitation (node/http/invites.py)
    key: SigningKey | None = field(default=None, repr=False)
    #: the identity's key log, when this node's key is a later key of it (a ledger it founds names the identity)
    key_log: KeyLog | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.token:
            raise ValueError("the API token must not be empty")


class AuthFailures:
    """Wrong tokens per client address and per guess within a sliding window."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float]) -> None:
        self._limit = limit
        self._window_s = window_s
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}
        self._guesses: OrderedDict[bytes, deque[float]] = OrderedDict()  # digest of a wrong token -> failures
        self.slowed = 0  # wrong-token answers waiting now

    def delay(self, guess: str) -> float:
        """Count a failure of `guess`; how long its answer waits: AUTH_DELAY_S, doubled for each earlier failure of
        the same guess in the window, at most AUTH_DELAY_MAX_S (a client retrying a stale token slows itself)."""
        key = hashlib.sha256(guess.encode("utf-8", "surrogatepass")).digest()[:16]
        times = self._guesses.pop(key, None) or deque(maxlen=16)
        horizon = self._clock() - self._window_s
        while times and times[0] <= horizon:
            times.popleft()
        earlier = len(times)
        times.append(self._clock())
        self._guesses[key] = times  # the most recent last: the oldest go first
        while len(self._guesses) > AUTH_TRACKED_MAX:
            self._guesses.popitem(last=False)
        return float(min(AUTH_DELAY_MAX_S, AUTH_DELAY_S * 2 ** earlier))

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
WRITES: Final = web.AppKey("writes", LocalWrites)  # the one write path of the API and the dashboard


def package_version() -> str:
    try:
        return metadata.version("tally-node")
    except metadata.PackageNotFoundError:
        return "0+unknown"


# ---- access --------------------------------------------------------------------


def _right_token(request: web.Request, header: str) -> bool:
    scheme, _, given = header.strip().partition(" ")
    expected = request.app[CONFIG].token
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())


def is_owner(request: web.Request) -> bool:
    """True with the right token, False with none; a wrong token raises (`check_token` counted and slowed it
    already, before any API handler runs)."""
    header = request.headers.get(hdrs.AUTHORIZATION)
    if header is None:
        return False
    if _right_token(request, header):
        return True
    raise LocalError("unauthorized", WRONG_TOKEN)


def client_address(request: web.Request) -> str:
    """Who sent the request: the connection's address or, from a trusted reverse proxy, the last address in its
    X-Forwarded-For that is not a trusted proxy (what came before it, the client could have written)."""
    remote = request.remote or "-"
    trusted = request.app[CONFIG].trusted_proxies
    if remote not in trusted:
        return remote
    hops = [hop.strip() for field_ in request.headers.getall("X-Forwarded-For", ()) for hop in field_.split(",")]
    for hop in reversed(hops):
        try:
            address = str(ipaddress.ip_address(hop))
        except ValueError:
            return remote  # not an address: the proxy's own
        if address not in trusted:
            return address
    return remote


async def check_token(request: web.Request) -> None:
    """Any API call that carries a token has it checked, whether or not the route needs one: a wrong token gets
    the same 401 (or 429) everywhere (SPEC.md §12), so no route answers a guess differently.

    The right token first: throttling wrong guesses never locks the owner out, whoever shares their address (a
    reverse proxy, a NAT) and however many guesses it sent. A wrong one is counted per client and per guess and
    answered after a delay (`AuthFailures.delay`); a client over AUTH_FAILURES_MAX, or a guess while
    AUTH_SLOWED_MAX answers already wait, gets 429 at once."""
    header = request.headers.get(hdrs.AUTHORIZATION)
    if header is None or _right_token(request, header):
        return
    failures = request.app[AUTH_FAILURES]
    client = client_address(request)
    if failures.blocked(client):
        raise LocalError("rate_limited", "too many wrong API tokens from this address; retry later")
    if failures.slowed >= AUTH_SLOWED_MAX:
        raise LocalError("rate_limited", "too many wrong API tokens at once; retry later")
    failures.record(client)
    delay = failures.delay(header.strip().partition(" ")[2].strip())
    log.warning("refused token", extra={"remote": client, "path": request.path, "delay_s": delay})
    failures.slowed += 1
    try:
        await request.app[CONFIG].pause(delay)
    finally:
        failures.slowed -= 1
    raise LocalError("unauthorized", WRONG_TOKEN)


def require_owner(request: web.Request) -> None:
    if not is_owner(request):
        raise LocalError("unauthorized", "this call needs the owner's API token (Authorization: Bearer <token>)")




def is_public(genesis: Entry) -> bool:
    return bool((genesis.body or {}).get("visibility", "members") == "public")


def unknown_ledger(ledger: CID) -> LocalError:
    return LocalError("unknown_ledger", f"no ledger {ledger} is stored here")


# ---- request bodies ------------------------------------------------------------


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise InvalidData("bad_body", "duplicate key in a JSON object")
    return result


async def json_object(request: web.Request, fields: Mapping[str, type]) -> dict[str, Any]:
    """The request body as a JSON object with only `fields` (name -> type; `object` is any)."""
    value = await json_body(request)
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise LocalError("bad_request", f"unknown field {unknown[0]!r}")
    for name, kind in fields.items():
        if name in value and not isinstance(value[name], kind):
            raise LocalError("bad_request", f"field {name!r} must be of type {kind.__name__}")
    return value


async def read_request(request: web.Request, declared: type[R]) -> R:
    """The declared write request (protocol/requests.py) the path and the JSON body ask for."""
    empty = declared.BODY_OPTIONAL and not await request.read()
    return declared.decode({} if empty else await json_body(request), request.match_info)


async def submit(request: web.Request, declared: type[LedgerWrite]) -> web.Response:
    """Append the entry a declared write asks for: 201 `{"id"}`."""
    require_owner(request)
    entry = await request.app[WRITES].submit(await read_request(request, declared))
    return web.json_response({"id": str(entry.id)}, status=201)


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object."""
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
    return value


def required(obj: Mapping[str, Any], name: str) -> Any:
    if name not in obj:
        raise LocalError("bad_request", f"missing field {name!r}")
    return obj[name]


def int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit() and low <= int(text) <= high):
        raise LocalError("bad_request", f"{name} is a whole number from {low} to {high}")
    return int(text)


def ledger_param(request: web.Request) -> CID:
    return CID.parse(request.match_info["ledger"])


def api_routes(app: web.Application) -> list[web.AbstractRoute]:
    """The API's routes (under /api/v1), not the dashboard's pages."""
    return [r for r in app.router.routes()
            if r.resource is not None and r.resource.canonical.startswith(API_PREFIX + "/")]


# ---- the open-value ledger (SPEC.md §16) ------------------------------------------


#: What every write of the open-value ledger may answer, besides its own codes.
LEDGER_WRITE_ERRORS: Final = ("bad_cid", "unknown_ledger", "not_member", "catching_up")


async def readable_state(request: web.Request) -> LedgerState:
    """The state of the ledger in the path, if this caller may read it (else `unknown_ledger`)."""
    ledger = ledger_param(request)
    owner = is_owner(request)
    genesis = await request.app[STORE].genesis(ledger)
    if genesis is None or not (owner or is_public(genesis)):
        raise unknown_ledger(ledger)
    state = await request.app[STATES].get(ledger)
    if state is None:
        raise unknown_ledger(ledger)
    return state


async def own_state(request: web.Request, ledger: CID) -> LedgerState:
    return await request.app[WRITES].state(ledger)


async def append_built(request: web.Request, build: Callable[[int], AppendRequest]) -> web.Response:
    """Append what `build(ts)` makes (it checks the request against the state first): 201 `{"id"}`."""
    entry = await request.app[WRITES].append(build)
    return web.json_response({"id": str(entry.id)}, status=201)
