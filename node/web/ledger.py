"""The dashboard's pages of one ledger: overview and charts, history, the contribution form, the
validation queue (its motions and pledges: node/web/governance.py)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from aiohttp import web

from node.governance_views import pledge_json, today
from node.ledger_views import HistoryQuery, event_time
from node.store.store import LedgerInfo
from node.web.charts import share_bars, stacked_bars
from node.web.html import Child, Markup, el, field, table
from node.web.layout import (
    Viewer,
    act,
    append,
    csrf_field,
    flash,
    owner_form,
    page,
    readable_ledger,
    refused,
    see_other,
    short,
    viewer,
    who,
)
from protocol import CID, LocalError, TallyError, ledger_ops
from protocol.rules import ACTIONS, format_decimal
from protocol.state import CORRECTED, FINAL, PENDING, REJECTED, Contribution, LedgerState

PAGE_ROWS: Final = 25  # contributions per history page
CHART_WEEKS: Final = 26  # the overview's charts show at most the last half year


def add_ledger_pages(app: web.Application) -> None:
    base = "/ledgers/{ledger}"
    app.router.add_get(base, overview)
    app.router.add_get(f"{base}/history", history)
    app.router.add_post(f"{base}/name", name)
    app.router.add_post(f"{base}/admit", admit)
    app.router.add_get(f"{base}/contribute", contribute_form)
    app.router.add_post(f"{base}/contribute", contribute)
    app.router.add_get(f"{base}/queue", queue)
    app.router.add_post(f"{base}/endorse", endorse)


def _waiting_for(state: LedgerState, me: str) -> list[Contribution]:
    """Pending contributions of others that have no verdict of mine yet."""
    if me not in state.members:
        return []
    return [c for c in state.contributions
            if c.status == PENDING and c.author != me and me not in c.accepts and me not in c.rejects]


def ledger_page(request: web.Request, v: Viewer, info: LedgerInfo, state: LedgerState, title: str, tab: str,
                 *content: Child, status: int = 200) -> web.Response:
    pending = len(_waiting_for(state, v.did)) if v.owner else 0
    return page(request, v, f"{title} · {info.name}", *content, ledger=info, tab=tab, status=status,
                pending=pending)


def _status(c: Contribution) -> Markup:
    return el("span", c.status, class_=f"status {c.status}")


def _day(c: Contribution) -> str:
    return datetime.fromtimestamp(event_time(c), UTC).strftime("%Y-%m-%d")


def _quantity(c: Contribution) -> str:
    return f"{format_decimal(c.event.quantity.value)} {c.event.quantity.unit}"


# ---- overview and charts ------------------------------------------------------------


def _week(c: Contribution) -> date:
    day = datetime.fromtimestamp(event_time(c), UTC).date()
    return day - timedelta(days=day.weekday())  # weeks start on Monday (ISO 8601)


def _charted(state: LedgerState) -> tuple[list[Contribution], str, Callable[[Contribution], float]]:
    """The contributions the charts count (final and pending), and what a bar measures: their claim value
    under the ledger's rates, or (when no rate applies to any) how many there are."""
    counted = [c for c in state.contributions if c.status in (FINAL, PENDING)]
    if any(c.claim > 0 for c in counted):
        return counted, "claim value", lambda c: float(c.claim)
    return counted, "contributions", lambda c: 1.0


def _over_time(counted: Sequence[Contribution], key: Callable[[Contribution], str],
               measure: Callable[[Contribution], float]) -> tuple[list[str], dict[str, list[float]]]:
    if not counted:
        return [], {}
    last = max(_week(c) for c in counted)
    first = max(min(_week(c) for c in counted), last - timedelta(weeks=CHART_WEEKS - 1))
    weeks = []
    week = first
    while week <= last:
        weeks.append(week)
        week += timedelta(weeks=1)
    index = {w: i for i, w in enumerate(weeks)}
    series: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(weeks))
    for c in counted:
        i = index.get(_week(c))
        if i is not None:
            series[key(c)][i] += measure(c)
    ordered = dict(sorted(series.items(), key=lambda kv: -sum(kv[1])))
    return [w.isoformat() for w in weeks], ordered


