"""The dashboard's governance pages of one ledger: motions with ballots and live results, pledges (SPEC.md §18)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, tzinfo
from decimal import Decimal
from typing import Any

from aiohttp import web

from node.governance_views import motion_json, pledge_json, today
from node.http.context import CONFIG
from node.ledger_views import ledger_zone
from node.store.rows import LedgerInfo
from node.web.forms import form_request
from node.web.html import Child, Markup, el, field, table
from node.web.i18n import _, day, moment, number, read_decimal
from node.web.layout import (
    act,
    amendment_text,
    append,
    csrf_field,
    flash,
    html_response,
    money_unit,
    owner_form,
    readable_ledger,
    refused,
    see_other,
    short,
    shown_ledger,
    viewer,
    who,
)
from node.web.ledger import ledger_page, pledge_text
from protocol import CID, LocalError, TallyError
from protocol.governance import MotionState
from protocol.requests import MotionClose, MotionCreate, PledgeCreate, Vote
from protocol.state import LedgerState


def add_governance_pages(app: web.Application) -> None:
    base = "/ledgers/{ledger}"
    app.router.add_get(f"{base}/motions", motions)
    app.router.add_post(f"{base}/motions", propose)
    app.router.add_get(f"{base}/motions/{{motion}}", motion)
    app.router.add_get(f"{base}/motions/{{motion}}/results", motion_results)
    app.router.add_post(f"{base}/motions/{{motion}}/vote", vote)
    app.router.add_post(f"{base}/motions/{{motion}}/close", close)
    app.router.add_get(f"{base}/pledges", pledges)
    app.router.add_post(f"{base}/pledges", pledge)


# ---- motions -----------------------------------------------------------------------------


def _find_motion(request: web.Request, state: LedgerState) -> MotionState:
    try:
        wanted = CID.parse(request.match_info["motion"])
    except TallyError:
        raise LocalError("not_found", _("no such motion")) from None
    for m in state.motions:
        if m.id == wanted:
            return m
    raise LocalError("not_found", _("no motion {motion} in this ledger").format(motion=wanted))


async def motions(request: web.Request, values: dict[str, str] | None = None,
                  problem: TallyError | None = None) -> web.Response:
    """The motions, and the form to propose one (which, refused, keeps what was typed and says what to fix)."""
    v = viewer(request)
    info, state = await shown_ledger(request, v)
    values = values or {}
    rows = []
    for m in sorted(state.motions, key=lambda m: (m.closed, -m.ts)):
        j = motion_json(m)
        status = (_("closed: {option} won").format(option=j["winner"]) if m.closed else
                  _("open: {option} leads").format(option=j["leading"] or "—"))
        if m.closed_early:
            status += " · " + _("closed early")
        rows.append(el("tr", el("td", el("a", m.motion.title, href=f"/ledgers/{info.id}/motions/{m.id}")),
                       el("td", who(m.author, v.did, state.names)), el("td", ", ".join(m.motion.options)),
                       el("td", number(j["voters"]), class_="num"), el("td", status),
                       el("td", _("amends the rules") if m.motion.amend is not None else "")))
    proposal: Child = None
    if v.owner and v.did in state.members:
        error: Child = None if problem is None else el(
            "p", el("code", problem.code), ": ", problem.message, " ",
            _("What you typed is kept below: fix it and propose again."), class_="flash error", role="alert")
        proposal = el(
            "form", csrf_field(v), error,
            el("fieldset",
               el("legend", _("Propose a motion")),
               field(_("Title"), "input", type="text", name="title", required=True,
                     maxlength=MotionCreate.field("title").spec.max_chars,
                     value=values.get("title", "")),
               field(_("Options, one per line"), "textarea", values.get("options", "yes\nno"), name="options",
                     rows=3),
               field((_("Closes on (optional): the vote ends as that day begins, {zone} time; nobody can close "
                        "it before then") if state.rules.version > 1 else
                      _("Closes on (optional): the vote ends as that day begins, {zone} time; before then only you "
                        "can close it, and every member sees it was early")).format(
                          zone=state.rules.timezone or "UTC"), "input", type="date",
                     name="closes", value=values.get("closes", "")),
               field(_("Note"), "input", type="text", name="note", maxlength=500, value=values.get("note", "")),
               field(_("Rules change if the first option wins (optional, TOML as in an amendment file)"),
                     "textarea", values.get("amend", ""), name="amend", rows=3,
                     placeholder='[rates.work]\nhour = "25"'),
               class_="wide"),
            el("button", _("Propose"), type="submit"), method="post", action=f"/ledgers/{info.id}/motions",
            class_="propose")
    return ledger_page(
        request, v, info, state, _("Motions"), "motions", el("h2", _("Motions")),
        el("p", _("Score voting: give every option a score; the highest total wins."), class_="muted"),
        table((_("Motion"), _("Proposed by"), _("Options"), _("Voters"), _("Status"), _("Rules")), rows,
              empty=el("p", _("No motions yet."), class_="muted"), class_="motions"),
        proposal,  # a refused proposal's page is 200: the page is fine, its alert says what to fix
    )


async def propose(request: web.Request) -> web.Response:
    v, form = await owner_form(request)
    info, state = await readable_ledger(request, v)
    typed = {k: form.get(k, "") for k in ("title", "options", "closes", "note", "amend")}
    try:
        proposal = form_request(MotionCreate, form, ledger=info.id)
        if proposal.closes is not None:  # the form's "Closes on" is a day, which begins in the ledger's zone
            proposal = replace(proposal, closes=_day_begins(proposal.closes, state))
        motion_id = await append(request, lambda ts: proposal.build(state, v.did, ts))
    except TallyError as exc:
        refused(request, exc)
        return await motions(request, typed, exc)
    flash(v, "ok", _("Your motion is open for votes."))
    return see_other(f"/ledgers/{info.id}/motions/{motion_id}")


def _day_begins(text: str, state: LedgerState) -> str:
    """A "Closes on" day as the moment it begins in the ledger's time zone (SPEC.md §14), written with its
    offset ("2027-03-01T00:00:00+01:00"); a bare date in the entry would be midnight UTC. Other text as typed
    (the protocol says what is wrong with it)."""
    zone = ledger_zone(state.rules)
    try:
        day_ = date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        day_ = None
    if day_ is None or zone is UTC:
        return text
    return datetime.combine(day_, time(0), zone).isoformat()


def _results(info: LedgerInfo, m: MotionState) -> Markup:
    j = motion_json(m)
    top = max([*j["totals"].values(), 1])
    no_opinion = j["voting"]["blank"] == "no-opinion"
    rows = []
    for option in j["ranking"] or j["options"]:
        total = j["totals"][option]
        lead = option == (j["winner"] if m.closed else j["leading"])
        rows.append(el("tr", el("th", option, " ", el("span", _("winner") if m.closed else _("leading"),
                                                      class_="badge") if lead else None),
                       el("td", el("meter", value=total, min=0, max=top, title=f"{total}"), class_="barcell"),
                       el("td", total, class_="num"),
                       el("td", number(j["averages"][option]) if j["averages"][option] else "—", class_="num")
                       if no_opinion else None,
                       data_option=option))
    state_text = (_("Closed: {option} won").format(option=j["winner"]) if m.closed else
                  _("Open: {option} leads").format(option=j["leading"] or _("no one")))
    state_text += " · " + _("{count} voter(s)").format(count=j["voters"])
    if j["tie_break"]:
        state_text += " · " + _("tie among {options} broken by {rule}").format(options=", ".join(j["tied"]),
                                                                             rule=j["tie_break"])
    if j["amended"] is not None:
        state_text += " · " + (_("the amendment is in effect") if j["amended"] else
                               _("the amendment is not in effect"))
    head = el("tr", el("th", _("Option")), el("th", _("Bar")), el("th", _("Total")),
              el("th", _("Average")) if no_opinion else None)
    return el("section", el("p", state_text, class_="result-status"),
              el("table", el("thead", head), el("tbody", rows), class_="results"),
              id="results", data_live=None if m.closed else f"/ledgers/{info.id}/motions/{m.id}/results")


async def motion(request: web.Request) -> web.Response:
    v = viewer(request)
    info, state = await shown_ledger(request, v)
    m = _find_motion(request, state)
    voting = m.voting
    mine = next((b for b in m.counted if b.voter == v.did), None)
    ballot: Child = None
    if v.owner and v.did in state.members and not m.closed:
        ballot = el(
            "form", csrf_field(v),
            el("fieldset", el("legend", (_("Your ballot: a score from {min} to {max} for each option (blank counts as "
                                           "no opinion)") if voting.blank == "no-opinion" else
                                         _("Your ballot: a score from {min} to {max} for each option (blank counts "
                                           "as {min})")).format(min=voting.min, max=voting.max)),
               (field(option, "input", type="number", name=f"score:{option}", min=voting.min,
                                       max=voting.max, step=1,
                                       value=None if mine is None or option not in mine.scores
                                       else mine.scores[option])
                for option in m.motion.options)),
            el("button", _("Change my ballot") if mine else _("Cast my ballot"), type="submit"),
            method="post", action=f"/ledgers/{info.id}/motions/{m.id}/vote", class_="ballot")
    closer: Child = None
    closes = m.motion.closes
    zone = ledger_zone(state.rules)
    now = request.app[CONFIG].wall_ms()
    timed = state.rules.version > 1  # SPEC §18.1: the closing time binds the proposer too
    may_close = v.owner and v.did in state.members and not m.closed and (
        (closes is not None and now >= closes) or (m.author == v.did and (closes is None or not timed)))
    if may_close:
        early = closes is not None and now < closes  # only a version 1 proposer gets here (SPEC §18.1)
        told: Child = _before_closing(state, m, v.did, now, zone) if early or closes is None else None
        closer = el("form", csrf_field(v), told,
                    el("label", el("input", type="checkbox", name="confirm", value="early" if early else "yes",
                                   required=True), " ",
                       _("I am sure: close the vote early; the count is final") if early else
                       _("I am sure: the count is final once the vote is closed")),
                    el("button", _("Close the vote"), type="submit"), method="post",
                    action=f"/ledgers/{info.id}/motions/{m.id}/close", class_="close")
    elif not m.closed and closes is not None and timed:
        closer = el("p", _("The vote closes at {time}; nobody can close it earlier.").format(
            time=moment(closes, zone)),
                    class_="muted")
    elif m.closed and m.closed_by is not None and m.closed_at is not None:
        closer = el("p", _("Closed by {name} at {time}.").format(name=short(m.closed_by, v.did, state.names),
                                                                time=moment(m.closed_at, zone)),
                    " ", _early_text(m, zone) if m.closed_early else None,
                    class_="flash warning" if m.closed_early else "muted", role="note" if m.closed_early else None)
    amend = None if m.motion.amend is None else el(
        "p", _("If the first option wins, the ledger's rules change:"), " ",
        amendment_text(m.motion.amend.to_body()))
    return ledger_page(
        request, v, info, state, m.motion.title, "motions", el("h2", m.motion.title),
        el("p", _("Proposed by"), " ", who(m.author, v.did, state.names),
           " · " + _("closes {time}").format(time=moment(closes, zone)) if closes is not None else "",
           class_="muted"),
        el("p", m.motion.note) if m.motion.note else None, amend,
        _results(info, m), ballot, closer,
    )


def _days_before(m: MotionState, at: int) -> int:
    closes = m.motion.closes or at
    return max(1, round((closes - at) / 86_400_000))  # whole days, the nearest (the exact time is shown too)


def _early_text(m: MotionState, zone: tzinfo) -> str:
    assert m.closed_at is not None and m.motion.closes is not None
    return _("It was closed early: {days} day(s) before {time}, when the members were told the vote ends.").format(
        days=_days_before(m, m.closed_at), time=moment(m.motion.closes, zone))


def _before_closing(state: LedgerState, m: MotionState, me: str, now: int, zone: tzinfo) -> Markup:
    """What the proposer should know before closing a vote before its time: who has not voted yet, and that
    every member will see it was closed early."""
    voted = {b.voter for b in m.counted}
    missing = [short(d, me, state.names) for d in state.members if d not in voted]
    lines = [_("{voted} of {members} members have voted.").format(voted=len(voted & set(state.members)),
                                                                  members=len(state.members))]
    if missing:
        lines.append(_("Not yet: {names}.").format(names=", ".join(missing)))
    if m.motion.closes is not None:
        lines.insert(0, _("You would close it {days} day(s) before {time}, when the members were told it ends; "
                          "every member's node will show that you closed it early.").format(
            days=_days_before(m, now), time=moment(m.motion.closes, zone)))
    return el("p", " ".join(lines), class_="flash warning", role="note")


async def motion_results(request: web.Request) -> web.Response:
    """The results section alone, for the page's live refresh."""
    v = viewer(request)
    info, state = await shown_ledger(request, v)
    return html_response(_results(info, _find_motion(request, state)))


