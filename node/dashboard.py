"""The member's dashboard: HTML pages `tally run` serves at `/`, next to the API.

Who sees what: the owner, logged in through a one-time link from `tally open`
(a session cookie, HttpOnly and SameSite=Strict), sees and writes everything;
anyone else who browses the node (a LAN neighbour) reads public ledgers only
and can change nothing. Every state-changing request is a POST that must
carry the session's CSRF token and come from this origin.

Pages are rendered on the server; the only script (static/tally.js) refreshes
a motion's live results. Every asset comes from the installed package.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Final
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from protocol import CID, GENESIS_KIND, LocalError, TallyError
from protocol.names import resembles
from protocol.rules import Rules, parse_rules_toml
from protocol.state import LedgerState

from .api import CONFIG, REPLICATION, SESSIONS, STATES, STORE, Replication
from .forms import genesis_body
from .html import Child, Markup, el, field, table
from .ledger_views import event_time
from .sessions import SESSION_TTL_S, Session, cookie_name
from .store import AppendRequest, LedgerInfo

log = logging.getLogger(__name__)
STATIC_FILES: Final = {"tally.css": "text/css", "tally.js": "text/javascript", "favicon.svg": "image/svg+xml"}
#: No inline script or style, nothing from elsewhere, no framing, forms post here only.
CSP: Final = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
              "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UPDATE_REFRESH_S: Final = 5  # a page showing a ledger's last state while the next is computed reloads after this


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


def add_dashboard_routes(app: web.Application) -> None:
    app.router.add_get("/", home)
    app.router.add_get("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_post("/ledgers", found_ledger)
    app.router.add_post("/follow", follow)
    app.router.add_get("/peers", peers)
    app.router.add_get("/static/{name}", static)
    from .dashboard_ledger import add_ledger_pages  # its pages use this module's layout
    from .dashboard_shares import add_share_pages

    add_ledger_pages(app)
    add_share_pages(app)


# ---- layout ----------------------------------------------------------------------


def short(did: str, me: str | None = None, names: Mapping[str, str] | None = None) -> str:
    """An agent as people read it: the name they gave themselves in the ledger (`member.about`), else the last
    characters of their did:key; "you" for this node's owner."""
    name = (names or {}).get(did)
    if me is not None and did == me:
        return f"{name} (you)" if name else "you"
    if name:  # a name another member's reads as gets the did:key's end beside it (SPEC §16.1)
        return name if resembles(name, did, names or {}) is None else f"{name} (…{did[-8:]})"
    return f"…{did[-8:]}" if did.startswith("did:key:") else did


def who(did: str, me: str, names: Mapping[str, str] | None = None) -> Markup:
    """An agent's name, with their whole did:key as its title (a name is a label, not an identity)."""
    return el("span", short(did, me, names), title=did, class_="did")


def when(ms: int | None) -> str:
    if ms is None:
        return "never"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def csrf_field(v: Viewer) -> Markup:
    return el("input", type="hidden", name="csrf", value=v.session.csrf if v.session else "")


