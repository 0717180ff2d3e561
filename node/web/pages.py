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
from dataclasses import replace
from decimal import Decimal
from functools import partial
from importlib import resources
from typing import Final

from aiohttp import hdrs, web

from node.governance_views import pledge_json, today
from node.http.context import CONFIG, REPLICATION, SESSIONS, STATES, STORE, Replication
from node.http.sessions import SESSION_TTL_S, cookie_name
from node.ledger_views import event_day, event_time, event_ts_time, ledger_zone, zone_known
from node.store.rows import LedgerInfo
from node.web.behind import BEHIND, Behind
from node.web.forms import form_request
from node.web.governance import add_governance_pages
from node.web.html import Child, el, field, table
from node.web.i18n import _, day, moment, number
from node.web.layout import (
    append,
    choose_language,
    csrf_field,
    flash,
    ledgers_for,
    owner_form,
    page,
    refused,
    see_other,
    short,
    status_badge,
    viewer,
    visibility_label,
    when,
    who,
)
from node.web.ledger import add_ledger_pages
from node.web.members import add_member_pages
from node.web.overview import add_overview_pages
from node.web.shares import add_share_pages
from protocol import LocalError, TallyError
from protocol.kel import founding_proof
from protocol.requests import Follow, LedgerCreate
from protocol.state import LedgerState

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
    app.router.add_post("/language", choose_language)
    add_overview_pages(app)
    add_ledger_pages(app)
    add_governance_pages(app)
    add_share_pages(app)
    add_member_pages(app)


# ---- pages -------------------------------------------------------------------------


async def home(request: web.Request) -> web.Response:
    """My identity, my ledgers and the latest contributions across them."""
    v = viewer(request)
    infos = await ledgers_for(request, v)
    rows = []
    recent = []
    waits: list[Child] = []
    for info in infos:
        try:
            state, since, count, exact = await request.app[STATES].shown(info.id)  # while it catches up: its last state
        except TallyError as exc:  # e.g. a genesis whose rules do not parse: one bad ledger must not hide the rest
            rows.append(el("tr", el("td", el("a", info.name, href=f"/ledgers/{info.id}")),
                           el("td", visibility_label(info.visibility)),
                           el("td", el("code", exc.code), ": ", exc.message, colspan=4, class_="error")))
            continue
        if state is None:
            continue
        if (count or not exact) and BEHIND not in request:  # the page says which ledger it shows as it was
            request[BEHIND] = Behind(info.name, state, since, count, exact)
        member = v.did in state.members
        rows.append(el("tr", el("td", el("a", info.name, href=f"/ledgers/{info.id}")),
                       el("td", visibility_label(info.visibility)),
                       el("td", number(len(state.members))), el("td", number(len(state.contributions))),
                       el("td", number(info.entries)),
                       el("td", _("member") if member else (_("founder") if info.founder == v.did else "—"))))
        zone = ledger_zone(state.rules)
        recent += [(event_time(c), info, c, state.names, zone) for c in state.contributions.top(12, event_ts_time)]
        if v.owner and member:
            waits += _waiting_items(info, state, v.did, request.app[CONFIG].wall_ms())
    recent.sort(key=lambda r: r[0], reverse=True)
    me = v.did
    latest = [el("tr", el("td", day(event_day(c, zone))),
                  el("td", el("a", info.name, href=f"/ledgers/{info.id}/history")),
                  el("td", who(c.event.provider or c.author, me, names)), el("td", c.event.action),
                  el("td", f"{number(c.event.quantity.value)} {c.event.quantity.unit}", class_="num"),
                  el("td", c.event.note or ""), el("td", status_badge(c.status)))
              for t, info, c, names, zone in recent[:12]]
    identity = el("section", el("h2", _("This node")), el("dl", el("dt", _("Identity")), el("dd", el("code", v.did)),
                                                            el("dt", _("You are")),
                                                            el("dd", _("its owner") if v.owner else _("a visitor"))),
                  class_="card")
    if not v.owner:
        identity = el("section", el("h2", _("This node")), el("p", _("Node"), " ", el("code", v.did)),
                      el("p", _("You see its public ledgers, read-only. The node's owner logs in by running "
                                "`tally open` on its machine.")), class_="card")
    if v.owner:  # followed ledgers whose genesis has not arrived yet
        known = {i.id for i in infos}
        rows += [el("tr", el("td", el("code", str(ledger))), el("td", "—"),
                    el("td", _("following: waiting for its entries from a peer that holds it"), colspan=4))
                 for ledger in await request.app[STORE].replicated() if ledger not in known]
    ledgers = table((_("Ledger"), _("Visibility"), _("Members"), _("Contributions"), _("Entries"), _("You")), rows,
                    class_="ledgers",
                    empty=el("p", _("No ledgers yet. Found one with `tally ledger create NAME`, or join one with "
                                    "`tally follow ID`.") if v.owner else _("No ledgers yet.")))
    recent_table = table((_("When"), _("Ledger"), _("Who"), _("Action"), _("Quantity"), _("Note"), _("Status")),
                         latest, empty=el("p", _("No contributions yet.")), class_="recent")
    forms: Child = None
    if v.owner:
        forms = el(
            "section",
            el("h2", _("Start or join a ledger")),
            el("form", csrf_field(v),
               el("fieldset", el("legend", _("Found a ledger")),
                  field(_("Name"), "input", type="text", name="name", required=True,
                        maxlength=LedgerCreate.field("name").spec.max_chars),
                  field(_("Time zone its dates and times are shown in (optional, e.g. Europe/Berlin; UTC "
                          "without)"), "input", type="text", name="timezone", maxlength=64,
                        pattern="[A-Za-z][A-Za-z0-9_+/-]*", autocomplete="off"),
                  field(_("Who may read it"), "select", el("option", _("its members only"), value="members"),
                        el("option", _("anyone"), value="public"), name="visibility"),
                  field(_("Rules (optional, TOML as in a rules file; every default without)"), "textarea",
                        name="rules", rows=3, placeholder='[rates.work]\nhour = "20"')),
               el("button", _("Found it"), type="submit"), method="post", action="/ledgers"),
            el("form", csrf_field(v),
               field(_("Follow a ledger you were admitted to: its id"), "input", type="text", name="ledger",
                     required=True, size=64),
               el("button", _("Follow"), type="submit"), method="post", action="/follow", class_="filters"),
            class_="start")
    heading = _("Your ledgers") if v.owner else _("Public ledgers")
    waiting: Child = None
    if v.owner:
        waiting = el("section", el("h2", _("Waiting for you")),
                     el("ul", waits) if waits else el("p", _("Nothing waits for you."), class_="muted"),
                     class_="card waiting")
    title = f"({len(waits)}) {heading}" if waits else heading  # the count shows in the browser's tab
    return page(request, v, title, el("h1", heading), waiting, identity,
                el("section", el("h2", _("Ledgers")), ledgers),
                el("section", el("h2", _("Recent contributions")), recent_table), forms)


