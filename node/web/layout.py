"""What every dashboard page shares: who is asking, the page layout, security headers, error pages, flashes,
the owner's form checks and the write-and-say paths of a form (`act`, `write_and_say`), the ledger a page shows
(`shown_ledger`: while it catches up, its last state) and the one a write is built against (`readable_ledger`)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Any, Final
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from node.http.context import CONFIG, REPLICATION, SESSIONS, STATES, STORE, WRITES
from node.http.sessions import Session, cookie_name
from node.store.rows import LedgerInfo
from node.web.behind import BEHIND, Behind, notice
from node.web.html import Child, Markup, el
from node.web.i18n import COOKIE, LANGUAGES, _, current, moment, number
from protocol import CID, Entry, LocalError, TallyError
from protocol.amounts import MINOR_UNITS
from protocol.names import resembles
from protocol.requests import LedgerWrite
from protocol.state import LedgerState
from protocol.writes import AppendRequest

log = logging.getLogger(__name__)
#: No inline script or style, nothing from elsewhere, no framing, forms post here only.
CSP: Final = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
              "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is asking: the node's owner (with a session) or anyone else."""

    did: str  # this node's identity
    session: Session | None

    @property
    def owner(self) -> bool:
        return self.session is not None


def viewer(request: web.Request) -> Viewer:
    did = request.app[CONFIG].did
    return Viewer(did, request.app[SESSIONS].get(request.cookies.get(cookie_name(did))))


# ---- layout ----------------------------------------------------------------------


def short(did: str, me: str | None = None, names: Mapping[str, str] | None = None) -> str:
    """An agent as people read it: the name they gave themselves in the ledger (`member.about`), else the last
    characters of their did:key; "you" for this node's owner."""
    name = (names or {}).get(did)
    if me is not None and did == me:
        return _("{name} (you)").format(name=name) if name else _("you")
    if name:  # a name another member's reads as gets the did:key's end beside it (SPEC §16.1)
        return name if resembles(name, did, names or {}) is None else f"{name} (…{did[-8:]})"
    return f"…{did[-8:]}" if did.startswith("did:key:") else did


def who(did: str, me: str, names: Mapping[str, str] | None = None) -> Markup:
    """An agent's name, with their whole did:key as its title (a name is a label, not an identity)."""
    return el("span", short(did, me, names), title=did, class_="did")


def when(ms: int | None) -> str:
    return _("never") if ms is None else moment(ms)


def status_label(status: str) -> str:
    """A contribution's status in the page's language (its class and the API keep the English word)."""
    return {"pending": _("pending"), "final": _("final"), "rejected": _("rejected"),
            "corrected": _("corrected")}.get(status, status)


def status_badge(status: str) -> Markup:
    return el("span", status_label(status), class_=f"status {status}")


def visibility_label(visibility: str) -> str:
    return _("public") if visibility == "public" else _("members")


def money_unit(state: LedgerState) -> str:
    """The ledger's money unit, the default of money forms: the unit its `transfer` rate is in, else the first
    of its units that is a currency (SPEC.md §17.1's list), else its first unit."""
    units = state.rules.units
    for unit in state.rules.rates.get("transfer", {}):
        if unit in units:
            return unit
    return next((u for u in units if u in MINOR_UNITS and u not in _NOT_MONEY), units[0] if units else "")


_NOT_MONEY: Final = frozenset({"hour", "day", "minute"})


