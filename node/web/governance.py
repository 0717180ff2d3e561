"""The dashboard's governance pages of one ledger: motions with ballots and live results, pledges (SPEC.md §18)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from aiohttp import web

from node.governance_views import motion_json, pledge_json, today
from node.store.store import LedgerInfo
from node.web.html import Child, Markup, el, field, table
from node.web.layout import (
    act,
    append,
    csrf_field,
    flash,
    html_response,
    owner_form,
    readable_ledger,
    refused,
    see_other,
    viewer,
    who,
)
from node.web.ledger import ledger_page, pledge_text
from protocol import CID, LocalError, TallyError, governance_ops
from protocol.governance import MotionState
from protocol.rules import parse_rules_toml
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
        raise LocalError("not_found", "no such motion") from None
    for m in state.motions:
        if m.id == wanted:
            return m
    raise LocalError("not_found", f"no motion {wanted} in this ledger")


async def motions(request: web.Request) -> web.Response:
    v = viewer(request)
    info, state = await readable_ledger(request, v)
    rows = []
    for m in sorted(state.motions, key=lambda m: (m.closed, -m.ts)):
        j = motion_json(m)
        status = f"closed: {j['winner']} won" if m.closed else f"open: {j['leading'] or '—'} leads"
        rows.append(el("tr", el("td", el("a", m.motion.title, href=f"/ledgers/{info.id}/motions/{m.id}")),
                       el("td", who(m.author, v.did, state.names)), el("td", ", ".join(m.motion.options)),
                       el("td", j["voters"], class_="num"), el("td", status),
                       el("td", "amends the rules" if m.motion.amend is not None else "")))
    proposal: Child = None
    if v.owner and v.did in state.members:
        proposal = el(
            "form", csrf_field(v),
            el("fieldset",
               el("legend", "Propose a motion"),
               field("Title", "input", type="text", name="title", required=True, maxlength=200),
               field("Options, one per line", "textarea", "yes\nno", name="options", rows=3),
               field("Closes on (optional)", "input", type="date", name="closes"),
               field("Note", "input", type="text", name="note", maxlength=500),
               field("Rules change if the first option wins (optional, TOML as in an amendment file)", "textarea",
                     name="amend", rows=3, placeholder='[rates.work]\nhour = "25"'),
               class_="wide"),
            el("button", "Propose", type="submit"), method="post", action=f"/ledgers/{info.id}/motions",
            class_="propose")
    return ledger_page(
        request, v, info, state, "Motions", "motions", el("h2", "Motions"),
        el("p", "Score voting: give every option a score; the highest total wins (SPEC.md §18).", class_="muted"),
        table(("Motion", "Proposed by", "Options", "Voters", "Status", "Rules"), rows,
              empty=el("p", "No motions yet.", class_="muted"), class_="motions"),
        proposal,
    )


async def propose(request: web.Request) -> web.Response:
    v, form = await owner_form(request)
    info, state = await readable_ledger(request, v)
    options = [line.strip() for line in form.get("options", "").splitlines() if line.strip()]
    amend_text = form.get("amend", "").strip()
    try:
        amend = None
        if amend_text:
            try:
                amend = parse_rules_toml(amend_text)
            except TallyError as exc:
                raise LocalError("bad_amendment", f"the rules change: {exc.message}") from None
        motion_id = await append(request, lambda ts: governance_ops.create_motion(
            state, v.did, title=form.get("title", ""), options=options, ts=ts,
            closes=form.get("closes", "").strip() or None, amend=amend, note=form.get("note", "").strip() or None))
    except TallyError as exc:
        refused(request, exc)
        flash(v, "error", f"{exc.code}: {exc.message}")
        return see_other(f"/ledgers/{info.id}/motions")
    flash(v, "ok", "Your motion is open for votes.")
    return see_other(f"/ledgers/{info.id}/motions/{motion_id}")


def _results(info: LedgerInfo, m: MotionState) -> Markup:
    j = motion_json(m)
    top = max([*j["totals"].values(), 1])
    no_opinion = j["voting"]["blank"] == "no-opinion"
    rows = []
    for option in j["ranking"] or j["options"]:
        total = j["totals"][option]
        lead = option == (j["winner"] if m.closed else j["leading"])
        rows.append(el("tr", el("th", option, " ", el("span", "winner" if m.closed else "leading", class_="badge")
                                                      if lead else None),
                       el("td", el("meter", value=total, min=0, max=top, title=f"{total}"), class_="barcell"),
                       el("td", total, class_="num"),
                       el("td", j["averages"][option] or "—", class_="num") if no_opinion else None,
                       data_option=option))
    state_text = (f"Closed: {j['winner']} won" if m.closed else f"Open: {j['leading'] or 'no one'} leads") + \
        f" · {j['voters']} voter(s)"
    if j["tie_break"]:
        state_text += f" · tie among {', '.join(j['tied'])} broken by {j['tie_break']}"
    if j["amended"] is not None:
        state_text += " · the amendment is in effect" if j["amended"] else " · the amendment is not in effect"
    head = el("tr", el("th", "Option"), el("th", "Bar"), el("th", "Total"), el("th", "Average") if no_opinion else None)
    return el("section", el("p", state_text, class_="result-status"),
              el("table", el("thead", head), el("tbody", rows), class_="results"),
              id="results", data_live=None if m.closed else f"/ledgers/{info.id}/motions/{m.id}/results")


async def motion(request: web.Request) -> web.Response:
    v = viewer(request)
    info, state = await readable_ledger(request, v)
    m = _find_motion(request, state)
    voting = m.voting
    mine = next((b for b in m.counted if b.voter == v.did), None)
    ballot: Child = None
    if v.owner and v.did in state.members and not m.closed:
        ballot = el(
            "form", csrf_field(v),
            el("fieldset", el("legend", f"Your ballot: a score from {voting.min} to {voting.max} for each option"
                                        f" (blank counts as {'no opinion' if voting.blank == 'no-opinion' else 0})"),
               (field(option, "input", type="number", name=f"score:{option}", min=voting.min,
                                       max=voting.max, step=1,
                                       value=None if mine is None or option not in mine.scores
                                       else mine.scores[option])
                for option in m.motion.options)),
            el("button", "Change my ballot" if mine else "Cast my ballot", type="submit"),
            method="post", action=f"/ledgers/{info.id}/motions/{m.id}/vote", class_="ballot")
    closer: Child = None
    if v.owner and m.author == v.did and not m.closed:
        closer = el("form", csrf_field(v), el("button", "Close the vote", type="submit"), method="post",
                    action=f"/ledgers/{info.id}/motions/{m.id}/close", class_="close")
    amend = None if m.motion.amend is None else el(
        "p", "If the first option wins, the ledger's rules change: ",
        el("code", ", ".join(f"{k} = {val}" for k, val in m.motion.amend.to_body().items())))
    closes = motion_json(m)["closes"]
    return ledger_page(
        request, v, info, state, m.motion.title, "motions", el("h2", m.motion.title),
        el("p", "Proposed by ", who(m.author, v.did, state.names), f" · closes {closes}" if closes else "",
           class_="muted"),
        el("p", m.motion.note) if m.motion.note else None, amend,
        _results(info, m), ballot, closer,
    )


async def motion_results(request: web.Request) -> web.Response:
    """The results section alone, for the page's live refresh."""
    v = viewer(request)
    info, state = await readable_ledger(request, v)
    return html_response(_results(info, _find_motion(request, state)))


