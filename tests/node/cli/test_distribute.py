"""`tally distribute` and `tally export` through the real CLI and API (SPEC.md §17).

domain.md's coop: Ana worked 6 h and Ben 4 h at 25 €/h, Cleo lent her van 2 days at 25 €/day; the
reserve takes 20 %. 600 € gives reserve 120, Ana 240, Ben 160, Cleo 80.

First three homes with no node, exchanging entries as sync would; then three real `tally run`
processes on loopback that record distributions, re-verify each other's, and agree on every line.
"""

from __future__ import annotations

import csv
import io
import json
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from running_nodes import Node, exchange, ok, output, refused, start, stop_all, until

RULES = """
founders = [{founders}]
[validation]
accept = 1
reject = 1
[rates.work]
hour = "25"
[rates.use]
day = "25"
[[buckets]]
name = "reserve"
percent = "20"
recipient = "ledger"
[[buckets]]
name = "members"
percent = "80"
"""
NAMES = ("ana", "ben", "cleo")
START_TIMEOUT_S = 90.0  # these nodes' start timeout (as in test_run.py), longer than running_nodes' default
POLL_S = 0.1  # these waits poll twice as often as running_nodes' default


def entry_count(home: Path, ledger: str) -> int:
    return len(output(home, "log", "--ledger", ledger, "--json").splitlines())


