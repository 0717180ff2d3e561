"""The dashboard's shares page (what the value equation would give now, and the distributions recorded) and the
ledger's exports (CSV, JSON-LD) as downloads."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

from aiohttp import hdrs, web

from node.exports import FORMATS, MEDIA_TYPES, export_text
from node.store.store import LedgerInfo
from node.web.charts import share_bars
from node.web.html import Child, Markup, el, field
from node.web.layout import Viewer, act, csrf_field, owner_form, readable_ledger, secure_headers, short, viewer
from node.web.ledger import ledger_page
from protocol import LocalError, TallyError, ledger_ops
from protocol.distribution import Payout
from protocol.state import LedgerState
from protocol.writes import AppendRequest

_EXTENSIONS = {"csv": "csv", "jsonld": "jsonld"}


def add_share_pages(app: web.Application) -> None:
    base = "/ledgers/{ledger}"
    app.router.add_get(f"{base}/shares", shares)
    app.router.add_post(f"{base}/distributions", record)
    app.router.add_get(f"{base}/export.{{format}}", export)


def _labels(state: LedgerState, me: str) -> dict[str, str]:
    names = {did: short(did, me, state.names) for did in (*state.members, *state.left)}
    names[str(state.ledger)] = "the ledger (common fund)"
    return names


def _payout_chart(title: str, payout: Payout, state: LedgerState, me: str) -> Markup:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for line in payout.lines:
        totals[line.recipient] += line.amount
    rows = [(r, float(a), f"{a:f}") for r, a in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))]
    return share_bars(title, rows, payout.unit, _labels(state, me))


def _lines(payout: Payout, state: LedgerState, me: str) -> Markup:
    labels = _labels(state, me)
    return el("table", el("thead", el("tr", el("th", "Bucket"), el("th", "Recipient"), el("th", "Amount"))),
              el("tbody", (el("tr", el("td", line.bucket), el("td", labels.get(line.recipient, line.recipient),
                                                              title=line.recipient),
                              el("td", f"{line.amount:f} {payout.unit}", class_="num"))
                           for line in payout.lines)), class_="lines")


def _money(value: Decimal, payout: Payout) -> str:
    """`value` with the places the payout's lines have (the unit's minor units, SPEC.md §17.1)."""
    places = payout.lines[0].amount.as_tuple().exponent if payout.lines else 0
    return f"{value.quantize(Decimal(1).scaleb(places)) if isinstance(places, int) else value:f} {payout.unit}"


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


async def shares(request: web.Request) -> web.Response:
    """A preview form (amount, unit, period), its result, and the distributions recorded so far."""
    v = viewer(request)
    info, state = await readable_ledger(request, v)
    given = {k: request.query.get(k, "").strip() for k in ("amount", "unit", "since", "until")}
    preview: list[Child] = []
    if given["amount"]:
        try:
            payout = ledger_ops.preview_distribution(state, amount=given["amount"], unit=given["unit"],
                                                     since=given["since"] or None, until=given["until"] or None)
        except TallyError as exc:
            preview = [el("p", el("code", exc.code), ": ", exc.message, class_="flash error", role="alert")]
        else:
            preview = [_payout_chart(f"{given['amount']} {given['unit']} shared by the value equation now", payout,
                                     state, v.did), _lines(payout, state, v.did), _record_form(v, info, state, given)]
    unit = given["unit"] or (state.rules.units[0] if state.rules.units else "")
    form = el(
        "form",
        field("Amount to share", "input", type="text", name="amount", inputmode="decimal", required=True,
              value=given["amount"], placeholder="e.g. 1000"),
        field("Unit", "select", (el("option", u, value=u, selected=u == unit) for u in state.rules.units),
              name="unit"),
        field("Contributions from (optional)", "input", type="date", name="since", value=given["since"]),
        field("until (optional)", "input", type="date", name="until", value=given["until"]),
        el("button", "Preview", type="submit"), method="get", class_="filters")
    recorded = sorted(state.distributions, key=lambda d: (d.ts, d.id.raw), reverse=True)
    mine = {d.id.raw: sum((line.amount for line in d.payout.lines if line.recipient == v.did), Decimal(0))
            for d in recorded}
    history = el("table", el("thead", el("tr", *(el("th", h) for h in (
        "Recorded", "By", "Amount", "Period", "Your share")))),
        el("tbody", (el("tr", el("td", _day(d.ts)), el("td", short(d.author, v.did, state.names), title=d.author),
                        el("td", _money(d.payout.amount, d.payout), class_="num"),
                        el("td", f"{d.payout.since or '…'} to {d.payout.until or '…'}"
                           if d.payout.since or d.payout.until else "all contributions"),
                        el("td", _money(mine[d.id.raw], d.payout), class_="num"), data_id=str(d.id))
                     for d in recorded)), class_="distributions") if recorded else el(
        "p", "No distribution has been recorded yet.", class_="muted")
    return ledger_page(
        request, v, info, state, "Shares", "shares", el("h2", "What the value equation gives now"),
        el("p", "Split an amount of income by this ledger's rules over its final contributions (nothing is "
                "written until you record it).", class_="muted"),
        form, *preview, el("h2", "Distributions recorded"), history,
        el("p", "Download the ledger: ", el("a", "CSV", href=f"/ledgers/{info.id}/export.csv"), " · ",
           el("a", "JSON-LD (ValueFlows)", href=f"/ledgers/{info.id}/export.jsonld")),
    )


def _record_form(v: Viewer, info: LedgerInfo, state: LedgerState, given: dict[str, str]) -> Child:
    if not (v.owner and v.did in state.members):
        return None
    return el("form", csrf_field(v), (el("input", type="hidden", name=k, value=val) for k, val in given.items()),
              el("button", "Record this distribution", type="submit"), method="post",
              action=f"/ledgers/{info.id}/distributions", class_="record")


async def record(request: web.Request) -> web.Response:
    v, form = await owner_form(request)
    info, state = await readable_ledger(request, v)
    given = {k: form.get(k, "").strip() for k in ("amount", "unit", "since", "until")}

    def build(ts: int) -> AppendRequest:
        payout = ledger_ops.preview_distribution(state, amount=given["amount"], unit=given["unit"],
                                                 since=given["since"] or None, until=given["until"] or None)
        return ledger_ops.record_distribution(state, v.did, payout, ts)

    return await act(request, v, build, f"Recorded: {given['amount']} {given['unit']} shared; every member's node "
                     "checks it against their own count.", f"/ledgers/{info.id}/shares")


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