def amendment_text(body: Mapping[str, Any]) -> str:
    """A rules change as members read it ("rates for work: 25 per hour; 2 accept(s) …"), not as a dict."""
    parts: list[str] = []
    for key, value in body.items():
        if key == "rates" and isinstance(value, Mapping):
            for action, units in value.items():
                if isinstance(units, Mapping) and units:
                    rates = ", ".join(_("{rate} per {unit}").format(rate=number(str(r)), unit=u)
                                      for u, r in units.items())
                    parts.append(_("the rate of {action}: {rates}").format(action=action, rates=rates))
                else:
                    parts.append(_("{action} has no rate any more").format(action=action))
        elif key == "units" and isinstance(value, list):
            parts.append(_("units: {units}").format(units=", ".join(str(u) for u in value)))
        elif key == "validation" and isinstance(value, Mapping):
            if "accept" in value:
                parts.append(_("{count} accept(s) make a contribution final").format(count=value["accept"]))
            if "reject" in value:
                parts.append(_("{count} reject(s) reject it").format(count=value["reject"]))
        elif key == "voting" and isinstance(value, Mapping):
            parts.append(_("voting: {settings}").format(
                settings=", ".join(f"{k} {number(str(val)) if isinstance(val, int) else val}"
                                   for k, val in value.items())))
        elif key == "buckets" and isinstance(value, list):
            parts.append(_("shares: {buckets}").format(buckets=", ".join(
                f"{b.get('name')} {number(str(b.get('percent')))} %" for b in value if isinstance(b, Mapping))))
        elif key == "timezone" and isinstance(value, str):
            parts.append(_("dates and times in the time zone {zone}").format(zone=value))
        elif isinstance(value, bool):
            parts.append(f"{key}: " + (_("yes") if value else _("no")))
        else:
            parts.append(f"{key}: {value}")
    return "; ".join(parts) + "."


@dataclass(frozen=True, slots=True)
class Presence:
    """Whether a member's node is linked to this one now, and when it last was (ms; None: never)."""

    online: bool
    last_seen: int | None


def presence(request: web.Request) -> dict[str, Presence]:
    """The presence of every peer this node knows by did:key (a did with several addresses: the best of them)."""
    out: dict[str, Presence] = {}
    for peer in request.app[REPLICATION].peers():
        p = peer.as_json()
        did = p.get("id")
        if not isinstance(did, str):
            continue
        before = out.get(did)
        seen = [t for t in (p.get("last_seen"), p.get("last_sync"), before.last_seen if before else None)
                if isinstance(t, int)]
        out[did] = Presence(p.get("connected") is True or (before is not None and before.online),
                            max(seen) if seen else None)
    return out


def presence_text(p: Presence | None, zone: tzinfo = UTC) -> str:
    if p is not None and p.online:
        return _("online")
    if p is None or p.last_seen is None:
        return _("offline, never seen")
    return _("offline since {time}").format(time=moment(p.last_seen, zone))


def csrf_field(v: Viewer) -> Markup:
    return el("input", type="hidden", name="csrf", value=v.session.csrf if v.session else "")


def page(request: web.Request, v: Viewer, title: str, *content: Child, ledger: LedgerInfo | None = None,
         tab: str | None = None, status: int = 200, pending: int = 0) -> web.Response:
    version = request.app[CONFIG].version
    if v.owner:
        account: Child = [
            el("span", _("owner"), title=v.did, class_="badge"),
            el("form", csrf_field(v), el("button", _("Log out"), type="submit", class_="link"),
               method="post", action="/logout", class_="inline"),
        ]
    else:
        account = el("span", _("read-only: public ledgers"), class_="badge muted",
                     title=_("the node's owner logs in with `tally open`"))
    nav = el("nav", el("a", "Tally", href="/", class_="brand"), el("a", _("Ledgers"), href="/"),
             el("a", _("Peers"), href="/peers") if v.owner else None,
             el("a", _("Join"), href="/join") if v.owner else None, el("span", class_="spacer"), account,
             aria_label=_("Site"))
    flashes = v.session.flash if v.session else []
    shown: list[Child] = [el("p", text, class_=f"flash {kind}", role="status") for kind, text in flashes]
    if v.session:
        v.session.flash = []
    behind = request.get(BEHIND)
    if behind is not None:
        shown.append(notice(behind, lambda did: short(did, v.did, behind.state.names)))
    sub: Child = None
    if ledger is not None:
        base = f"/ledgers/{ledger.id}"
        tabs = [("overview", _("Overview"), base), ("history", _("History"), f"{base}/history")]
        if v.owner:
            queue = _("Validation queue ({count})").format(count=pending) if pending else _("Validation queue")
            tabs += [("contribute", _("Log a contribution"), f"{base}/contribute"),
                     ("queue", queue, f"{base}/queue")]
        tabs += [("shares", _("Shares"), f"{base}/shares"), ("motions", _("Motions"), f"{base}/motions"),
                 ("pledges", _("Pledges"), f"{base}/pledges"), ("keys", _("Keys"), f"{base}/keys")]
        sub = el("div", el("h1", ledger.name, " ", el("small", visibility_label(ledger.visibility), class_="badge")),
                 el("nav", (el("a", label, href=href, aria_current="page" if key == tab else None)
                            for key, label, href in tabs), class_="tabs", aria_label=_("Ledger")),
                 class_="ledger-head")
    skip = el("a", _("Skip to content"), href="#main", class_="skip")  # the first stop of the keyboard
    body = el("body", skip, el("header", nav), el("main", shown, sub, *content, id="main", tabindex=-1),
              el("footer", el("p", _("Tally {version} · node ").format(version=version), el("code", v.did)),
                 _language_switch(request)))
    html = Markup("<!doctype html>") + el(
        "html",
        el("head", el("meta", charset="utf-8"),
           el("meta", name="viewport", content="width=device-width, initial-scale=1"),
           el("title", f"{title} · Tally"),
           el("link", rel="stylesheet", href=f"/static/tally.css?v={version}"),
           el("link", rel="icon", href=f"/static/favicon.svg?v={version}", type="image/svg+xml"),
           el("script", src=f"/static/tally.js?v={version}", defer=True)),
        body, lang=current().code,
    )
    return html_response(html, status)