#: How long the landing page tells members that a vote was closed early.
EARLY_CLOSE_NOTICE_MS: Final = 14 * 86_400_000


def _waiting_items(info: LedgerInfo, state: LedgerState, me: str, now: int) -> list[Child]:
    """What waits for the owner in one ledger: contributions to validate, open motions without their ballot
    (and when they close), votes another member closed early (for two weeks), their own pledges in arrears."""
    base = f"/ledgers/{info.id}"
    items: list[Child] = []
    to_validate = state.contributions.awaiting(me)
    if to_validate:
        items.append(el("li", el("a", _("{count} contribution(s) to validate in {ledger}").format(
            count=len(to_validate), ledger=info.name), href=f"{base}/queue")))
    for m in state.motions:
        if not m.closed and all(b.voter != me for b in m.counted):  # an open motion counts every latest ballot
            closes = (" · " + _("closes {time}").format(time=moment(m.motion.closes, ledger_zone(state.rules)))
                      if m.motion.closes is not None else "")
            items.append(el("li", el("a", _("Vote on “{title}” in {ledger}").format(title=m.motion.title,
                                                                                   ledger=info.name),
                                     href=f"{base}/motions/{m.id}"), closes))
    for m in state.motions:
        if (m.closed_early and m.closed_by != me and m.closed_at is not None
                and now - m.closed_at < EARLY_CLOSE_NOTICE_MS):
            items.append(el("li", el("a", _("“{title}” in {ledger} was closed early by {name}: {option} won").format(
                title=m.motion.title, ledger=info.name, name=short(m.closed_by or "", me, state.names),
                option=m.winner or "—"), href=f"{base}/motions/{m.id}")))
    as_of = today()
    for p in state.pledges:
        if p.author == me and Decimal(pledge_json(p, as_of)["arrears"]) > 0:
            j = pledge_json(p, as_of)
            items.append(el("li", el("a", _("Your pledge to {ledger}: {amount} {unit} due").format(
                ledger=info.name, amount=number(j["arrears"]), unit=j["unit"]), href=f"{base}/pledges")))
    return items