def page(request: web.Request, v: Viewer, title: str, *content: Child, ledger: LedgerInfo | None = None,
         tab: str | None = None, status: int = 200, pending: int = 0) -> web.Response:
    version = request.app[CONFIG].version
    if v.owner:
        account: Child = [
            el("span", "owner", title=v.did, class_="badge"),
            el("form", csrf_field(v), el("button", "Log out", type="submit", class_="link"),
               method="post", action="/logout", class_="inline"),
        ]
    else:
        account = el("span", "read-only: public ledgers", class_="badge muted",
                     title="the node's owner logs in with `tally open`")
    nav = el("nav", el("a", "Tally", href="/", class_="brand"), el("a", "Ledgers", href="/"),
             el("a", "Peers", href="/peers") if v.owner else None, el("span", class_="spacer"), account,
             aria_label="Site")
    flashes = v.session.flash if v.session else []
    shown = [el("p", text, class_=f"flash {kind}", role="status") for kind, text in flashes]
    if v.session:
        v.session.flash = []
    sub: Child = None
    if ledger is not None:
        base = f"/ledgers/{ledger.id}"
        tabs = [("overview", "Overview", base), ("history", "History", f"{base}/history")]
        if v.owner:
            queue = f"Validation queue ({pending})" if pending else "Validation queue"
            tabs += [("contribute", "Log a contribution", f"{base}/contribute"),
                     ("queue", queue, f"{base}/queue")]
        tabs += [("shares", "Shares", f"{base}/shares"), ("motions", "Motions", f"{base}/motions"),
                 ("pledges", "Pledges", f"{base}/pledges")]
        sub = el("div", el("h1", ledger.name, " ", el("small", ledger.visibility, class_="badge")),
                 el("nav", (el("a", label, href=href, aria_current="page" if key == tab else None)
                            for key, label, href in tabs), class_="tabs", aria_label="Ledger"), class_="ledger-head")
    updating = ledger is not None and not request.app[STATES].is_current(ledger.id)
    if updating:
        shown.append(el("p", "Updating: this ledger received entries since the state shown was computed; the "
                             f"page reloads in {UPDATE_REFRESH_S} s.", class_="flash updating", role="status"))
    skip = el("a", "Skip to content", href="#main", class_="skip")  # the first stop of the keyboard
    body = el("body", skip, el("header", nav), el("main", shown, sub, *content, id="main", tabindex=-1),
              el("footer", f"Tally {version} · node ", el("code", v.did)))
    html = Markup("<!doctype html>") + el(
        "html",
        el("head", el("meta", charset="utf-8"),
           el("meta", name="viewport", content="width=device-width, initial-scale=1"),
           el("title", f"{title} · Tally"),
           el("meta", http_equiv="refresh", content=str(UPDATE_REFRESH_S)) if updating else None,
           el("link", rel="stylesheet", href=f"/static/tally.css?v={version}"),
           el("link", rel="icon", href=f"/static/favicon.svg?v={version}", type="image/svg+xml"),
           el("script", src=f"/static/tally.js?v={version}", defer=True)),
        body, lang="en",
    )
    return html_response(html, status)


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
        hint = el("p", "The node's owner logs in by running ", el("code", "tally open"),
                  " on the node's machine and following the link it prints.")
    return page(request, v, "Error", el("h1", {401: "Log in first", 404: "Not found"}.get(status, "Refused")),
                el("p", el("code", code), ": ", message, class_="error"), hint,
                el("p", el("a", "Back to your ledgers", href="/")), status=status)


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
    made = build(request.app[CONFIG].wall_ms())
    if request.app[REPLICATION].catching_up:
        raise LocalError("catching_up", "the node is catching up with its peers before it signs new entries; "
                                        "retry shortly")
    entry = await request.app[STORE].append(made)
    return entry.id


async def act(request: web.Request, v: Viewer, build: Callable[[int], AppendRequest], done: str,
              back: str) -> web.Response:
    """A form's write: sign what `build(ts)` makes, say `done` (or the refusal's code and message) on the
    next page, and go `back` there."""
    try:
        await append(request, build)
    except TallyError as exc:
        refused(request, exc)
        flash(v, "error", f"{exc.code}: {exc.message}")
    else:
        flash(v, "ok", done)
    return see_other(back)


async def ledgers_for(request: web.Request, v: Viewer) -> list[LedgerInfo]:
    return [i for i in await request.app[STORE].ledgers() if v.owner or i.visibility == "public"]


async def readable_ledger(request: web.Request, v: Viewer) -> tuple[LedgerInfo, LedgerState]:
    """The ledger in the path and its state, if `v` may read it; else `unknown_ledger` (404)."""
    text = request.match_info["ledger"]
    try:
        ledger = CID.parse(text)
    except TallyError:
        raise LocalError("unknown_ledger", "no such ledger") from None
    # Not Store.ledgers(): its entry counts cost a scan of every ledger (~40 ms at a million entries).
    genesis = await request.app[STORE].genesis(ledger)
    if genesis is not None and (v.owner or (genesis.body or {}).get("visibility") == "public"):
        states = request.app[STATES]
        # A page may show a big ledger's last state while the next is computed; a write is built on a current one.
        state = (await states.latest(ledger))[0] if request.method == hdrs.METH_GET else await states.get(ledger)
        if state is not None:
            return LedgerInfo.of(genesis, len(state.status)), state
    raise LocalError("unknown_ledger", f"no ledger {ledger} is stored here")


# ---- pages -------------------------------------------------------------------------