def _language_switch(request: web.Request) -> Markup:
    """One button per language; the choice is remembered in a cookie (no session needed: a visitor too)."""
    here = current().code
    return el("form", el("input", type="hidden", name="back", value=request.path_qs),
              el("span", _("Language:"), class_="muted"), " ",
              (el("button", name_, type="submit", name="lang", value=code, lang=code, class_="link",
                  aria_current="true" if code == here else None)
               for code, name_ in LANGUAGES.items()),
              method="post", action="/language", class_="languages")


async def choose_language(request: web.Request) -> web.Response:
    """The language switch: remember the choice for a year, go back to the page it was made on."""
    if not _same_origin(request):
        raise LocalError("forbidden", "this form was sent from another site")
    form = await request.post()
    lang, back = form.get("lang"), form.get("back")
    if not isinstance(lang, str) or lang not in LANGUAGES:
        raise LocalError("bad_request", f"lang is one of {', '.join(LANGUAGES)}")
    # back to a path on this node only (never `//host`, never another scheme)
    target = back if isinstance(back, str) and back.startswith("/") and not back.startswith("//") else "/"
    response = see_other(target)
    response.set_cookie(COOKIE, lang, max_age=365 * 24 * 3600, path="/", httponly=True, samesite="Lax")
    return response


def html_response(html: str, status: int = 200) -> web.Response:
    response = web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
    secure_headers(response)
    return response


def secure_headers(response: web.StreamResponse) -> None:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    # Never to other sites (a login link's token must not leave in a Referer); "no-referrer" would also make
    # Chromium send `Origin: null` with our own forms, which the origin check must refuse.
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers[hdrs.CACHE_CONTROL] = "no-store"


def error_page(request: web.Request, code: str, message: str, status: int) -> web.Response:
    """An error on a page (not the API): the same code and message, as HTML."""
    v = viewer(request)
    hint: Child = None
    if status == 401:
        hint = el("p", _("The node's owner logs in by running `tally open` on the node's machine and following "
                         "the link it prints."))
    return page(request, v, _("Error"),
                el("h1", {401: _("Log in first"), 404: _("Not found")}.get(status, _("Refused"))),
                el("p", el("code", code), ": ", message, class_="error"), hint,
                el("p", el("a", _("Back to your ledgers"), href="/")), status=status)


def see_other(location: str) -> web.Response:
    response = web.Response(status=303, headers={hdrs.LOCATION: location})
    secure_headers(response)
    return response


def refused(request: web.Request, exc: TallyError) -> None:
    """A form's refusal, logged like the API's (the page says it to the owner)."""
    log.info("refused", extra={"method": request.method, "path": request.path, "code": exc.code})


def flash(v: Viewer, kind: str, text: str) -> None:
    if v.session is not None:
        v.session.flash.append((kind, text))


# ---- writes: owner, same origin, CSRF token ----------------------------------------


def _same_origin(request: web.Request) -> bool:
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        return True  # browsers send Origin on POST; the CSRF token still has to match
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc == request.host


