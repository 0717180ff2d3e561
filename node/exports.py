"""How a ledger leaves Tally: distributions as JSON, events as ValueFlows JSON-LD and as CSV.

The JSON-LD is written as plain JSON: no JSON-LD library is needed at run time, and
the contexts are inlined from this package's data files (node/data/), so a reader
expands it without fetching anything. SPEC.md §17 describes the mapping;
node/data/tally-shapes.ttl holds the SHACL shapes every export satisfies.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, tzinfo
from importlib import resources
from typing import Any, Final

from node.ledger_views import contribution_row, event_day, ledger_zone
from protocol.amounts import format_amount
from protocol.decimals import format_decimal
from protocol.payouts import Payout
from protocol.state import LedgerState
from protocol.valueflows import parse_time

FORMATS: Final = ("jsonld", "csv")
#: What a spreadsheet reads as the start of a formula (OWASP CSV injection), full-width forms included.
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_NUMBER: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")  # a plain decimal stays a number
_LINE_BREAKS: Final = re.compile(r"\r\n|[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
#: A row's cells each after a NUL (`csv_cells`): where one may start as a formula (a false alarm costs a closer look).
_RISKY_START: Final = re.compile("\x00 *[" + re.escape("".join(_FORMULA_STARTS)) + "]")
MEDIA_TYPES: Final = {"jsonld": "application/ld+json", "csv": "text/csv"}
ENTRY_IRI_PREFIX: Final = "urn:cid:"  # an entry (or the ledger) as an IRI: urn:cid:<CID>
UNIT_IRI_PREFIX: Final = "urn:tally:unit:"  # a ledger unit with no OM unit
OM: Final = "http://www.ontology-of-units-of-measure.org/resource/om-2/"
#: Ledger units with an OM 2 unit of measure.
OM_UNITS: Final = {
    "euro": "euro", "eur": "euro", "gbp": "poundSterling", "pound": "poundSterling", "hour": "hour", "day": "day",
    "minute": "minute-Time", "week": "week", "kilogram": "kilogram", "kg": "kilogram", "one": "one",
}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def distribution_json(ledger: object, payout: Payout) -> dict[str, Any]:
    """`tally distribute --json` and the API: `{ledger, amount, unit, since, until, lines: [{bucket, recipient,
    amount}]}`; amounts are strings, lines with exactly the unit's minor-unit places."""
    return {
        "ledger": str(ledger),
        "amount": format_decimal(payout.amount),
        "unit": payout.unit,
        "since": None if payout.since is None else payout.since.isoformat(),
        "until": None if payout.until is None else payout.until.isoformat(),
        "lines": [
            {"bucket": line.bucket, "recipient": line.recipient, "amount": format_amount(line.amount, payout.unit)}
            for line in payout.lines
        ],
    }


# ---- JSON-LD ---------------------------------------------------------------------------


def _context(name: str) -> dict[str, Any]:
    data = json.loads(resources.files("node").joinpath("data", name).read_text("utf-8"))
    context = data["@context"]
    assert isinstance(context, dict)
    return context


def contexts() -> list[dict[str, Any]]:
    """The export's @context: ValueFlows 1.0's, then Tally's term definitions."""
    return [_context("vf-context.jsonld"), _context("tally-context.jsonld")]


def unit_iri(unit: str) -> str:
    om = OM_UNITS.get(unit)
    return f"om:{om}" if om is not None else f"{UNIT_IRI_PREFIX}{unit}"


def _iri(agent: str) -> str:
    """A did:key is an IRI as it is; the ledger's id (a CID) becomes urn:cid:<CID>."""
    return agent if agent.startswith("did:") else f"{ENTRY_IRI_PREFIX}{agent}"


def _stamp(text: str) -> str:
    """An event time as an xsd:dateTimeStamp: a date is its midnight UTC, as Tally reads it."""
    return _z(parse_time(text, "time"))


def _created(ts_ms: int, zone: tzinfo = UTC) -> str:
    """An entry's `ts` in ISO 8601: UTC with `Z`, or in the ledger's zone with its offset."""
    return _z((_EPOCH + timedelta(milliseconds=ts_ms)).astimezone(zone))