async def vote(request: web.Request) -> web.Response:
    v, form = await owner_form(request)
    info, state = await readable_ledger(request, v)
    m = _find_motion(request, state)
    scores = {o: form.get(f"score:{o}", "").strip() for o in m.motion.options}
    return await act(request, v, lambda ts: governance_ops.vote(state, v.did, m.id, _scores(scores), ts),
                     "Your ballot is cast: " + ", ".join(f"{o} {s}" for o, s in scores.items() if s) + ".",
                     f"/ledgers/{info.id}/motions/{m.id}")


def _scores(given: dict[str, str]) -> dict[str, int]:
    """The ballot's whole-number scores; an option left empty is blank."""
    scores = {}
    for option, text in given.items():
        if text:
            if not (text.lstrip("-").isdigit() and len(text) < 10):
                raise LocalError("vote_out_of_range", f"the score for {option!r} is not a whole number")
            scores[option] = int(text)
    return scores


async def close(request: web.Request) -> web.Response:
    v, _ = await owner_form(request)
    info, state = await readable_ledger(request, v)
    m = _find_motion(request, state)
    return await act(request, v, lambda ts: governance_ops.close_motion(state, v.did, m.id, ts),
                     "The vote is closed.", f"/ledgers/{info.id}/motions/{m.id}")


