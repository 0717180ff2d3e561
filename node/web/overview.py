"""The dashboard's overview of a ledger: what it is (id, founder, rates, time zone, validation, digest), its
contributions over time and its latest distribution as charts, its members, and the owner's forms to name
themselves and admit a member."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import date, timedelta, tzinfo
from decimal import Decimal
from typing import Final

from aiohttp import web

from node.ledger_views import event_day, ledger_zone, zone_known
from node.web.charts import share_bars, stacked_bars
from node.web.forms import form_request
from node.web.html import Child, el, field
from node.web.i18n import _, day, number, short_day
from node.web.layout import (
    act,
    csrf_field,
    ledger_in_path,
    owner_form,
    presence,
    presence_text,
    readable_ledger,
    shown_ledger,
    submit,
    viewer,
    who,
    write_and_say,
)
from node.web.ledger import ledger_page, member_labels
from protocol.contributions import Charted
from protocol.decimals import format_decimal
from protocol.requests import Admit, Name
from protocol.state import FINAL, PENDING, LedgerState

CHART_WEEKS: Final = 26  # the overview's charts show at most the last half year


def add_overview_pages(app: web.Application) -> None:
    base = "/ledgers/{ledger}"
    app.router.add_get(base, overview)
    app.router.add_post(f"{base}/name", name)
    app.router.add_post(f"{base}/admit", admit)


# ---- overview and charts ------------------------------------------------------------


def _week(c: Charted, zone: tzinfo) -> date:
    d = event_day(c, zone)
    return d - timedelta(days=d.weekday())  # weeks start on Monday (ISO 8601)


def _charted(state: LedgerState) -> tuple[list[Charted], str, Callable[[Charted], float]]:
    """The contributions the charts count (final and pending), and what a bar measures: their claim value
    under the ledger's rates, or (when no rate applies to any) how many there are."""
    counted = list(state.contributions.charted(FINAL, PENDING))  # no Contribution made (a fold's state)
    if any(c.claim > 0 for c in counted):
        return counted, _("claim value"), lambda c: float(c.claim)
    return counted, _("contributions"), lambda c: 1.0


def _over_time(counted: Sequence[Charted], zone: tzinfo, keys: Sequence[Callable[[Charted], str]],
               measure: Callable[[Charted], float]) -> tuple[list[str], list[dict[str, list[float]]]]:
    """The last CHART_WEEKS weeks that have contributions, and for each of `keys` the series it splits them
    into, largest first; each contribution's week is found once, whatever the number of charts."""
    if not counted:
        return [], [{} for _key in keys]
    weeks_of: dict[str, date] = {}  # an event's day as written -> its week: many events share a day

    def week_of(c: Charted) -> date:
        given = c.event.point or c.event.beginning
        if given is None:
            return _week(c, zone)
        found = weeks_of.get(given[:10])
        if found is None:
            found = weeks_of[given[:10]] = _week(c, zone)
        return found

    dated = [(week_of(c), c) for c in counted]
    last = max(w for w, _c in dated)
    first = max(min(w for w, _c in dated), last - timedelta(weeks=CHART_WEEKS - 1))
    weeks = []
    week = first
    while week <= last:
        weeks.append(week)
        week += timedelta(weeks=1)
    index = {w: i for i, w in enumerate(weeks)}
    charts: list[dict[str, list[float]]] = [defaultdict(lambda: [0.0] * len(weeks)) for _key in keys]
    for w, c in dated:
        i = index.get(w)
        if i is not None:
            value = measure(c)
            for key, series in zip(keys, charts, strict=True):
                series[key(c)][i] += value
    return [w.isoformat() for w in weeks], [dict(sorted(series.items(), key=lambda kv: -sum(kv[1])))
                                            for series in charts]


def _distribution_chart(state: LedgerState, me: str) -> Child:
    if not state.distributions:
        return el("p", _("No distribution has been recorded yet."), class_="muted")
    latest = max(state.distributions, key=lambda d: (d.ts, d.id.raw))
    zone = ledger_zone(state.rules)
    shares: dict[str, Decimal] = defaultdict(Decimal)
    for line in latest.payout.lines:
        shares[line.recipient] += line.amount
    rows = [(r, float(a), f"{a:f}") for r, a in sorted(shares.items(), key=lambda kv: (-kv[1], kv[0]))]
    p = latest.payout
    amount = f"{number(p.amount)} {p.unit}"
    if p.since or p.until:
        title = _("Latest distribution: {amount} for {since} to {until}, recorded {day}").format(
            amount=amount, since=p.since or "…", until=p.until or "…", day=day(latest.ts, zone))
    else:
        title = _("Latest distribution: {amount}, recorded {day}").format(amount=amount, day=day(latest.ts, zone))
    return share_bars(title, rows, p.unit, member_labels(state, me))


def _zone_text(state: LedgerState) -> str:
    """The ledger's time zone as its rules name it; a name this machine's tz database lacks is said so."""
    name = state.rules.timezone
    if name is None:
        return _("UTC (the rules name no time zone)")
    if not zone_known(state.rules):
        return _("{zone}: unknown to this node, which shows UTC").format(zone=name)
    return name