def _labels(state: LedgerState, me: str) -> dict[str, str]:
    names = {did: short(did, me, state.names) for did in (*state.members, *state.left)}
    names[str(state.ledger)] = "the ledger (common fund)"
    return names


def _distribution_chart(state: LedgerState, me: str) -> Child:
    if not state.distributions:
        return el("p", "No distribution has been recorded yet.", class_="muted")
    latest = max(state.distributions, key=lambda d: (d.ts, d.id.raw))
    shares: dict[str, Decimal] = defaultdict(Decimal)
    for line in latest.payout.lines:
        shares[line.recipient] += line.amount
    rows = [(r, float(a), f"{a:f}") for r, a in sorted(shares.items(), key=lambda kv: (-kv[1], kv[0]))]
    p = latest.payout
    period = f" for {p.since or '…'} to {p.until or '…'}" if p.since or p.until else ""
    title = f"Latest distribution: {p.amount:f} {p.unit}{period}, recorded {_date(latest.ts)}"
    return share_bars(title, rows, p.unit, _labels(state, me))


def _date(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


async def overview(request: web.Request) -> web.Response:
    v = viewer(request)
    info, state = await readable_ledger(request, v)
    me = v.did
    counted, measure_name, measure = _charted(state)
    labels = _labels(state, me)
    periods, by_member = _over_time(counted, lambda c: c.event.provider or c.author, measure)
    _, by_action = _over_time(counted, lambda c: c.event.action, measure)
    charts: list[Child] = [el("p", "No contributions to chart yet.", class_="muted")] if not periods else [
        stacked_bars("Contributions per week, per member", periods, by_member, measure_name, labels),
        stacked_bars("Contributions per week, per action", periods, by_action, measure_name),
    ]
    totals = state.totals()
    member_rows = [
        el("tr", el("td", who(m, me, state.names)),
           el("td", "; ".join(f"{a}: " + ", ".join(f"{format_decimal(q)} {u}" for u, q in units.items())
                              for a, units in totals[m].quantities.items()) if m in totals else ""),
           el("td", format_decimal(totals[m].claim) if m in totals else "0", class_="num"))
        for m in state.members
    ]
    rules = state.rules
    rates = "; ".join(f"{a}: " + ", ".join(f"{format_decimal(r)} per {u}" for u, r in units.items())
                      for a, units in sorted(rules.rates.items()))
    about = el("dl", el("dt", "Ledger id"), el("dd", el("code", str(info.id))),
               el("dt", "Founded by"), el("dd", who(info.founder, me, state.names)),
               el("dt", "Rates"), el("dd", rates or "none"),
               el("dt", "Validation"), el("dd", f"{rules.validation.accept} accept(s) make a contribution final, "
                                                f"{rules.validation.reject} reject(s) reject it"),
               el("dt", "State digest"), el("dd", el("code", state.digest.hex()[:16] + "…",
                                                      title=state.digest.hex(), class_="digest")),
               class_="card")
    member_forms: Child = None
    if v.owner and me in state.members:
        member_forms = el("form", csrf_field(v),
                    field("Your name in this ledger (the other members see it)", "input", type="text", name="name",
                          maxlength=80, required=True, value=state.names.get(me, "")),
                    el("button", "Save", type="submit"), method="post", action=f"/ledgers/{info.id}/name",
                    class_="filters naming")
        member_forms = el("div", member_forms, el(
            "form", csrf_field(v),
            field("Admit a member: their did:key (`tally id` on their node prints it)", "input", type="text",
                  name="agent", required=True, pattern="did:key:z[1-9A-HJ-NP-Za-km-z]+", size=60),
            el("button", "Sponsor their admission", type="submit"), method="post",
            action=f"/ledgers/{info.id}/admit", class_="filters admit"))
    return ledger_page(
        request, v, info, state, "Overview", "overview", about, member_forms,
        el("section", el("h2", "Contributions over time"),
           el("p", f"Final and pending contributions, by week; bars measure {measure_name}.", class_="muted"),
           *charts, class_="charts"),
        el("section", el("h2", "Shares"), _distribution_chart(state, me), class_="charts"),
        el("section", el("h2", f"Members ({len(state.members)})"),
           el("table", el("thead", el("tr", el("th", "Member"), el("th", "Final contributions"),
                                      el("th", "Claim value"))), el("tbody", member_rows), class_="members")),
    )


async def name(request: web.Request) -> web.Response:
    v, form = await owner_form(request)
    info, state = await readable_ledger(request, v)
    given = form.get("name", "")
    return await act(request, v, lambda ts: ledger_ops.about(state, v.did, given, ts),
                     f"The other members now see you as {given.strip()}.", f"/ledgers/{info.id}")


async def admit(request: web.Request) -> web.Response:
    v, form = await owner_form(request)
    info, state = await readable_ledger(request, v)
    agent = form.get("agent", "").strip()
    return await act(request, v, lambda ts: ledger_ops.admit(state, v.did, agent, ts),
                     f"You sponsored {agent}'s admission; they follow the ledger with `tally follow {info.id}`.",
                     f"/ledgers/{info.id}")


# ---- history ---------------------------------------------------------------------------


def _page_number(text: str | None) -> int:
    if text is None or not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 1_000_000:
        return 1
    return int(text)


async def history(request: web.Request) -> web.Response:
    v = viewer(request)
    info, state = await readable_ledger(request, v)
    me = v.did
    given = {k: request.query.get(k, "").strip() for k in ("agent", "action", "since", "until", "status")}
    problem: Child = None
    try:
        rows = HistoryQuery(**{k: val for k, val in given.items() if val}).select(state)
    except TallyError as exc:
        problem = el("p", el("code", exc.code), ": ", exc.message, class_="flash error", role="alert")
        rows = []
    rows.reverse()  # newest first
    pages = max(1, -(-len(rows) // PAGE_ROWS))
    number = min(_page_number(request.query.get("page")), pages)
    shown = rows[(number - 1) * PAGE_ROWS: number * PAGE_ROWS]
    labels = _labels(state, me)

    def option(value: str, label: str, current: str) -> Markup:
        return el("option", label, value=value, selected=value == current)

    people = sorted({*state.members, *state.left, *(c.author for c in state.contributions)})
    filters = el(
        "form",
        field("Member", "select", option("", "anyone", given["agent"]),
                                 (option(d, labels.get(d, short(d, me, state.names)), given["agent"]) for d in people),
                                 name="agent"),
        field("Action", "select", option("", "any", given["action"]),
                                 (option(a, a, given["action"]) for a in sorted(ACTIONS)), name="action"),
        field("From", "input", type="date", name="since", value=given["since"]),
        field("Until", "input", type="date", name="until", value=given["until"]),
        field("Status", "select", option("", "any", given["status"]),
                                 (option(s, s, given["status"]) for s in (PENDING, FINAL, REJECTED)),
                                 name="status"),
        el("button", "Filter", type="submit"), el("a", "Clear", href=f"/ledgers/{info.id}/history"),
        method="get", class_="filters",
    )
    table_rows = [
        el("tr", el("td", _day(c)), el("td", who(c.event.provider or c.author, me, state.names)),
           el("td", c.event.action),
           el("td", _quantity(c), class_="num"), el("td", format_decimal(c.claim), class_="num"),
           el("td", c.event.note or ""), el("td", _status(c)),
           el("td", f"{len(c.accepts)} ✓ {len(c.rejects)} ✗", title="accepts and rejects"),
           el("td", el("a", "correct", href=f"/ledgers/{info.id}/contribute?corrects={c.id}")
              if v.owner and c.author == me and c.status != CORRECTED and me in state.members else None),
           data_id=str(c.id))
        for c in shown
    ]
    query = "&".join(f"{k}={val}" for k, val in given.items() if val)

    def link(n: int, text: str) -> Markup:
        return el("a", text, href=f"?{query}&page={n}" if query else f"?page={n}")

    pager = el("nav", link(number - 1, "← newer") if number > 1 else None,
               el("span", f"page {number} of {pages} · {len(rows)} contribution(s)"),
               link(number + 1, "older →") if number < pages else None, class_="pager", aria_label="Pages")
    listing = table(("When", "Who", "Action", "Quantity", "Claim", "Note", "Status", "Verdicts", "Change"), table_rows,
                    empty=el("p", "No contributions match."), class_="history")
    return ledger_page(request, v, info, state, "History", "history", filters, problem, listing, pager)


# ---- logging a contribution -----------------------------------------------------------


def _contribution_fields(state: LedgerState, me: str, values: dict[str, str]) -> Markup:
    mine = [p for p in state.pledges if p.author == me]
    rated = sorted(state.rules.rates)
    others = sorted(ACTIONS - set(rated))
    chosen = values.get("action", rated[0] if rated else "work")
    unit = values.get("unit", state.rules.units[0] if state.rules.units else "")
    return el(
        "fieldset",
        field("What you did", "select", el("optgroup", (el("option", a, value=a, selected=a == chosen)
                                                               for a in rated), label="with a rate"),
                                       el("optgroup", (el("option", a, value=a, selected=a == chosen)
                                                       for a in others), label="other actions"),
                                       name="action", required=True),
        field("How much", "input", type="text", name="quantity", inputmode="decimal", required=True,
                                   pattern=r"[0-9]+(\.[0-9]+)?", value=values.get("quantity", ""),
                                   placeholder="e.g. 3.5"),
        field("Unit", "select", (el("option", u, value=u, selected=u == unit) for u in state.rules.units),
                               name="unit"),
        field("On", "input", type="date", name="at", value=values.get("at", datetime.now(UTC).date()
                                                                               .isoformat())),
        field("Note", "input", type="text", name="note", maxlength=500, value=values.get("note", ""),
                               placeholder="what it was"),
        field("Pays my pledge (a transfer to the ledger)", "select", el("option", "—", value=""),
              (el("option", pledge_text(pledge_json(p, today())), value=str(p.id),
                  selected=values.get("fulfills") == str(p.id)) for p in mine), name="fulfills")
        if mine else None,
    )


def pledge_text(j: dict[str, Any]) -> str:
    rate = f"{j['amount']} {j['unit']}" + (f" per {j['per']} × {j['basis']}" if j["per"] else "")
    return f"{rate} every {j['every']} from {j['start']}" + (f" until {j['until']}" if j["until"] else "")


async def contribute_form(request: web.Request, values: dict[str, str] | None = None,
                          problem: TallyError | None = None) -> web.Response:
    v = viewer(request)
    info, state = await readable_ledger(request, v)
    if not v.owner:
        raise LocalError("unauthorized", "only the node's owner logs contributions; log in with `tally open`")
    values = dict(values or {})
    corrected = _own_contribution(state, v.did, values.get("corrects") or request.query.get("corrects", ""))
    if corrected is not None and "action" not in values:  # the form starts from the contribution it corrects
        e = corrected.event
        values.update(action=e.action, quantity=format_decimal(e.quantity.value), unit=e.quantity.unit,
                      at=(e.point or e.beginning or _day(corrected))[:10], note=e.note or "")
    title = "Correct a contribution" if corrected is not None else "Log a contribution"
    if v.did not in state.members:
        body: Child = el("p", "You are not a member of this ledger, so you cannot log contributions in it.",
                         class_="card")
    else:
        body = el("form", csrf_field(v), _contribution_fields(state, v.did, values),
                  None if corrected is None else el("input", type="hidden", name="corrects", value=str(corrected.id)),
                  el("button", "Save the correction" if corrected is not None else "Log it", type="submit"),
                  method="post", action=f"/ledgers/{info.id}/contribute", class_="contribute")
    error: Child = None if problem is None else el("p", el("code", problem.code), ": ", problem.message,
                                                   class_="flash error", role="alert")
    explain = ("The correction replaces it (every member's node shows the latest version) and waits for "
               "validation again." if corrected is not None else
               "It is signed by this node and waits for the other members' validation.")
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
    info, state = await readable_ledger(request, v)
    values = {k: form.get(k, "").strip()
              for k in ("action", "quantity", "unit", "at", "note", "fulfills", "corrects")}
    try:
        fulfills = CID.parse(values["fulfills"]) if values["fulfills"] else None
        corrects = CID.parse(values["corrects"]) if values["corrects"] else None
        await append(request, lambda ts: ledger_ops.contribute(
            state, v.did, action=values["action"], quantity=values["quantity"], unit=values["unit"], ts=ts,
            at=values["at"] or None, note=values["note"] or None, fulfills=fulfills, corrects=corrects))
    except TallyError as exc:
        refused(request, exc)
        return await contribute_form(request, values, exc)
    done = "Corrected" if values["corrects"] else "Logged"
    flash(v, "ok", f"{done}: {values['action']} {values['quantity']} {values['unit']}. It waits for validation.")
    return see_other(f"/ledgers/{info.id}/history")


# ---- validation queue ------------------------------------------------------------------


async def queue(request: web.Request) -> web.Response:
    v = viewer(request)
    info, state = await readable_ledger(request, v)
    if not v.owner:
        raise LocalError("unauthorized", "only the node's owner validates; log in with `tally open`")
    me = v.did
    waiting = _waiting_for(state, me)
    need = state.rules.validation.accept

    def verdicts(c: Contribution) -> Markup:
        return el("form", csrf_field(v), el("input", type="hidden", name="entry", value=str(c.id)),
                  el("input", type="text", name="note", placeholder="note (optional)", maxlength=500),
                  el("button", "Accept", type="submit", name="verdict", value="accept", class_="accept"),
                  el("button", "Reject", type="submit", name="verdict", value="reject", class_="reject"),
                  method="post", action=f"/ledgers/{info.id}/endorse", class_="verdict")

    rows = [el("tr", el("td", _day(c)), el("td", who(c.event.provider or c.author, me, state.names)),
               el("td", c.event.action),
               el("td", _quantity(c), class_="num"), el("td", c.event.note or ""),
               el("td", f"{len(c.accepts)} of {need}"), el("td", verdicts(c)), data_id=str(c.id))
            for c in waiting]
    mine = [c for c in state.contributions if c.status == PENDING and c.author == me]
    mine_rows = [el("tr", el("td", _day(c)), el("td", c.event.action), el("td", _quantity(c), class_="num"),
                    el("td", c.event.note or ""), el("td", f"{len(c.accepts)} of {need} accepts"))
                 for c in mine]
    return ledger_page(
        request, v, info, state, "Validation queue", "queue",
        el("h2", "Waiting for your verdict"),
        table(("When", "Who", "Action", "Quantity", "Note", "Accepts", "Your verdict"), rows,
              empty=el("p", "Nothing waits for you.", class_="muted"), class_="queue"),
        el("h2", "Yours, waiting for others"),
        table(("When", "Action", "Quantity", "Note", "Status"), mine_rows, empty=el("p", "None.", class_="muted")),
    )


async def endorse(request: web.Request) -> web.Response:
    v, form = await owner_form(request)
    info, state = await readable_ledger(request, v)
    verdict = form.get("verdict", "")
    if verdict not in ("accept", "reject"):
        raise LocalError("bad_request", 'verdict is "accept" or "reject"')
    note = form.get("note", "").strip() or None
    return await act(request, v, lambda ts: ledger_ops.endorse(
        state, v.did, CID.parse(form.get("entry", "").strip()), accept=verdict == "accept", note=note, ts=ts),
        "Accepted." if verdict == "accept" else "Rejected.", f"/ledgers/{info.id}/queue")