async def vote(request: web.Request) -> web.Response:
    v, form = await owner_form(request)
    info, state = await readable_ledger(request, v)
    m = _find_motion(request, state)
    scores = {o: form.get(f"score:{o}", "").strip() for o in m.motion.options}  # as typed, for the flash
    return await act(request, v, lambda ts: form_request(Vote, form, motion=m.id).build(state, v.did, ts),
                     _("Your ballot is cast: {scores}.").format(
                         scores=", ".join(f"{o} {s}" for o, s in scores.items() if s)),
                     f"/ledgers/{info.id}/motions/{m.id}")


async def close(request: web.Request) -> web.Response:
    v, form = await owner_form(request)
    info, state = await readable_ledger(request, v)
    m = _find_motion(request, state)
    confirm = form.get("confirm")
    if confirm not in ("yes", "early"):
        raise LocalError("bad_request", _("tick the box to confirm that the vote closes now"))
    # "early" only from the form that said the vote closes before its time (and who has not voted)
    return await act(request, v, lambda ts: form_request(MotionClose, form, motion=m.id).build(state, v.did, ts),
                     _("The vote is closed."), f"/ledgers/{info.id}/motions/{m.id}")


# ---- pledges -------------------------------------------------------------------------------


def _periods_summary(j: dict[str, Any]) -> str:
    shown, count = len(j["periods"]), j["period_count"]
    if shown == count:
        return _("{count} period(s)").format(count=count)
    return _("{count} period(s), the latest {shown} shown").format(count=count, shown=shown)


