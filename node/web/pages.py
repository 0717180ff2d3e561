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
from datetime import UTC, datetime
from importlib import resources
from typing import Final

from aiohttp import hdrs, web

from node.http.context import CONFIG, REPLICATION, SESSIONS, STATES, STORE, Replication
from node.http.sessions import SESSION_TTL_S, cookie_name
from node.ledger_views import event_time
from node.web.governance import add_governance_pages
from node.web.html import Child, el, field, table
from node.web.layout import (
    append,
    csrf_field,
    flash,
    ledgers_for,
    owner_form,
    page,
    refused,
    see_other,
    viewer,
    when,
    who,
)
from node.web.ledger import add_ledger_pages
from node.web.shares import add_share_pages
from protocol import CID, GENESIS_KIND, LocalError, TallyError
from protocol.rules import Rules, parse_rules_toml
from protocol.writes import AppendRequest, genesis_body

log = logging.getLogger(__name__)
STATIC_FILES: Final = {"tally.css": "text/css", "tally.js": "text/javascript", "favicon.svg": "image/svg+xml"}


def add_dashboard_routes(app: web.Application) -> None:
    app.router.add_get("/", home)
    app.router.add_get("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_post("/ledgers", found_ledger)
    app.router.add_post("/follow", follow)
    app.router.add_get("/peers", peers)
    app.router.add_get("/static/{name}", static)
    add_ledger_pages(app)
    add_governance_pages(app)
    add_share_pages(app)


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
    data = resources.files("node.web").joinpath("static", name).read_bytes()
    response = web.Response(body=data, content_type=kind, charset="utf-8")
    response.headers[hdrs.CACHE_CONTROL] = "public, max-age=86400"  # the URL carries the version
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