async def owner_form(request: web.Request) -> tuple[Viewer, dict[str, str]]:
    """The form of a state-changing request, after checking who sent it and from where."""
    v = viewer(request)
    if v.session is None:
        raise LocalError("unauthorized", "only the node's owner may change anything here; log in with `tally open`")
    if not _same_origin(request):
        raise LocalError("forbidden", "this form was sent from another site")
    form = await request.post()
    values = {k: val for k, val in form.items() if isinstance(val, str)}
    if not v.session.csrf_ok(values.get("csrf")):
        raise LocalError("forbidden", "this form is stale or was not made by this node's page; reload and retry")
    return v, values


async def append(request: web.Request, build: Callable[[int], AppendRequest]) -> CID:
    """Sign and store what `build(ts)` makes (it checks the request first); not while catching up."""
    return (await request.app[WRITES].append(build)).id


async def submit(request: web.Request, write: LedgerWrite) -> CID:
    """Sign and store the entry a declared write asks for, as the API does (node/store/writes.py `submit`): the
    everyday ones are built against the ledger's last state while it catches up, so the form does not wait."""
    return (await request.app[WRITES].submit(write)).id


async def act(request: web.Request, v: Viewer, build: Callable[[int], AppendRequest], done: str,
              back: str) -> web.Response:
    """A form's write: sign what `build(ts)` makes, say `done` (or the refusal's code and message) on the
    next page, and go `back` there."""
    return await write_and_say(request, v, lambda: append(request, build), done, back)


async def write_and_say(request: web.Request, v: Viewer, write: Callable[[], Awaitable[object]], done: str,
                        back: str) -> web.Response:
    """`act` for any write (a declared one `submit`s): `done` or the refusal on the next page, at `back`."""
    try:
        await write()
    except TallyError as exc:
        refused(request, exc)
        flash(v, "error", f"{exc.code}: {exc.message}")
    else:
        flash(v, "ok", done)
    return see_other(back)


async def ledgers_for(request: web.Request, v: Viewer) -> list[LedgerInfo]:
    return [i for i in await request.app[STORE].ledgers() if v.owner or i.visibility == "public"]


async def _genesis_of(request: web.Request, v: Viewer) -> tuple[CID, Entry]:
    """The ledger in the path and its genesis, if `v` may read it; else `unknown_ledger` (404)."""
    text = request.match_info["ledger"]
    try:
        ledger = CID.parse(text)
    except TallyError:
        raise LocalError("unknown_ledger", "no such ledger") from None
    # Not Store.ledgers(): its entry counts cost a scan of every ledger (~40 ms at a million entries).
    genesis = await request.app[STORE].genesis(ledger)
    if genesis is not None and (v.owner or (genesis.body or {}).get("visibility") == "public"):
        return ledger, genesis
    raise LocalError("unknown_ledger", f"no ledger {ledger} is stored here")


async def ledger_in_path(request: web.Request, v: Viewer) -> CID:
    """The ledger in the path, if `v` may read it (a form's write, which reads its state itself: `act_on`)."""
    return (await _genesis_of(request, v))[0]


async def readable_ledger(request: web.Request, v: Viewer) -> tuple[LedgerInfo, LedgerState]:
    """The ledger in the path and its current state, if `v` may read it; else `unknown_ledger` (404). A write
    built against the state (governance, admissions, distributions) or an export waits for it while the ledger
    catches up: what these read is the whole ledger, which only the current state says."""
    ledger, genesis = await _genesis_of(request, v)
    state = await request.app[STATES].get(ledger)  # current: kept up to date as entries arrive
    if state is None:
        raise LocalError("unknown_ledger", f"no ledger {ledger} is stored here")
    return LedgerInfo.of(genesis, len(state.status)), state


async def shown_ledger(request: web.Request, v: Viewer) -> tuple[LedgerInfo, LedgerState]:
    """`readable_ledger` for a page that only shows the state: while the ledger catches up (after a restart, an
    upgrade), its last state at once, and the page says which entries stored since it does not count yet (and
    that the state is the Tally version before's, when it is)."""
    ledger, genesis = await _genesis_of(request, v)
    state, since, count, exact = await request.app[STATES].shown(ledger)
    if state is None:
        raise LocalError("unknown_ledger", f"no ledger {ledger} is stored here")
    info = LedgerInfo.of(genesis, len(state.status) + count)
    if count or not exact:
        request[BEHIND] = Behind(info.name, state, since, count, exact)
    return info, state