async def overview(request: web.Request) -> web.Response:
    v = viewer(request)
    info, state = await shown_ledger(request, v)
    me = v.did
    counted, measure_name, measure = _charted(state)
    labels = member_labels(state, me)
    zone = ledger_zone(state.rules)
    periods, (by_member, by_action) = _over_time(
        counted, zone, (lambda c: c.event.provider or c.author, lambda c: c.event.action), measure)
    shown = {p: short_day(date.fromisoformat(p)) for p in periods}  # the axis in the page's locale
    charts: list[Child] = [el("p", _("No contributions to chart yet."), class_="muted")] if not periods else [
        stacked_bars(_("Contributions per week, per member"), periods, by_member, measure_name, labels, shown),
        stacked_bars(_("Contributions per week, per action"), periods, by_action, measure_name, None, shown),
    ]
    totals = state.totals()
    seen = presence(request) if v.owner else {}
    member_rows = [
        el("tr", el("td", who(m, me, state.names)),
           el("td", _("this node") if m == me else presence_text(seen.get(m), zone)) if v.owner else None,
           el("td", "; ".join(f"{a}: " + ", ".join(f"{number(format_decimal(q))} {u}" for u, q in units.items())
                              for a, units in totals[m].quantities.items()) if m in totals else ""),
           el("td", number(format_decimal(totals[m].claim)) if m in totals else "0", class_="num"))
        for m in state.members
    ]
    rules = state.rules
    rates = "; ".join(f"{a}: " + ", ".join(_("{rate} per {unit}").format(rate=number(format_decimal(r)), unit=u)
                                           for u, r in units.items())
                      for a, units in sorted(rules.rates.items()))
    about = el("dl", el("dt", _("Ledger id")), el("dd", el("code", str(info.id))),
               el("dt", _("Founded by")), el("dd", who(info.founder, me, state.names)),
               el("dt", _("Rates")), el("dd", rates or _("none")),
               el("dt", _("Time zone")), el("dd", _zone_text(state)),
               el("dt", _("Validation")),
               el("dd", _("{accept} accept(s) make a contribution final, {reject} reject(s) reject it").format(
                   accept=rules.validation.accept, reject=rules.validation.reject)),
               el("dt", _("State digest")), el("dd", el("code", state.digest.hex()[:16] + "…",
                                                      title=state.digest.hex(), class_="digest")),
               class_="card")
    member_forms: Child = None
    if v.owner and me in state.members:
        member_forms = el("form", csrf_field(v),
                    field(_("Your name in this ledger (the other members see it)"), "input", type="text",
                          name="name", maxlength=Name.field("name").spec.max_chars, required=True,
                          value=state.names.get(me, "")),
                    el("button", _("Save"), type="submit"), method="post", action=f"/ledgers/{info.id}/name",
                    class_="filters naming")
        member_forms = el("div", member_forms, el(
            "form", csrf_field(v),
            field(_("Admit a member: their did:key (`tally id` on their node prints it)"), "input", type="text",
                  name="agent", required=True, pattern="did:key:z[1-9A-HJ-NP-Za-km-z]+", size=60),
            el("button", _("Sponsor their admission"), type="submit"), method="post",
            action=f"/ledgers/{info.id}/admit", class_="filters admit"))
    return ledger_page(
        request, v, info, state, _("Overview"), "overview", about, member_forms,
        el("section", el("h2", _("Contributions over time")),
           el("p", _("Final and pending contributions, by week; bars measure {measure}.").format(
               measure=measure_name), class_="muted"),
           *charts, class_="charts"),
        el("section", el("h2", _("Shares")), _distribution_chart(state, me), class_="charts"),
        el("section", el("h2", _("Members ({count})").format(count=len(state.members))),
           el("table", el("thead", el("tr", el("th", _("Member")),
                                      el("th", _("Online")) if v.owner else None, el("th", _("Final contributions")),
                                      el("th", _("Claim value")))), el("tbody", member_rows), class_="members")),
    )


async def name(request: web.Request) -> web.Response:
    v, form = await owner_form(request)
    ledger = await ledger_in_path(request, v)
    # As the API: while the ledger catches up, built against its last state (node/store/writes.py).
    return await write_and_say(request, v, lambda: submit(request, form_request(Name, form, ledger=ledger)),
                               _("The other members now see you as {name}.").format(name=form.get("name", "").strip()),
                               f"/ledgers/{ledger}")


async def admit(request: web.Request) -> web.Response:
    v, form = await owner_form(request)
    info, state = await readable_ledger(request, v)
    agent = form.get("agent", "").strip()
    return await act(request, v, lambda ts: form_request(Admit, form, ledger=info.id).build(state, v.did, ts),
                     _("You sponsored {agent}'s admission; they follow the ledger with `tally follow {ledger}`."
                       ).format(agent=agent, ledger=info.id),
                     f"/ledgers/{info.id}")