def _z(moment: datetime) -> str:
    text = moment.isoformat(timespec="milliseconds" if moment.microsecond else "seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _measure(value: str, unit: str) -> dict[str, Any]:
    return {"@type": "Measure", "hasNumericalValue": value, "hasUnit": unit_iri(unit)}


def jsonld(state: LedgerState) -> dict[str, Any]:
    """The ledger's events and recorded distributions as one ValueFlows JSON-LD document."""
    ledger = _iri(str(state.ledger))
    agents: set[str] = set()
    units: set[str] = set()
    graph: list[dict[str, Any]] = []
    stamps: dict[str, str] = {}  # event time as written -> as exported: many events share a day
    for c in state.contributions.by_time():
        e = c.event
        node: dict[str, Any] = {
            "@id": _iri(str(c.id)), "@type": "EconomicEvent", "action": e.action,
            "provider": _iri(e.provider), "receiver": _iri(e.receiver),
            "effortQuantity" if e.effort else "resourceQuantity": _measure(
                format_decimal(e.quantity.value), e.quantity.unit),
            "created": _created(c.ts), "author": c.author, "ledger": ledger,
            "claimValue": format_decimal(c.claim), "status": c.status,
        }
        if e.classifications:
            node["resourceClassifiedAs"] = list(e.classifications)
        for key, value in (("hasPointInTime", e.point), ("hasBeginning", e.beginning), ("hasEnd", e.end)):
            if value is not None:
                stamp = stamps.get(value)
                if stamp is None:
                    stamp = stamps[value] = _stamp(value)
                node[key] = stamp
        if e.note:
            node["note"] = e.note
        if e.corrects is not None:
            node["corrects"] = _iri(str(e.corrects))
        graph.append(node)
        agents.update((e.provider, e.receiver, c.author))
        units.add(e.quantity.unit)
    for d in state.distributions:
        payout = d.payout
        dist = _iri(str(d.id))
        node = {
            "@id": dist, "@type": "Distribution", "ledger": ledger, "author": d.author, "created": _created(d.ts),
            "distributedQuantity": _measure(format_decimal(payout.amount), payout.unit),
        }
        if payout.since is not None:
            node["since"] = payout.since.isoformat()
        if payout.until is not None:
            node["until"] = payout.until.isoformat()
        graph.append(node)
        for i, line in enumerate(payout.lines):
            graph.append({
                "@id": f"{dist}#line-{i}", "@type": "Claim", "action": "transfer", "provider": ledger,
                "receiver": _iri(line.recipient), "resourceQuantity": _measure(
                    format_amount(line.amount, payout.unit), payout.unit),
                "bucket": line.bucket, "distribution": dist,
            })
            agents.add(line.recipient)
        agents.add(d.author)
        units.add(payout.unit)
    head = [{"@id": ledger, "@type": ["Organization", "Agent"], "name": state.rules.name}]
    head += [{"@id": _iri(a), "@type": "Agent"} for a in sorted(agents) if _iri(a) != ledger]
    head += [_unit_node(u) for u in sorted(units)]
    return {"@context": contexts(), "@graph": head + graph}


def _unit_node(unit: str) -> dict[str, Any]:
    node: dict[str, Any] = {"@id": unit_iri(unit), "@type": "Unit", "label": unit}
    om = OM_UNITS.get(unit)
    if om is not None:
        node["omUnitIdentifier"] = f"{OM}{om}"
    return node


# ---- CSV -------------------------------------------------------------------------------

#: The spreadsheet export's columns (SPEC.md §17.6): one row per event, then one per line of every recorded
#: distribution; names beside did:keys, dates and times in ISO 8601.
EXPORT_COLUMNS: Final = (
    "record", "id", "date", "time", "author", "author_name", "action", "provider", "provider_name", "receiver",
    "receiver_name", "quantity", "unit", "classification", "at", "from", "to", "note", "claim", "status",
    "accepts", "rejects", "corrects", "corrected_by",
)


def csv_rows(state: LedgerState) -> Iterable[list[str]]:
    """A header, then one row per event (every status), oldest first, with its claim value and status, then
    one row per line of each recorded distribution, oldest first."""
    names = state.names
    zone = ledger_zone(state.rules)  # dates and times in the ledger's time zone (SPEC.md §14), else UTC
    ledger = str(state.ledger)

    def name(did: str | None) -> str | None:
        if did == ledger:
            return "ledger"
        return names.get(did) if did else None

    yield list(EXPORT_COLUMNS)
    for c in state.contributions.by_time():
        row = contribution_row(c)
        e = c.event
        # every event is dated: its own day (as written, in its own offset), else the day it was signed
        row.update(record="event", date=event_day(c, zone).isoformat(), time=_created(c.ts, zone),
                   author_name=name(c.author), provider_name=name(e.provider), receiver_name=name(e.receiver))
        yield csv_cells(map(row.get, EXPORT_COLUMNS))
    for d in sorted(state.distributions, key=lambda d: (d.ts, d.id.raw)):
        p = d.payout
        for line in p.lines:
            row = {"record": "distribution", "id": str(d.id), "date": _created(d.ts, zone)[:10],
                   "time": _created(d.ts, zone),
                   "author": d.author, "author_name": name(d.author), "receiver": line.recipient,
                   "receiver_name": name(line.recipient), "quantity": format_amount(line.amount, p.unit),
                   "unit": p.unit, "classification": line.bucket,
                   "from": None if p.since is None else p.since.isoformat(),
                   "to": None if p.until is None else p.until.isoformat(), "status": "recorded"}
            yield csv_cells(map(row.get, EXPORT_COLUMNS))


def csv_cells(values: Iterable[object]) -> list[str]:
    """`csv_cell` of each of a row's values: line breaks and formula starts looked for once in the row (most rows
    have none), each cell looked at only if the row has any (every line break is a character `isprintable` refuses)."""
    texts = ["" if v is None else " ".join(map(str, v)) if isinstance(v, list) else str(v) for v in values]
    if "".join(texts).isprintable() and _RISKY_START.search("\x00" + "\x00".join(texts)) is None:
        return texts
    return [csv_cell(text) for text in texts]


def csv_cell(value: object) -> str:
    """A history row's value in a CSV cell: empty for null, lists space-separated; safe to open (SPEC §17.6):
    text a spreadsheet would read as a formula gets a leading apostrophe (OWASP's rule), and every line
    break inside a cell is one "\n" (the writer quotes the cell), so no note can end a row or start a formula."""
    if value is None:
        return ""
    text = " ".join(str(v) for v in value) if isinstance(value, list) else str(value)
    text = _LINE_BREAKS.sub("\n", text)
    if text.lstrip(" ").startswith(_FORMULA_STARTS) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def export_text(state: LedgerState, fmt: str) -> str:
    """The whole export in `fmt` ("jsonld" or "csv") as text."""
    if fmt == "jsonld":
        return json.dumps(jsonld(state), ensure_ascii=False, separators=(",", ":")) + "\n"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows(csv_rows(state))
    return buffer.getvalue()
