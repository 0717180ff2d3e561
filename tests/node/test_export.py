"""`tally export`'s ValueFlows JSON-LD (node/exports.py), read by real JSON-LD, RDF and SHACL processors.

pyld expands it and rdflib parses it with every socket refused, so nothing is fetched; pySHACL checks
it against our shapes (node/data/tally-shapes.ttl). CSV: one row per event.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import socket
from collections.abc import Iterator
from decimal import Decimal
from importlib import resources
from typing import Any

import pytest
from pyld import jsonld as pyld
from pyshacl import validate
from rdflib import Graph, Literal, Namespace, URIRef

from node.exports import export_text, jsonld
from protocol import GENESIS_KIND, Entry, SigningKey, create_entry
from protocol.distribution import DISTRIBUTION_KIND, distribute, distribution_body
from protocol.rules import Rules
from protocol.state import FINAL, LedgerState, compute_state

VF = Namespace("https://w3id.org/valueflows/ont/vf#")
OM = Namespace("http://www.ontology-of-units-of-measure.org/resource/om-2/")
TALLY = Namespace("urn:tally:")
RDF = Namespace("http://www.w3.org/1999/02/22-rdf-syntax-ns#")
XSD = Namespace("http://www.w3.org/2001/XMLSchema#")
ANA, BEN = (SigningKey(hashlib.sha256(b"export-%d" % i).digest()) for i in range(2))


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any attempt to open a connection fails the test: the export must need nothing from outside."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield


def refuse_loader(url: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    raise AssertionError(f"pyld tried to load {url}")


class Ledger:
    def __init__(self) -> None:
        rules = Rules.from_config({
            "founders": [ANA.did, BEN.did], "units": ["hour", "euro", "day", "apples"],
            "rates": {"work": {"hour": "25"}, "transfer": {"euro": "1"}, "produce": {"apples": "0.5"}},
            "buckets": [{"name": "reserve", "percent": "20", "recipient": "ledger"},
                        {"name": "members", "percent": "80"}],
        }, name="Orchard coop", creator=ANA.did)
        self.genesis = create_entry(ANA, ledger=None, seq=1, prev=None, ts=1_700_000_000_000, kind=GENESIS_KIND,
                                    body=rules.to_body())
        self.entries = [self.genesis]
        self.heads = {ANA.public_key: self.genesis}

    def add(self, author: SigningKey, kind: str, body: dict[str, Any]) -> Entry:
        head = self.heads.get(author.public_key)
        entry = create_entry(author, ledger=self.genesis.id, seq=1 if head is None else head.seq + 1,
                             prev=None if head is None else head.id, ts=1_700_000_000_000 + len(self.entries) * 1001,
                             kind=kind, body={**body, "member": self.genesis.id})
        self.heads[author.public_key] = entry
        self.entries.append(entry)
        return entry

    def state(self) -> LedgerState:
        return compute_state(self.genesis, self.entries)


@pytest.fixture
def ledger() -> Ledger:
    led = Ledger()
    work = led.add(ANA, "vf.event", {"action": "work", "effortQuantity": {"hasNumericalValue": "6", "hasUnit": "hour"},
                                     "resourceClassifiedAs": ["repairs"], "hasPointInTime": "2026-03-02",
                                     "note": "fixed the press"})
    led.add(BEN, "vf.endorse", {"event": work.id, "verdict": "accept"})
    apples = led.add(BEN, "vf.event", {"action": "produce", "resourceQuantity": {"hasNumericalValue": "40",
                                                                                 "hasUnit": "apples"},
                                       "hasBeginning": "2026-03-01T08:00:00+01:00", "hasEnd": "2026-03-01T12:30Z"})
    led.add(BEN, "vf.event", {"action": "produce", "resourceQuantity": {"hasNumericalValue": "44",
                                                                        "hasUnit": "apples"}, "corrects": apples.id})
    led.add(ANA, "vf.event", {"action": "transfer", "resourceQuantity": {"hasNumericalValue": "99.5",
                                                                         "hasUnit": "euro"}})  # pending
    state = led.state()
    payout = distribute(state.rules, state.ledger, Decimal("600"), "euro",
                        [c for c in state.contributions if c.status == FINAL])
    led.add(ANA, DISTRIBUTION_KIND, {k: v for k, v in distribution_body(payout, state.heads, led.genesis.id).items()
                                     if k != "member"})
    return led


def shapes() -> Graph:
    text = resources.files("node").joinpath("data", "tally-shapes.ttl").read_text("utf-8")
    return Graph().parse(data=text, format="turtle")


def test_jsonld_expands_parses_and_meets_our_shapes(ledger: Ledger) -> None:
    state = ledger.state()
    assert len(state.distributions) == 1 and not state.invalid
    doc = json.loads(export_text(state, "jsonld"))
    assert doc == json.loads(json.dumps(jsonld(state)))

    expanded = pyld.expand(doc, {"documentLoader": refuse_loader})
    types = {t for node in expanded for t in node.get("@type", [])}
    assert {str(VF.EconomicEvent), str(VF.Claim), str(VF.Organization), str(VF.Unit), str(TALLY.Distribution)} <= types

    graph = Graph().parse(data=json.dumps(doc), format="json-ld")
    work = next(c for c in state.contributions if c.event.action == "work")
    event = URIRef(f"urn:cid:{work.id}")
    assert (event, RDF.type, VF.EconomicEvent) in graph
    assert (event, VF.action, VF.work) in graph
    assert (event, VF.provider, URIRef(ANA.did)) in graph
    assert (event, VF.receiver, URIRef(f"urn:cid:{state.ledger}")) in graph
    assert (event, TALLY.claimValue, Literal("150", datatype=XSD.decimal)) in graph
    assert (event, TALLY.status, Literal("final")) in graph
    assert (event, VF.hasPointInTime, Literal("2026-03-02T00:00:00Z", datatype=XSD.dateTimeStamp)) in graph
    measure = graph.value(event, VF.effortQuantity)
    assert graph.value(measure, VF.hasUnit) == OM.hour
    assert graph.value(measure, VF.hasNumericalValue) == Literal("6", datatype=XSD.decimal)
    corrected = next(c for c in state.contributions if c.corrected_by is not None)
    assert (URIRef(f"urn:cid:{corrected.corrected_by}"), VF.corrects, URIRef(f"urn:cid:{corrected.id}")) in graph
    assert (URIRef("urn:tally:unit:apples"), RDF.type, VF.Unit) in graph  # a unit OM does not have
    claims = {(graph.value(c, TALLY.bucket).toPython(), str(graph.value(c, VF.receiver)),
               graph.value(graph.value(c, VF.resourceQuantity), VF.hasNumericalValue).toPython())
              for c in graph.subjects(RDF.type, VF.Claim)}
    assert claims == {("reserve", f"urn:cid:{state.ledger}", Decimal("120.00")),
                      ("members", ANA.did, Decimal("480.00"))}

    conforms, _, report = validate(graph, shacl_graph=shapes(), inference="none")
    assert conforms, report


def test_the_shapes_refuse_an_event_without_a_claim_value(ledger: Ledger) -> None:
    doc = jsonld(ledger.state())
    event = next(n for n in doc["@graph"] if n.get("@type") == "EconomicEvent")
    del event["claimValue"]
    event["action"] = "dance"
    graph = Graph().parse(data=json.dumps(doc), format="json-ld")
    conforms, _, report = validate(graph, shacl_graph=shapes(), inference="none")
    assert not conforms and "claimValue" in report and "dance" in report


def test_csv_has_one_row_per_event_with_claim_and_status(ledger: Ledger) -> None:
    state = ledger.state()
    rows = [r for r in csv.DictReader(io.StringIO(export_text(state, "csv"))) if r["record"] == "event"]
    assert len(rows) == len(state.contributions) == 4
    by_action = {(r["action"], r["quantity"]): r for r in rows}
    assert by_action[("work", "6")]["claim"] == "150" and by_action[("work", "6")]["status"] == "final"
    assert by_action[("transfer", "99.5")]["status"] == "pending"
    assert by_action[("produce", "40")]["status"] == "corrected"
    assert by_action[("work", "6")]["accepts"] == BEN.did
    for row in rows:  # every event dated, its signing time in ISO 8601
        assert row["record"] == "event" and len(row["date"]) == 10 and row["time"].endswith("Z")


def test_csv_is_spreadsheet_ready(ledger: Ledger) -> None:
    """Names beside did:keys, distributions as rows of their own, and no cell a spreadsheet reads as a formula."""
    from node.exports import csv_cell

    state = ledger.state()
    rows = list(csv.DictReader(io.StringIO(export_text(state, "csv"))))
    named = [r for r in rows if r["author"] in state.names]
    assert all(r["author_name"] == state.names[r["author"]] for r in named)
    distribution_rows = [r for r in rows if r["record"] == "distribution"]
    assert len(distribution_rows) == sum(len(d.payout.lines) for d in state.distributions)
    assert csv_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)" and csv_cell("@SUM(A1)") == "'@SUM(A1)"
    assert csv_cell("-2+3") == "'-2+3" and csv_cell("plain") == "plain" and csv_cell(["a", "b"]) == "a b"