async def home(request: web.Request) -> web.Response:
    """My identity, my ledgers and the latest contributions across them."""
    v = viewer(request)
    infos = await ledgers_for(request, v)
    rows = []
    recent = []
    for info in infos:
        try:
            state, _ = await request.app[STATES].latest(info.id)
        except TallyError as exc:  # e.g. a genesis whose rules do not parse: one bad ledger must not hide the rest
            rows.append(el("tr", el("td", el("a", info.name, href=f"/ledgers/{info.id}")), el("td", info.visibility),
                           el("td", el("code", exc.code), ": ", exc.message, colspan=4, class_="error")))
            continue
        if state is None:
            continue
        member = v.did in state.members
        rows.append(el("tr", el("td", el("a", info.name, href=f"/ledgers/{info.id}")), el("td", info.visibility),
                       el("td", len(state.members)), el("td", len(state.contributions)), el("td", info.entries),
                       el("td", "member" if member else ("founder" if info.founder == v.did else "—"))))
        recent += [(event_time(c), info, c, state.names) for c in state.contributions]
    recent.sort(key=lambda r: r[0], reverse=True)
    me = v.did
    latest = [el("tr", el("td", datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")),
                  el("td", el("a", info.name, href=f"/ledgers/{info.id}/history")),
                  el("td", who(c.event.provider or c.author, me, names)), el("td", c.event.action),
                  el("td", f"{c.event.quantity.value} {c.event.quantity.unit}", class_="num"),
                  el("td", c.event.note or ""), el("td", el("span", c.status, class_=f"status {c.status}")))
              for t, info, c, names in recent[:12]]
    identity = el("section", el("h2", "This node"), el("dl", el("dt", "Identity"), el("dd", el("code", v.did)),
                                                         el("dt", "You are"),
                                                         el("dd", "its owner" if v.owner else "a visitor")),
                  class_="card")
    if not v.owner:
        identity = el("section", el("h2", "This node"), el("p", "Node ", el("code", v.did)),
                      el("p", "You see its public ledgers, read-only. The node's owner logs in by running ",
                         el("code", "tally open"), " on its machine."), class_="card")
    if v.owner:  # followed ledgers whose genesis has not arrived yet
        known = {i.id for i in infos}
        rows += [el("tr", el("td", el("code", str(ledger))), el("td", "—"),
                    el("td", "following: waiting for its entries from a peer that holds it", colspan=4))
                 for ledger in await request.app[STORE].replicated() if ledger not in known]
    ledgers = table(("Ledger", "Visibility", "Members", "Contributions", "Entries", "You"), rows, class_="ledgers",
                    empty=el("p", "No ledgers yet." + (
                        " Found one with `tally ledger create NAME`, or join one with `tally follow ID`."
                        if v.owner else "")))
    recent_table = table(("When", "Ledger", "Who", "Action", "Quantity", "Note", "Status"), latest,
                         empty=el("p", "No contributions yet."), class_="recent")
    forms: Child = None
    if v.owner:
        forms = el(
            "section",
            el("h2", "Start or join a ledger"),
            el("form", csrf_field(v),
               el("fieldset", el("legend", "Found a ledger"),
                  field("Name", "input", type="text", name="name", required=True, maxlength=200),
                  field("Who may read it", "select", el("option", "its members only", value="members"),
                        el("option", "anyone", value="public"), name="visibility"),
                  field("Rules (optional, TOML as in a rules file; every default without)", "textarea",
                        name="rules", rows=3, placeholder='[rates.work]\nhour = "20"')),
               el("button", "Found it", type="submit"), method="post", action="/ledgers"),
            el("form", csrf_field(v),
               field("Follow a ledger you were admitted to: its id", "input", type="text", name="ledger",
                     required=True, size=64),
               el("button", "Follow", type="submit"), method="post", action="/follow", class_="filters"),
            class_="start")
    heading = "Your ledgers" if v.owner else "Public ledgers"
    return page(request, v, heading, el("h1", heading), identity, el("section", el("h2", "Ledgers"), ledgers),
                el("section", el("h2", "Recent contributions"), recent_table), forms)


async def found_ledger(request: web.Request) -> web.Response:
    v, form = await owner_form(request)
    try:
        name = genesis_body(form.get("name", ""), form.get("visibility", "members"))["name"]
        text = form.get("rules", "").strip()
        config = parse_rules_toml(text) if text else {}
        rules = Rules.from_config(config, name=name, creator=v.did, public=form.get("visibility") == "public")
        ledger = await append(request, lambda ts: AppendRequest(None, GENESIS_KIND, rules.to_body(), ts))
    except TallyError as exc:
        refused(request, exc)
        flash(v, "error", f"{exc.code}: {exc.message}")
        return see_other("/")
    flash(v, "ok", f"You founded {name}. Admit members from its overview.")
    return see_other(f"/ledgers/{ledger}")


async def follow(request: web.Request) -> web.Response:
    v, form = await owner_form(request)
    try:
        ledger = CID.parse(form.get("ledger", "").strip())
        await request.app[STORE].follow(ledger)
        await request.app[REPLICATION].follow(ledger)
    except TallyError as exc:
        refused(request, exc)
        flash(v, "error", f"{exc.code}: {exc.message}")
    else:
        flash(v, "ok", f"Following {ledger}: its entries arrive from the peers that hold it.")
    return see_other("/")


async def login(request: web.Request) -> web.Response:
    """Follow a one-time link from `tally open`: a session cookie, then the landing page."""
    token = request.query.get("token", "")
    session_id = request.app[SESSIONS].redeem(token) if token else None
    if session_id is None:
        raise LocalError("unauthorized",
                         "this login link is used, expired or wrong; run `tally open` for a new one")
    response = see_other("/")
    response.set_cookie(cookie_name(request.app[CONFIG].did), session_id, max_age=int(SESSION_TTL_S), path="/",
                        httponly=True, samesite="Strict", secure=request.secure)
    return response


async def logout(request: web.Request) -> web.Response:
    await owner_form(request)
    name = cookie_name(request.app[CONFIG].did)
    request.app[SESSIONS].end(request.cookies.get(name))
    response = see_other("/")
    response.del_cookie(name, path="/")
    return response


async def peers(request: web.Request) -> web.Response:
    """Who this node syncs with, how far behind they are, and the forks it knows of."""
    v = viewer(request)
    if not v.owner:
        raise LocalError("unauthorized", "only the node's owner sees its peers; log in with `tally open`")
    replication: Replication = request.app[REPLICATION]
    rows = []
    for peer in replication.peers():
        p = peer.as_json()
        errors = p.get("errors") or []
        rows.append(el("tr", el("td", el("code", str(p.get("id") or "—"))), el("td", str(p.get("address") or "")),
                       el("td", str(p.get("found"))),
                       el("td", el("span", "connected" if p.get("connected") else "not connected",
                                   class_="status final" if p.get("connected") else "status pending")),
                       el("td", when(last_sync if isinstance(last_sync := p.get("last_sync"), int) else None)),
                       el("td", str(p.get("entries_behind", 0)), class_="num"),
                       el("td", str(p.get("entries_in", 0)), class_="num"),
                       el("td", str(p.get("entries_out", 0)), class_="num"),
                       el("td", "; ".join(str(e) for e in errors) if isinstance(errors, list) else "")))
    sync = ("Catching up with peers before signing anything (safe restore)." if replication.catching_up
            else "Up to date: this node signs new entries.")
    forks = await request.app[STORE].forks()
    fork_rows = [el("tr", el("td", who(f.author, v.did)), el("td", el("a", str(f.a.ledger_id)[:16] + "…",
                                                                      href=f"/ledgers/{f.a.ledger_id}")),
                     el("td", f.seq, class_="num"), el("td", el("code", str(f.a.id))),
                     el("td", el("code", str(f.b.id))))
                 for f in forks]
    return page(
        request, v, "Peers",
        el("h1", "Peers and sync"), el("p", sync, class_="card"),
        table(("Peer", "Address", "Found by", "Link", "Last sync", "Entries behind", "In", "Out", "Errors"), rows,
              empty=el("p", "No peers yet: add some with --peer or tally.toml, or let mDNS find them on the LAN."),
              class_="peers"),
        el("h2", "Forks"),
        table(("Author", "Ledger", "Seq", "Entry a", "Entry b"), fork_rows, class_="forks",
              empty=el("p", "No forks: no author has signed two different entries at one place in a chain.")),
    )


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    kind = STATIC_FILES.get(name)
    if kind is None:
        raise LocalError("not_found", f"no file {name}")
    data = resources.files("node").joinpath("data", "web", name).read_bytes()
    response = web.Response(body=data, content_type=kind, charset="utf-8")
    response.headers[hdrs.CACHE_CONTROL] = "public, max-age=86400"  # the URL carries the version
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