async def found_ledger(request: web.Request) -> web.Response:
    v, form = await owner_form(request)
    try:
        founding = form_request(LedgerCreate, form)
        if form.get("timezone", "").strip():  # the form's own field: it beats the rules text's `timezone`
            founding = replace(founding, rules={**(founding.rules or {}), "timezone": form["timezone"].strip()})
        key = request.app[STORE].public_key
        assert key is not None  # the node's store signs
        proof = founding_proof(v.did, key, request.app[CONFIG].key_log)  # a later key of the identity (§19.9)
        rules = founding.genesis(v.did, proof)
        name = rules.name
        if not zone_known(rules):  # the protocol checks the spelling only; this node must be able to show it
            raise LocalError("bad_rules", f"timezone: {rules.timezone} is not in this node's time zone database")
        ledger = await append(request, partial(founding.build, v.did, proof=proof))
    except TallyError as exc:
        refused(request, exc)
        flash(v, "error", f"{exc.code}: {exc.message}")
        return see_other("/")
    flash(v, "ok", _("You founded {name}. Admit members from its overview.").format(name=name))
    return see_other(f"/ledgers/{ledger}")


async def follow(request: web.Request) -> web.Response:
    v, form = await owner_form(request)
    try:
        ledger = form_request(Follow, form).ledger
        await request.app[STORE].follow(ledger)
        await request.app[REPLICATION].follow(ledger)
    except TallyError as exc:
        refused(request, exc)
        flash(v, "error", f"{exc.code}: {exc.message}")
    else:
        flash(v, "ok", _("Following {ledger}: its entries arrive from the peers that hold it.").format(ledger=ledger))
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
    names: dict[str, str] = {}  # the names members gave themselves, in any ledger here
    for info in await ledgers_for(request, v):
        state = await request.app[STATES].get(info.id)
        if state is not None:
            names.update(state.names)
    rows = []
    listed = replication.peers()
    for peer in listed:
        p = peer.as_json()
        errors = p.get("errors") or []
        did = p.get("id")
        name: Child = (el("span", names.get(did) or short(did), title=did, class_="did") if isinstance(did, str)
                       else _("not identified yet"))
        rows.append(el("tr", el("td", name), el("td", str(p.get("address") or "")),
                       el("td", str(p.get("found"))),
                       el("td", el("span", _("connected") if p.get("connected") else _("not connected"),
                                   class_="status final" if p.get("connected") else "status pending")),
                       el("td", when(seen if isinstance(seen := p.get("last_seen"), int) else None)),
                       el("td", when(last_sync if isinstance(last_sync := p.get("last_sync"), int) else None)),
                       el("td", _count(p.get("entries_behind")), class_="num"),
                       el("td", _count(p.get("entries_in")), class_="num"),
                       el("td", _count(p.get("entries_out")), class_="num"),
                       el("td", "; ".join(str(e) for e in errors) if isinstance(errors, list) else "")))
    linked = sum(1 for peer in listed if peer.as_json().get("connected") is True)
    if replication.catching_up:
        sync = _("Catching up with peers before signing anything (safe restore).")
    elif listed and not linked:
        sync = _("Offline: no peer is linked now. This node signs new entries; they reach the others when a peer "
                 "is back.")
    elif linked < len(listed):
        sync = _("{linked} of {peers} peers linked: the others get new entries when they are back.").format(
            linked=linked, peers=len(listed))
    else:
        sync = _("Up to date with every peer: this node signs new entries.")
    forks = await request.app[STORE].forks()
    fork_rows = [el("tr", el("td", who(f.author, v.did)), el("td", el("a", str(f.a.ledger_id)[:16] + "…",
                                                                      href=f"/ledgers/{f.a.ledger_id}")),
                     el("td", f.seq, class_="num"), el("td", el("code", str(f.a.id))),
                     el("td", el("code", str(f.b.id))))
                 for f in forks]
    return page(
        request, v, _("Peers"),
        el("h1", _("Peers and sync")), el("p", sync, class_="card"),
        table((_("Peer"), _("Address"), _("Found by"), _("Link"), _("Last seen"), _("Last sync"), _("Entries behind"),
               _("In"),
               _("Out"), _("Errors")), rows,
              empty=el("p", _("No peers yet: add some with --peer or tally.toml, or let mDNS find them on the LAN.")),
              class_="peers"),
        el("h2", _("Forks")),
        table((_("Author"), _("Ledger"), _("Seq"), _("Entry a"), _("Entry b")), fork_rows, class_="forks",
              empty=el("p", _("No forks: no author has signed two different entries at one place in a chain."))),
    )


def _count(value: object) -> str:
    return number(value) if isinstance(value, int) else "0"


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
