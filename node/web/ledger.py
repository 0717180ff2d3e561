"""The dashboard's pages of one ledger: the page frame they share (`ledger_page`), history, the contribution
form, the validation queue (its overview and charts: node/web/overview.py; motions and pledges:
node/web/governance.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, tzinfo
from typing import Any, Final
from urllib.parse import urlencode

from aiohttp import web

from node.governance_views import pledge_json, today
from node.http.context import STORE
from node.ledger_views import HistoryQuery, event_day, ledger_zone
from node.store.rows import LedgerInfo
from node.web.forms import check_choices, form_request
from node.web.html import Child, Markup, el, field, table
from node.web.i18n import _, day, decimal_symbol, number
from node.web.layout import (
    Viewer,
    csrf_field,
    flash,
    ledger_in_path,
    owner_form,
    page,
    presence,
    presence_text,
    refused,
    see_other,
    short,
    shown_ledger,
    status_badge,
    status_label,
    submit,
    viewer,
    who,
    write_and_say,
)
from protocol import CID, LocalError, TallyError
from protocol.contributions import Contributions, ContributionTuple
from protocol.decimals import format_decimal
from protocol.rates import ACTIONS
from protocol.requests import Contribute, Endorse
from protocol.state import CORRECTED, FINAL, PENDING, REJECTED, Contribution, LedgerState

PAGE_ROWS: Final = 25  # contributions per history page


def add_ledger_pages(app: web.Application) -> None:
    base = "/ledgers/{ledger}"
    app.router.add_get(f"{base}/history", history)
    app.router.add_get(f"{base}/contribute", contribute_form)
    app.router.add_post(f"{base}/contribute", contribute)
    app.router.add_get(f"{base}/queue", queue)
    app.router.add_post(f"{base}/endorse", endorse)


def _waiting_for(state: LedgerState, me: str) -> Contributions:
    """Pending contributions of others that have no verdict of mine yet (found without making the others: every
    ledger page counts them)."""
    if me not in state.members:
        return ContributionTuple()
    return state.contributions.awaiting(me)


def ledger_page(request: web.Request, v: Viewer, info: LedgerInfo, state: LedgerState, title: str, tab: str,
                 *content: Child, status: int = 200) -> web.Response:
    pending = len(_waiting_for(state, v.did)) if v.owner else 0
    return page(request, v, f"{title} · {info.name}", _offline_notice(request, v, state), *content, ledger=info,
                tab=tab, status=status, pending=pending)


def _offline_notice(request: web.Request, v: Viewer, state: LedgerState) -> Child:
    """Who is offline among the members whose verdict the owner's pending contributions wait for."""
    if not v.owner or v.did not in state.members:
        return None
    mine = list(state.contributions.by_author(v.did).of_status(PENDING))  # made once, read for every member
    if not mine:
        return None
    heard = Counter(m for c in mine for m in {*c.accepts, *c.rejects})  # verdicts given on them, per member
    seen = presence(request)
    zone = ledger_zone(state.rules)
    lines = []
    for member in sorted(state.members):
        if member == v.did or (member in seen and seen[member].online):
            continue
        waiting = len(mine) - heard[member]
        if waiting:
            lines.append(el("li", _("{name} is {presence}: {count} contribution(s) of yours wait for their "
                                    "verdict.").format(name=short(member, v.did, state.names),
                                                      presence=presence_text(seen.get(member), zone),
                                                      count=waiting)))
    return el("div", el("ul", lines), class_="flash offline", role="note") if lines else None


def _status(c: Contribution) -> Markup:
    return status_badge(c.status)


def _day(c: Contribution, zone: tzinfo) -> str:
    """The contribution's day (in the ledger's time zone when it gave none) as the page's locale writes it."""
    return day(event_day(c, zone))


def _quantity(c: Contribution) -> str:
    return f"{number(format_decimal(c.event.quantity.value))} {c.event.quantity.unit}"


