"""The dashboard's owner sessions: one-time login links and session cookies.

`tally open` asks the running node (with the API token) for a login link; the
link's token works once, for a few minutes. Following it gives the browser a
session: a random id in an HttpOnly, SameSite=Strict cookie, and a CSRF token
that every form of the page carries back. Only hashes of tokens and ids are
kept, in memory: a restarted node has no sessions (the owner runs `tally open`
again), and a memory dump cannot be replayed as a cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

LOGIN_LINK_TTL_S: Final = 300.0  # a login link works once, within 5 minutes
SESSION_TTL_S: Final = 12 * 3600.0  # then the owner runs `tally open` again
MAX_LINKS: Final = 16  # unused links kept at once (the oldest goes first)
MAX_SESSIONS: Final = 64  # browser sessions kept at once (the oldest goes first)


def cookie_name(did: str) -> str:
    """The session cookie's name on this node. Browsers keep cookies per host, not per port, so nodes
    side by side on one host (`tally demo`) each need their own name, or logging in to one logs out another."""
    return f"tally_{did[-12:]}" if did[-12:].isalnum() else "tally_session"


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


@dataclass(slots=True)
class Session:
    csrf: str = field(repr=False)  # the token every state-changing form carries
    expires: float
    flash: list[tuple[str, str]] = field(default_factory=list)  # (kind, text) shown once on the next page

    def csrf_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode("utf-8", "surrogatepass"),
                                                         self.csrf.encode())


class Sessions:
    """Login links and sessions; `clock` is monotonic seconds."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._links: OrderedDict[bytes, float] = OrderedDict()  # token hash -> expiry
        self._sessions: OrderedDict[bytes, Session] = OrderedDict()  # id hash -> session

    def new_link(self) -> tuple[str, float]:
        """A one-time login token and how many seconds it stays valid."""
        token = secrets.token_urlsafe(32)
        self._links[_digest(token)] = self._clock() + LOGIN_LINK_TTL_S
        while len(self._links) > MAX_LINKS:
            self._links.popitem(last=False)
        return token, LOGIN_LINK_TTL_S

    def redeem(self, token: str) -> str | None:
        """A new session id for a valid unused token (which is used up), else None."""
        expiry = self._links.pop(_digest(token), None)
        if expiry is None or expiry <= self._clock():
            return None
        session_id = secrets.token_urlsafe(32)
        self._sessions[_digest(session_id)] = Session(secrets.token_urlsafe(32), self._clock() + SESSION_TTL_S)
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session_id

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        key = _digest(session_id)
        session = self._sessions.get(key)
        if session is None:
            return None
        if session.expires <= self._clock():
            del self._sessions[key]
            return None
        return session

    def end(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(_digest(session_id), None)