async def pledges(request: web.Request) -> web.Response:
    v = viewer(request)
    info, state = await shown_ledger(request, v)
    as_of = today()
    blocks = []
    for p in state.pledges:
        j = pledge_json(p, as_of)
        periods = el("table", el("thead", el("tr", *(el("th", h) for h in (_("Period"), _("Due"), _("Paid"),
                                                                           _("Arrears"))))),
                     el("tbody", (el("tr", el("td", r["period"]), el("td", number(r["due"]), class_="num"),
                                     el("td", number(r["paid"]), class_="num"),
                                     el("td", number(r["arrears"]),
                                        class_="num" + (" owing" if Decimal(r["arrears"]) > 0 else "")))
                                  for r in j["periods"])))
        blocks.append(el("tr", el("td", who(p.author, v.did, state.names)), el("td", pledge_text(j)),
                         el("td", number(j["due"]), class_="num"), el("td", number(j["paid"]), class_="num"),
                         el("td", number(j["arrears"]),
                            class_="num" + (" owing" if Decimal(j["arrears"]) > 0 else "")),
                         el("td", el("details", el("summary", _periods_summary(j)), periods)),
                         data_id=str(p.id)))
    money = money_unit(state)
    pledge_form: Child = None
    if v.owner and v.did in state.members:
        pledge_form = el(
            "form", csrf_field(v),
            el("fieldset", el("legend", _("Pledge to the ledger: a recurring transfer, paid from “Log a "
                                          "contribution”")),
               field(_("Amount"), "input", type="text", name="amount", required=True, inputmode="decimal",
                     placeholder=_("e.g. {example}").format(example=number("20") + " / " + number("0.10"))),
               field(_("Unit"), "select", (el("option", u, value=u, selected=u == money) for u in state.rules.units),
                     name="unit"),
               field(_("Per (optional: a basis unit, e.g. m2)"), "input", type="text", name="per", maxlength=40),
               field(_("Basis (how many of them)"), "input", type="text", name="basis", inputmode="decimal"),
               field(_("Every"), "select", (el("option", label, value=e) for e, label in (
                   ("month", _("month")), ("quarter", _("quarter")), ("year", _("year")))), name="every"),
               field(_("From (month)"), "input", type="month", name="start", required=True,
                     value=as_of.strftime("%Y-%m")),
               field(_("Until (month, optional)"), "input", type="month", name="until"),
               field(_("Yearly rise (optional: +5%/year, or +0.05 euro/year)"), "input", type="text",
                     name="escalate"),
               field(_("Note"), "input", type="text", name="note", maxlength=500)),
            el("button", _("Pledge"), type="submit"), method="post", action=f"/ledgers/{info.id}/pledges",
            class_="pledge")
    return ledger_page(
        request, v, info, state, _("Pledges"), "pledges", el("h2", _("Pledges as of {day}").format(day=day(as_of))),
        table((_("Pledger"), _("Pledge"), _("Due"), _("Paid"), _("Arrears"), _("Schedule")), blocks,
              empty=el("p", _("No pledges yet."), class_="muted"), class_="pledges"),
        pledge_form,
    )


async def pledge(request: web.Request) -> web.Response:
    v, form = await owner_form(request)
    info, state = await readable_ledger(request, v)
    given = {k: form.get(k, "").strip() for k in ("amount", "unit", "every")}
    return await act(request, v, lambda ts: form_request(PledgeCreate, form, ledger=info.id).build(state, v.did, ts),
                     _("You pledged {amount} {unit} every {every}.").format(
                         amount=read_decimal(given["amount"]), unit=given["unit"], every=given["every"]),
                     f"/ledgers/{info.id}/pledges")