def member_labels(state: LedgerState, me: str) -> dict[str, str]:
    """How a chart or filter names each member (and the ledger's common fund)."""
    names = {did: short(did, me, state.names) for did in (*state.members, *state.left)}
    names[str(state.ledger)] = _("the ledger (common fund)")
    return names



# ---- history ---------------------------------------------------------------------------


def _page_number(text: str | None) -> int:
    if text is None or not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 1_000_000:
        return 1
    return int(text)


def _one_page(rows: Sequence[Contribution], request: web.Request) -> tuple[Sequence[Contribution], int, int]:
    """The PAGE_ROWS rows of the page the query asks for (its `page`), that page's number and how many there are:
    a page's size never grows with the ledger."""
    pages = max(1, -(-len(rows) // PAGE_ROWS))
    page_no = min(_page_number(request.query.get("page")), pages)
    return rows[(page_no - 1) * PAGE_ROWS: page_no * PAGE_ROWS], page_no, pages


def _pager(query: dict[str, str], page_no: int, pages: int, count: int) -> Markup:
    """Newer and older pages of a newest-first listing, keeping the query's other parameters."""

    def link(n: int, text: str) -> Markup:
        return el("a", text, href="?" + urlencode({**{k: val for k, val in query.items() if val}, "page": n}))

    return el("nav", link(page_no - 1, _("← newer")) if page_no > 1 else None,
              el("span", _("page {page} of {pages} · {count} contribution(s)").format(
                  page=number(page_no), pages=number(pages), count=number(count))),
              link(page_no + 1, _("older →")) if page_no < pages else None, class_="pager",
              aria_label=_("Pages"))


async def history(request: web.Request) -> web.Response:
    v = viewer(request)
    info, state = await shown_ledger(request, v)
    me = v.did
    given = {k: request.query.get(k, "").strip() for k in ("agent", "action", "since", "until", "status")}
    problem: Child = None
    rows: Sequence[Contribution]
    try:
        rows = HistoryQuery(**{k: val for k, val in given.items() if val}).select(state)[::-1]  # newest first
    except TallyError as exc:
        problem = el("p", el("code", exc.code), ": ", exc.message, class_="flash error", role="alert")
        rows = []
    zone = ledger_zone(state.rules)
    shown, page_no, pages = _one_page(rows, request)
    labels = member_labels(state, me)

    def option(value: str, label: str, current: str) -> Markup:
        return el("option", label, value=value, selected=value == current)

    people = sorted({*state.members, *state.left, *state.contributions.authors()})
    filters = el(
        "form",
        field(_("Member"), "select", option("", _("anyone"), given["agent"]),
                                 (option(d, labels.get(d, short(d, me, state.names)), given["agent"]) for d in people),
                                 name="agent"),
        field(_("Action"), "select", option("", _("any"), given["action"]),
                                 (option(a, a, given["action"]) for a in sorted(ACTIONS)), name="action"),
        field(_("From"), "input", type="date", name="since", value=given["since"]),
        field(_("Until"), "input", type="date", name="until", value=given["until"]),
        field(_("Status"), "select", option("", _("any"), given["status"]),
                                 (option(s, status_label(s), given["status"]) for s in (PENDING, FINAL, REJECTED)),
                                 name="status"),
        el("button", _("Filter"), type="submit"), el("a", _("Clear"), href=f"/ledgers/{info.id}/history"),
        method="get", class_="filters",
    )
    table_rows = [
        el("tr", el("td", _day(c, zone)), el("td", who(c.event.provider or c.author, me, state.names)),
           el("td", c.event.action),
           el("td", _quantity(c), class_="num"), el("td", number(format_decimal(c.claim)), class_="num"),
           el("td", c.event.note or "", _reasons(c, me, state) if v.owner else None), el("td", _status(c)),
           el("td", f"{len(c.accepts)} ✓ {len(c.rejects)} ✗", title=_("accepts and rejects")),
           el("td", el("a", _("correct"), href=f"/ledgers/{info.id}/contribute?corrects={c.id}")
              if v.owner and c.author == me and c.status != CORRECTED and me in state.members else None),
           data_id=str(c.id))
        for c in shown
    ]
    pager = _pager(given, page_no, pages, len(rows))
    listing = table((_("When"), _("Who"), _("Action"), _("Quantity"), _("Claim"), _("Note"), _("Status"),
                     _("Verdicts"), _("Change")), table_rows,
                    empty=el("p", _("No contributions match.")), class_="history")
    return ledger_page(request, v, info, state, _("History"), "history", filters, problem, listing, pager)


def _reasons(c: Contribution, me: str, state: LedgerState) -> Child:
    """On the owner's own contribution, what each rejecter wrote in their latest verdict (kept with the state:
    no chain is read for it)."""
    if c.author != me:
        return None
    return [el("p", _("{name} rejects it: “{note}”").format(name=short(did, me, state.names), note=note),
               class_="reason") for did, note in c.reject_notes] or None


# ---- logging a contribution -----------------------------------------------------------


def _contribution_fields(state: LedgerState, me: str, values: dict[str, str]) -> Markup:
    mine = [p for p in state.pledges if p.author == me]
    rated = sorted(state.rules.rates)
    others = sorted(ACTIONS - set(rated))
    chosen = values.get("action", rated[0] if rated else "work")
    unit = values.get("unit", state.rules.units[0] if state.rules.units else "")
    return el(
        "fieldset",
        field(_("What you did"), "select", el("optgroup", (el("option", a, value=a, selected=a == chosen)
                                                           for a in rated), label=_("with a rate")),
                                       el("optgroup", (el("option", a, value=a, selected=a == chosen)
                                                       for a in others), label=_("other actions")),
                                       name="action", required=True),
        field(_("How much"), "input", type="text", name="quantity", inputmode="decimal", required=True,
                                   pattern=r"[0-9]+([.,][0-9]+)?", value=values.get("quantity", ""),
                                   placeholder=_("e.g. {example}").format(example=number("3.5"))),
        field(_("Unit"), "select", (el("option", u, value=u, selected=u == unit) for u in state.rules.units),
                               name="unit"),
        field(_("On"), "input", type="date", name="at", value=values.get("at", datetime.now(ledger_zone(state.rules))
                                                                               .date().isoformat())),
        field(_("Note"), "input", type="text", name="note", maxlength=500, value=values.get("note", ""),
                               placeholder=_("what it was")),
        field(_("Pays my pledge (a transfer to the ledger)"), "select", el("option", "—", value=""),
              (el("option", pledge_text(pledge_json(p, today())), value=str(p.id),
                  selected=values.get("fulfills") == str(p.id)) for p in mine), name="fulfills")
        if mine else None,
    )


def pledge_text(j: dict[str, Any]) -> str:
    rate = f"{number(j['amount'])} {j['unit']}"
    if j["per"]:
        rate = _("{rate} per {per} × {basis}").format(rate=rate, per=j["per"], basis=number(j["basis"]))
    every = {"month": _("every month"), "quarter": _("every quarter"), "year": _("every year")}.get(j["every"],
                                                                                                  j["every"])
    if j["until"]:
        return _("{rate} {every} from {start} until {until}").format(rate=rate, every=every, start=j["start"],
                                                                    until=j["until"])
    return _("{rate} {every} from {start}").format(rate=rate, every=every, start=j["start"])


async def contribute_form(request: web.Request, values: dict[str, str] | None = None,
                          problem: TallyError | None = None) -> web.Response:
    v = viewer(request)
    info, state = await shown_ledger(request, v)
    if not v.owner:
        raise LocalError("unauthorized", "only the node's owner logs contributions; log in with `tally open`")
    values = dict(values or {})
    corrected = _own_contribution(state, v.did, values.get("corrects") or request.query.get("corrects", ""))
    if corrected is not None and "action" not in values:  # the form starts from the contribution it corrects
        e = corrected.event
        values.update(action=e.action, quantity=format_decimal(e.quantity.value), unit=e.quantity.unit,
                      at=event_day(corrected, ledger_zone(state.rules)).isoformat(), note=e.note or "")
    title = _("Correct a contribution") if corrected is not None else _("Log a contribution")
    if v.did not in state.members:
        body: Child = el("p", _("You are not a member of this ledger, so you cannot log contributions in it."),
                         class_="card")
    else:
        body = el("form", csrf_field(v), _contribution_fields(state, v.did, values),
                  None if corrected is None else el("input", type="hidden", name="corrects", value=str(corrected.id)),
                  el("button", _("Save the correction") if corrected is not None else _("Log it"), type="submit"),
                  method="post", action=f"/ledgers/{info.id}/contribute", class_="contribute")
    comma = problem is not None and "," in values.get("quantity", "") and decimal_symbol() != ","
    error: Child = None if problem is None else el(
        "p", el("code", problem.code), ": ", problem.message, " ",
        _("Write the amount with a decimal point, e.g. {example}.").format(example="2.5") + " " if comma else None,
        _("Your entry is kept below: fix it and send it again."), class_="flash error", role="alert")
    explain = (_("The correction replaces it (every member's node shows the latest version) and waits for "
                 "validation again.") if corrected is not None else
               _("It is signed by this node and waits for the other members' validation."))
    return ledger_page(request, v, info, state, title, "contribute", el("h2", title),
                       el("p", explain, class_="muted"), error, body, status=400 if problem else 200)


def _own_contribution(state: LedgerState, me: str, text: str) -> Contribution | None:
    """The contribution of `me` named by `text` (an entry id), if there is one."""
    try:
        wanted = CID.parse(text.strip()) if text.strip() else None
    except TallyError:
        return None
    found = None if wanted is None else state.contribution(wanted)
    return found if found is not None and found.author == me else None


async def contribute(request: web.Request) -> web.Response:
    v, form = await owner_form(request)
    ledger = await ledger_in_path(request, v)
    values = {k: form.get(k, "").strip()
              for k in ("action", "quantity", "unit", "at", "note", "fulfills", "corrects")}
    try:  # as the API: while the ledger catches up, built against its last state (node/store/writes.py)
        await submit(request, form_request(Contribute, form, ledger=ledger))
    except TallyError as exc:
        refused(request, exc)
        return await contribute_form(request, values, exc)
    what = f"{values['action']} {values['quantity']} {values['unit']}"
    flash(v, "ok", (_("Corrected: {what}. It waits for validation.") if values["corrects"] else
                    _("Logged: {what}. It waits for validation.")).format(what=what))
    return see_other(f"/ledgers/{ledger}/history")


# ---- validation queue ------------------------------------------------------------------


async def queue(request: web.Request) -> web.Response:
    v = viewer(request)
    info, state = await shown_ledger(request, v)
    if not v.owner:
        raise LocalError("unauthorized", "only the node's owner validates; log in with `tally open`")
    me = v.did
    waiting = _waiting_for(state, me).by_time()[::-1]  # newest first
    shown, page_no, pages = _one_page(waiting, request)
    need = state.rules.validation.accept

    def verdicts(c: Contribution) -> Markup:
        return el("form", csrf_field(v), el("input", type="hidden", name="entry", value=str(c.id)),
                  el("input", type="text", name="note", placeholder=_("note (optional)"), maxlength=500,
                     aria_label=_("Note to the author (optional)")),
                  el("button", _("Accept"), type="submit", name="verdict", value="accept", class_="accept"),
                  el("button", _("Reject"), type="submit", name="verdict", value="reject", class_="reject"),
                  el("input", type="hidden", name="page", value=page_no) if page_no > 1 else None,
                  method="post", action=f"/ledgers/{info.id}/endorse", class_="verdict")

    zone = ledger_zone(state.rules)
    rows = [el("tr", el("td", _day(c, zone)), el("td", who(c.event.provider or c.author, me, state.names)),
               el("td", c.event.action),
               el("td", _quantity(c), class_="num"), el("td", c.event.note or ""),
               el("td", _("{count} of {need}").format(count=len(c.accepts), need=need)), el("td", verdicts(c)),
               data_id=str(c.id))
            for c in shown]
    mine = state.contributions.by_author(me).of_status(PENDING).by_time()[::-1]
    more: Child = None
    if len(mine) > PAGE_ROWS:  # the newest of them here; the history lists them all
        more = el("p", el("a", _("All {count} of yours that wait, in the history").format(count=len(mine)),
                          href=f"/ledgers/{info.id}/history?" + urlencode({"agent": me, "status": PENDING})))
        mine = mine[:PAGE_ROWS]
    mine_rows = [el("tr", el("td", _day(c, zone)), el("td", c.event.action), el("td", _quantity(c), class_="num"),
                    el("td", c.event.note or "", _reasons(c, me, state)),
                    el("td", _("{count} of {need} accepts").format(count=len(c.accepts), need=need)))
                 for c in mine]
    return ledger_page(
        request, v, info, state, _("Validation queue"), "queue",
        el("h2", _("Waiting for your verdict")),
        table((_("When"), _("Who"), _("Action"), _("Quantity"), _("Note"), _("Accepts"), _("Your verdict")), rows,
              empty=el("p", _("Nothing waits for you."), class_="muted"), class_="queue"),
        _pager({}, page_no, pages, len(waiting)) if pages > 1 else None,
        el("h2", _("Yours, waiting for others")),
        table((_("When"), _("Action"), _("Quantity"), _("Note"), _("Status")), mine_rows,
              empty=el("p", _("None."), class_="muted")),
        more,
        el("h2", _("Admissions waiting for sponsors")),
        await _admissions(request, v, info, state),
    )


async def _admissions(request: web.Request, v: Viewer, info: LedgerInfo, state: LedgerState) -> Markup:
    """Agents whose admission has sponsors but not enough yet (an invitation's newcomer where the ledger needs
    more sponsors than the inviter, SPEC.md §16.3), with a button for a member who has not sponsored them."""
    need = min(state.rules.validation.accept, len(state.members))
    rows = []
    for agent, sponsorships in state.sponsorships.items():
        entries = [await request.app[STORE].get(cid) for cid in sponsorships]
        sponsors = {state.agent_of(e.author) for e in entries if e is not None}
        button: Child = el("form", csrf_field(v), el("input", type="hidden", name="agent", value=agent),
                           el("button", _("Sponsor"), type="submit"), method="post",
                           action=f"/ledgers/{info.id}/admit", class_="inline") \
            if v.did in state.members and v.did not in sponsors else None
        rows.append(el("tr", el("td", el("code", agent)),
                       el("td", _("{count} of {need} sponsors").format(count=len(sponsors), need=need)),
                       el("td", button)))
    return table((_("Agent"), _("Sponsors"), ""), rows, empty=el("p", _("No admission waits."), class_="muted"))


async def endorse(request: web.Request) -> web.Response:
    v, form = await owner_form(request)
    ledger = await ledger_in_path(request, v)
    check_choices(Endorse, form)

    async def verdict() -> CID:  # as the API: while the ledger catches up, built against its last state
        asked = form_request(Endorse, form)
        entry = await request.app[STORE].get(asked.entry)
        if entry is not None and entry.ledger_id != ledger:  # this ledger's queue names this ledger's contributions
            raise LocalError("not_contribution", f"{asked.entry} is not a contribution in ledger {ledger}")
        return await submit(request, asked)

    return await write_and_say(request, v, verdict,
                               _("Accepted.") if form["verdict"].strip() == "accept" else _("Rejected."),
                               f"/ledgers/{ledger}/queue" + (f"?page={_page_number(form['page'])}"
                                                             if form.get("page") else ""))