def claims(export: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    """The lines of every recorded distribution in a JSON-LD export: (distribution, bucket, receiver, amount)."""
    return {(n["distribution"], n["bucket"], n["receiver"], n["resourceQuantity"]["hasNumericalValue"])
            for n in export["@graph"] if n.get("@type") == "Claim"}


def expected_lines(ledger: str, dids: dict[str, str], amounts: dict[str, str]) -> list[dict[str, str]]:
    members = sorted((dids[name], amount) for name, amount in amounts.items() if name != "reserve")
    return [{"bucket": "reserve", "recipient": ledger, "amount": amounts["reserve"]}] + [
        {"bucket": "members", "recipient": did, "amount": amount} for did, amount in members]


DOMAIN = {"reserve": "120.00", "ana": "240.00", "ben": "160.00", "cleo": "80.00"}


# ---- the CLI, no node ------------------------------------------------------------------------


def test_distribute_and_export_through_the_cli(tmp_path: Path) -> None:
    homes = {name: tmp_path / name for name in NAMES}
    dids = {name: ok(home, "init") for name, home in homes.items()}
    (tmp_path / "rules.toml").write_text(RULES.format(founders=", ".join(f'"{d}"' for d in dids.values())))
    ana, ben, cleo = homes["ana"], homes["ben"], homes["cleo"]
    ledger = ok(ana, "ledger", "create", "Van coop", "--rules", str(tmp_path / "rules.toml"))
    exchange(*homes.values())
    work = {"ana": ok(ana, "contribute", ledger, "--action", "work", "--quantity", "6", "--unit", "hour",
                      "--at", "2026-05-04"),
            "ben": ok(ben, "contribute", ledger, "--action", "work", "--quantity", "4", "--unit", "hour",
                      "--at", "2026-05-05"),
            "cleo": ok(cleo, "contribute", ledger, "--action", "use", "--quantity", "2", "--unit", "day",
                       "--from", "2026-05-06", "--to", "2026-05-07")}

    # Nothing final yet: both buckets stay with the ledger.
    assert output(ana, "distribute", ledger, "--amount", "600", "--unit", "euro").splitlines() == [
        f"reserve\t{ledger}\t120.00\teuro", f"members\t{ledger}\t480.00\teuro"]
    exchange(*homes.values())
    for who, what in (("ben", "ana"), ("cleo", "ben"), ("ana", "cleo")):
        output(homes[who], "endorse", work[what])
    exchange(*homes.values())

    for home in homes.values():  # every home computes the same cents
        data = json.loads(output(home, "distribute", ledger, "--amount", "600", "--unit", "euro", "--json"))
        assert data == {"ledger": ledger, "amount": "600", "unit": "euro", "since": None, "until": None,
                        "lines": expected_lines(ledger, dids, DOMAIN)}
    may = json.loads(output(ana, "distribute", ledger, "--amount", "100", "--unit", "euro", "--json",
                            "--since", "2026-05-05", "--until", "2026-05-05"))
    assert [(line["recipient"], line["amount"]) for line in may["lines"]] == [(ledger, "20.00"),
                                                                             (dids["ben"], "80.00")]

    # Refusals append nothing.
    before = entry_count(ana, ledger)
    for code, args in (
        ("unknown_unit", ["--amount", "600", "--unit", "dollar"]),
        ("bad_amount", ["--amount", "600.001", "--unit", "euro"]),
        ("bad_amount", ["--amount", "-1", "--unit", "euro"]),
        ("bad_amount", ["--amount", "1e3", "--unit", "euro"]),
        ("bad_time", ["--amount", "600", "--unit", "euro", "--since", "May"]),
        ("bad_time_range", ["--amount", "600", "--unit", "euro", "--since", "2026-06-01", "--until", "2026-05-01"]),
    ):
        refused(ana, code, "distribute", ledger, *args, "--record")
    refused(ana, "unknown_ledger", "distribute", "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua",
            "--amount", "1", "--unit", "euro", "--record")
    assert entry_count(ana, ledger) == before

    # Recorded: the lines, then the entry's id; every home re-verifies it.
    out = output(ana, "distribute", ledger, "--amount", "600", "--unit", "euro", "--record").splitlines()
    recorded = out[-1]
    assert out[:-1] == [f"{line['bucket']}\t{line['recipient']}\t{line['amount']}\teuro"
                        for line in expected_lines(ledger, dids, DOMAIN)]
    exchange(*homes.values())
    for home in homes.values():
        assert json.loads(output(home, "state", ledger, "--json"))["invalid"] == []
        export = json.loads(output(home, "export", ledger, "--format", "jsonld"))
        assert claims(export) == {(f"urn:cid:{recorded}", line["bucket"], _iri(line["recipient"]), line["amount"])
                                  for line in expected_lines(ledger, dids, DOMAIN)}
    rows = list(csv.DictReader(io.StringIO(output(cleo, "export", ledger, "--format", "csv"))))
    events = [r for r in rows if r["record"] == "event"]
    assert len(events) == 3 and {r["claim"] for r in events} == {"150", "100", "50"}
    assert {(r["receiver"], r["quantity"]) for r in rows if r["record"] == "distribution"} == {
        (line["recipient"], line["amount"]) for line in expected_lines(ledger, dids, DOMAIN)}


def _iri(recipient: str) -> str:
    return recipient if recipient.startswith("did:") else f"urn:cid:{recipient}"


# ---- three running nodes -------------------------------------------------------------------------


@pytest.fixture
def three(tmp_path: Path) -> Iterator[tuple[dict[str, Path], dict[str, str], str, dict[str, Node]]]:
    homes = {name: tmp_path / name for name in NAMES}
    dids = {name: ok(home, "init") for name, home in homes.items()}
    (tmp_path / "rules.toml").write_text(RULES.format(founders=", ".join(f'"{d}"' for d in dids.values())))
    ledger = ok(homes["ana"], "ledger", "create", "Van coop", "--rules", str(tmp_path / "rules.toml"))
    nodes: dict[str, Node] = {}
    try:
        nodes["ana"] = start("ana", homes["ana"], dids["ana"], timeout=START_TIMEOUT_S)
        for name in ("ben", "cleo"):
            output(homes[name], "follow", ledger)
            nodes[name] = start(name, homes[name], dids[name], nodes["ana"].address, timeout=START_TIMEOUT_S)
        yield homes, dids, ledger, nodes
    finally:
        stop_all(nodes.values())


@pytest.mark.slow
def test_three_running_nodes_record_and_reverify_distributions(
    three: tuple[dict[str, Path], dict[str, str], str, dict[str, Node]],
) -> None:
    homes, dids, ledger, nodes = three
    everyone = list(nodes.values())

    def count(name: str) -> int:
        status, data = nodes[name].api("GET", f"/ledgers/{ledger}/entries")
        return len(data["entries"]) if status == 200 else 0

    def level(n: int) -> Callable[[], bool]:
        return lambda: all(count(name) == n for name in NAMES)

    until(level(1), "the genesis on every node", poll=POLL_S, logs=everyone)
    work = {"ana": ok(homes["ana"], "contribute", ledger, "--action", "work", "--quantity", "6",
                      "--unit", "hour"),
            "ben": ok(homes["ben"], "contribute", ledger, "--action", "work", "--quantity", "4",
                      "--unit", "hour"),
            "cleo": ok(homes["cleo"], "contribute", ledger, "--action", "use", "--quantity", "2",
                       "--unit", "day")}
    until(level(4), "the contributions on every node", poll=POLL_S, logs=everyone)
    for who, what in (("ben", "ana"), ("cleo", "ben"), ("ana", "cleo")):
        output(homes[who], "endorse", work[what])
    until(level(7), "the endorsements on every node", poll=POLL_S, logs=everyone)

    # Every node previews the same cents through its API.
    query = urllib.parse.urlencode({"amount": "600", "unit": "euro"})
    for name in NAMES:
        status, data = nodes[name].api("GET", f"/ledgers/{ledger}/distribution?{query}")
        assert status == 200 and data["lines"] == expected_lines(ledger, dids, DOMAIN), data
    status, data = nodes["ben"].api("GET", f"/ledgers/{ledger}/distribution?amount=6.001&unit=euro")
    assert (status, data["error"]["code"]) == (400, "bad_amount")
    assert nodes["ben"].api("GET", f"/ledgers/{ledger}/distribution?{query}", owner=False)[0] == 404  # members only

    # Ana records 600 € through her node (the CLI posts to it); Ben records 100 € through the API.
    first = json.loads(output(homes["ana"], "distribute", ledger, "--amount", "600", "--unit", "euro",
                              "--record", "--json"))
    assert first["lines"] == expected_lines(ledger, dids, DOMAIN)
    status, second = nodes["ben"].api("POST", f"/ledgers/{ledger}/distributions", {"amount": "100", "unit": "euro"})
    assert status == 201, second
    # 100 €: reserve 20; members 80 over 300 of claims: 40, 26.666…, 13.333…: 26.67 and 13.33 by largest remainder
    assert second["lines"] == expected_lines(ledger, dids, {"reserve": "20.00", "ana": "40.00", "ben": "26.67",
                                                            "cleo": "13.33"})
    status, refused_answer = nodes["ben"].api("POST", f"/ledgers/{ledger}/distributions",
                                              {"amount": 1.5, "unit": "euro"})
    assert (status, refused_answer["error"]["code"]) == (400, "bad_amount")

    # Cleo appends a forged one (a cent moved from Ana to Ben) as a raw entry.
    forged_lines = [[line["bucket"], line["recipient"], line["amount"]] for line in first["lines"]]
    for line in forged_lines:
        if line[1] == dids["ana"]:
            line[2] = "239.99"
        elif line[1] == dids["ben"]:
            line[2] = "160.01"
    rows = [json.loads(row) for row in output(homes["ana"], "log", "--ledger", ledger, "--json").splitlines()]
    recorded = next(row["body"] for row in rows if row["id"] == first["id"])
    forged_body = {**recorded, "lines": forged_lines, "member": {"/": ledger}}
    forged = ok(homes["cleo"], "append", "--ledger", ledger, "--kind", "ledger.distribution",
                "--body", json.dumps(forged_body))
    until(level(10), "both distributions and the forgery on every node", poll=POLL_S, logs=everyone)

    def verdicts(name: str) -> tuple[list[tuple[str, str]], set[tuple[str, str, str, str]]]:
        status, state = nodes[name].api("GET", f"/ledgers/{ledger}/state")
        assert status == 200, state
        status, export = nodes[name].api("GET", f"/ledgers/{ledger}/export?format=jsonld")
        assert status == 200, export
        return [(p["id"], p["code"]) for p in state["invalid"]], claims(export)

    want = {(f"urn:cid:{d['id']}", line["bucket"], _iri(line["recipient"]), line["amount"])
            for d in (first, second) for line in d["lines"]}
    for name in NAMES:
        assert verdicts(name) == ([(forged, "distribution_mismatch")], want), name
    request = urllib.request.Request(f"{nodes['cleo'].address}/api/v1/ledgers/{ledger}/export?format=csv",
                                     headers={"Authorization": f"Bearer {nodes['cleo'].token}"})
    with urllib.request.urlopen(request, timeout=60) as resp:
        assert resp.headers.get_content_type() == "text/csv"
        rows = list(csv.DictReader(io.StringIO(resp.read().decode())))
    assert [r["record"] for r in rows].count("event") == 3  # one row per event, then the distributions' lines
    assert {r["id"] for r in rows if r["record"] == "distribution"} == {first["id"], second["id"]}
