"""The dashboard's shares page (what the value equation would give now, and the distributions recorded) and the
ledger's exports (CSV, JSON-LD) as downloads."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from aiohttp import hdrs, web

from node.exports import FORMATS, MEDIA_TYPES, export_text
from node.ledger_views import ledger_zone
from node.store.rows import LedgerInfo
from node.web.charts import share_bars
from node.web.forms import form_request
from node.web.html import Child, Markup, el, field
from node.web.i18n import _, day, number, read_decimal
from node.web.layout import (
    Viewer,
    act,
    csrf_field,
    money_unit,
    owner_form,
    readable_ledger,
    secure_headers,
    short,
    shown_ledger,
    viewer,
)
from node.web.ledger import ledger_page
from protocol import LocalError, TallyError, ledger_ops
from protocol.payouts import Payout
from protocol.requests import RecordDistribution
from protocol.state import LedgerState

_EXTENSIONS = {"csv": "csv", "jsonld": "jsonld"}


def add_share_pages(app: web.Application) -> None:
    base = "/ledgers/{ledger}"
    app.router.add_get(f"{base}/shares", shares)
    app.router.add_post(f"{base}/distributions", record)
    app.router.add_get(f"{base}/export.{{format}}", export)


def _labels(state: LedgerState, me: str) -> dict[str, str]:
    names = {did: short(did, me, state.names) for did in (*state.members, *state.left)}
    names[str(state.ledger)] = _("the ledger (common fund)")
    return names


def _payout_chart(title: str, payout: Payout, state: LedgerState, me: str) -> Markup:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for line in payout.lines:
        totals[line.recipient] += line.amount
    rows = [(r, float(a), f"{a:f}") for r, a in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))]
    return share_bars(title, rows, payout.unit, _labels(state, me))


def _lines(payout: Payout, state: LedgerState, me: str) -> Markup:
    labels = _labels(state, me)
    return el("table", el("thead", el("tr", el("th", _("Bucket")), el("th", _("Recipient")), el("th", _("Amount")))),
              el("tbody", (el("tr", el("td", line.bucket), el("td", labels.get(line.recipient, line.recipient),
                                                              title=line.recipient),
                              el("td", f"{number(line.amount)} {payout.unit}", class_="num"))
                           for line in payout.lines)), class_="lines")


def _money(value: Decimal, payout: Payout) -> str:
    """`value` with the places the payout's lines have (the unit's minor units, SPEC.md §17.1)."""
    places = payout.lines[0].amount.as_tuple().exponent if payout.lines else 0
    return f"{number(value.quantize(Decimal(1).scaleb(places)) if isinstance(places, int) else value)} {payout.unit}"


async def shares(request: web.Request) -> web.Response:
    """A preview form (amount, unit, period), its result, and the distributions recorded so far."""
    v = viewer(request)
    info, state = await shown_ledger(request, v)
    given = {k: request.query.get(k, "").strip() for k in ("amount", "unit", "since", "until")}
    given["amount"] = read_decimal(given["amount"])  # "2,5" where the locale writes a decimal comma
    preview: list[Child] = []
    if given["amount"]:
        try:
            payout = ledger_ops.preview_distribution(state, amount=given["amount"], unit=given["unit"],
                                                     since=given["since"] or None, until=given["until"] or None)
        except TallyError as exc:
            preview = [el("p", el("code", exc.code), ": ", exc.message, class_="flash error", role="alert")]
        else:
            title = _("{amount} shared by the value equation now").format(
                amount=f"{number(payout.amount)} {payout.unit}")
            preview = [_payout_chart(title, payout, state, v.did), _lines(payout, state, v.did),
                       _record_form(v, info, state, given)]
    unit = given["unit"] or money_unit(state)
    form = el(
        "form",
        field(_("Amount to share"), "input", type="text", name="amount", inputmode="decimal", required=True,
              value=given["amount"], placeholder=_("e.g. {example}").format(example=number("1000.50"))),
        field(_("Unit"), "select", (el("option", u, value=u, selected=u == unit) for u in state.rules.units),
              name="unit"),
        field(_("Contributions from (optional)"), "input", type="date", name="since", value=given["since"]),
        field(_("until (optional)"), "input", type="date", name="until", value=given["until"]),
        el("button", _("Preview"), type="submit"), method="get", class_="filters")
    utc_days: Child = None if state.rules.timezone in (None, "UTC") else el(
        "p", _("A period counts UTC days (as every node does), not days in {zone}: a contribution without a date "
               "of its own may count on the day before or after the one shown.").format(zone=state.rules.timezone),
        class_="muted")
    # Conflicting ones are listed too, saying they count nothing (SPEC.md §17.5), so a member sees why.
    clashing = {d.id.raw for d in state.conflicting}
    zone = ledger_zone(state.rules)
    recorded = sorted((*state.distributions, *state.conflicting), key=lambda d: (d.ts, d.id.raw), reverse=True)
    mine = {d.id.raw: sum((line.amount for line in d.payout.lines if line.recipient == v.did), Decimal(0))
            for d in recorded}
    history = el("table", el("thead", el("tr", *(el("th", h) for h in (
        _("Recorded"), _("By"), _("Amount"), _("Period"), _("Your share"))))),
        el("tbody", (el("tr", el("td", day(d.ts, zone)), el("td", short(d.author, v.did, state.names), title=d.author),
                        el("td", _money(d.payout.amount, d.payout), class_="num"),
                        el("td", _("{since} to {until}").format(since=d.payout.since or "…",
                                                                until=d.payout.until or "…")
                           if d.payout.since or d.payout.until else _("all contributions")),
                        el("td", _("conflicting: counts nothing; record it again"), class_="conflicting",
                           title=_("it paid a claim that an earlier distribution it did not count had paid"))
                        if d.id.raw in clashing else el("td", _money(mine[d.id.raw], d.payout), class_="num"),
                        data_id=str(d.id))
                     for d in recorded)), class_="distributions") if recorded else el(
        "p", _("No distribution has been recorded yet."), class_="muted")
    return ledger_page(
        request, v, info, state, _("Shares"), "shares", el("h2", _("What the value equation gives now")),
        el("p", _("Split an amount of income by this ledger's rules over its final contributions (nothing is "
                  "written until you record it)."), class_="muted"),
        form, utc_days, *preview, el("h2", _("Distributions recorded")), history,
        el("p", _("Download the ledger:"), " ", el("a", "CSV", href=f"/ledgers/{info.id}/export.csv"), " · ",
           el("a", "JSON-LD (ValueFlows)", href=f"/ledgers/{info.id}/export.jsonld")),
    )


def _record_form(v: Viewer, info: LedgerInfo, state: LedgerState, given: dict[str, str]) -> Child:
    if not (v.owner and v.did in state.members):
        return None
    return el("form", csrf_field(v), (el("input", type="hidden", name=k, value=val) for k, val in given.items()),
              el("label", el("input", type="checkbox", name="confirm", value="yes", required=True), " ",
                 _("I have checked the lines: every member's node will see this distribution")),
              el("button", _("Record this distribution"), type="submit"), method="post",
              action=f"/ledgers/{info.id}/distributions", class_="record")


async def record(request: web.Request) -> web.Response:
    v, form = await owner_form(request)
    info, state = await readable_ledger(request, v)
    given = {k: form.get(k, "").strip() for k in ("amount", "unit")}
    if form.get("confirm") != "yes":
        raise LocalError("bad_request", _("tick the box to confirm the distribution before it is recorded"))
    done = _("Recorded: {amount} {unit} shared; every member's node checks it against their own count.").format(
        amount=given["amount"], unit=given["unit"])
    return await act(request, v, lambda ts: form_request(RecordDistribution, form, ledger=info.id).build(
        state, v.did, ts), done, f"/ledgers/{info.id}/shares")


async def export(request: web.Request) -> web.Response:
    v = viewer(request)
    info, state = await readable_ledger(request, v)
    fmt = request.match_info["format"]
    if fmt not in FORMATS:
        raise LocalError("not_found", f"no export format {fmt!r:.20}; there are {', '.join(FORMATS)}")
    response = web.Response(text=export_text(state, fmt), content_type=MEDIA_TYPES[fmt], charset="utf-8")
    secure_headers(response)
    name = "".join(ch if ch.isalnum() else "-" for ch in info.name).strip("-") or "ledger"
    response.headers[hdrs.CONTENT_DISPOSITION] = f'attachment; filename="{name}.{_EXTENSIONS[fmt]}"'
    return response