# ---- pledges -------------------------------------------------------------------------------


def _periods_summary(j: dict[str, Any]) -> str:
    shown, count = len(j["periods"]), j["period_count"]
    return f"{count} period(s)" if shown == count else f"{count} period(s), the latest {shown} shown"


async def pledges(request: web.Request) -> web.Response:
    v = viewer(request)
    info, state = await readable_ledger(request, v)
    day = today()
    blocks = []
    for p in state.pledges:
        j = pledge_json(p, day)
        periods = el("table", el("thead", el("tr", *(el("th", h) for h in ("Period", "Due", "Paid", "Arrears")))),
                     el("tbody", (el("tr", el("td", r["period"]), el("td", r["due"], class_="num"),
                                     el("td", r["paid"], class_="num"),
                                     el("td", r["arrears"], class_="num" + (" owing" if Decimal(r["arrears"]) > 0
                                                                           else "")))
                                  for r in j["periods"])))
        blocks.append(el("tr", el("td", who(p.author, v.did, state.names)), el("td", pledge_text(j)),
                         el("td", j["due"], class_="num"), el("td", j["paid"], class_="num"),
                         el("td", j["arrears"], class_="num" + (" owing" if Decimal(j["arrears"]) > 0 else "")),
                         el("td", el("details", el("summary", _periods_summary(j)), periods)),
                         data_id=str(p.id)))
    pledge_form: Child = None
    if v.owner and v.did in state.members:
        pledge_form = el(
            "form", csrf_field(v),
            el("fieldset", el("legend", "Pledge to the ledger: a recurring transfer, paid from “Log a contribution”"),
               field("Amount", "input", type="text", name="amount", required=True, inputmode="decimal",
                     placeholder="e.g. 20 or 0.10"),
               field("Unit", "select", (el("option", u, value=u) for u in state.rules.units), name="unit"),
               field("Per (optional: a basis unit, e.g. m2)", "input", type="text", name="per", maxlength=40),
               field("Basis (how many of them)", "input", type="text", name="basis", inputmode="decimal"),
               field("Every", "select", (el("option", e, value=e) for e in ("month", "quarter", "year")),
                     name="every"),
               field("From (month)", "input", type="month", name="start", required=True,
                     value=day.strftime("%Y-%m")),
               field("Until (month, optional)", "input", type="month", name="until"),
               field("Yearly rise (optional: +5%/year, or +0.05 euro/year)", "input", type="text",
                     name="escalate"),
               field("Note", "input", type="text", name="note", maxlength=500)),
            el("button", "Pledge", type="submit"), method="post", action=f"/ledgers/{info.id}/pledges",
            class_="pledge")
    return ledger_page(
        request, v, info, state, "Pledges", "pledges", el("h2", f"Pledges as of {day.isoformat()}"),
        table(("Pledger", "Pledge", "Due", "Paid", "Arrears", "Schedule"), blocks,
              empty=el("p", "No pledges yet.", class_="muted"), class_="pledges"),
        pledge_form,
    )


async def pledge(request: web.Request) -> web.Response:
    v, form = await owner_form(request)
    info, state = await readable_ledger(request, v)
    given = {k: form.get(k, "").strip() for k in ("amount", "unit", "per", "basis", "every", "start", "until",
                                                   "escalate", "note")}
    return await act(request, v, lambda ts: governance_ops.pledge(
        state, v.did, amount=given["amount"], unit=given["unit"], every=given["every"], start=given["start"], ts=ts,
        per=given["per"] or None, basis=given["basis"] or None, until=given["until"] or None,
        escalate=given["escalate"] or None, note=given["note"] or None),
        f"You pledged {given['amount']} {given['unit']} every {given['every']}.", f"/ledgers/{info.id}/pledges")
