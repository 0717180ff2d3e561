"""Hostile input through the node's real API (real store, loopback sockets): every bound of SPEC.md §1.1 is
refused with its code, what arrives by sync beyond it is kept as evidence and costs nothing, exports are safe
to open, and names cannot impersonate (SPEC.md §16.1, §17.6, §18.5)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from inprocess_api import TOKEN, InProcessApi, code_of, inprocess_api

from node.web.layout import short
from protocol import CID, SigningKey

ANA = SigningKey(bytes(range(50, 82)))
BEN = SigningKey(bytes(range(51, 83)))
PLEDGE = {"amount": "1", "unit": "euro", "every": "month"}
#: Notes a spreadsheet would run as formulas (OWASP's examples), and one that tries to start a row of its own.
FORMULAS = ["=HYPERLINK(\"http://x\",\"y\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(1+1)*cmd|' /C calc'!A0",
            "\t=1", "\uff1d1+1", "  =1", "fine\r\n=1+1,\"x\"\r\n"]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[InProcessApi]:
    async with inprocess_api(tmp_path, ANA, BEN) as api:
        yield api


async def coop(api: InProcessApi) -> tuple[str, CID]:
    status, data = await api.call("POST", "/ledgers", {"name": "Bike coop", "rules": {}})
    assert status == 201
    ledger = data["id"]
    admission = await api.created(f"/ledgers/{ledger}/members", {"agent": BEN.did})
    return ledger, CID.parse(admission)


async def test_pledges_from_before_1970_are_refused_and_from_1970_cost_what_a_recent_one_costs(
    api: InProcessApi,
) -> None:
    ledger, admission = await coop(api)
    for start in ("0000-01", "1969-12", "10000-01"):
        assert code_of(await api.call("POST", f"/ledgers/{ledger}/pledges", {**PLEDGE, "start": start})) == (
            400, "bad_time")
    assert code_of(await api.call("POST", f"/ledgers/{ledger}/pledges",
                                  {**PLEDGE, "start": "2020-01", "until": "0001-01"})) == (400, "bad_time")
    sizes = []
    for start in ("2026-01", "1970-01"):
        await api.created(f"/ledgers/{ledger}/pledges", {**PLEDGE, "start": start})
        status, state = await api.call("GET", f"/ledgers/{ledger}/state")
        assert status == 200
        sizes.append(len(json.dumps(state)))
    # A hundred pledges from year 0 by a hostile member's node: evidence, not counted, no bigger state.
    for _ in range(100):
        await api.other_writes(ledger, "vf.commitment", {
            "resourceQuantity": {"hasNumericalValue": "1", "hasUnit": "euro"}, "every": "month",
            "start": "0000-01", "member": admission})
    status, state = await api.call("GET", f"/ledgers/{ledger}/state")
    assert status == 200 and len(state["pledges"]) == 2
    assert sum(p["code"] == "bad_time" for p in state["invalid"]) == 100
    status, data = await api.call("GET", f"/ledgers/{ledger}/pledges?as_of=2026-12-03")
    since_1970 = next(p for p in data["pledges"] if p["start"] == "1970-01")
    assert since_1970["period_count"] == 684 and len(since_1970["periods"]) == 24
    assert since_1970["due"] == "684" and since_1970["periods"][-1]["period"] == "2026-12"
    # the 1970 pledge added about what the 2026 one did (one pledge's row), not 684 periods' worth
    assert sizes[1] - sizes[0] < 2 * sizes[0]
    assert len(json.dumps(state)) < sizes[1] + 100 * 400  # each invalid entry costs one short row


async def test_csv_exports_neutralise_formulas_and_keep_one_row_per_event(api: InProcessApi) -> None:
    ledger, admission = await coop(api)
    for note in FORMULAS:
        await api.other_writes(ledger, "vf.event", {
            "action": "work", "effortQuantity": {"hasNumericalValue": "1", "hasUnit": "hour"}, "note": note,
            "member": admission})
    async with api.client.get(f"/api/v1/ledgers/{ledger}/export?format=csv",
                              headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status == 200
        text = await resp.text()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(FORMULAS)
    expected = {n.replace("\r\n", "\n") for n in FORMULAS}
    assert {r["note"] for r in rows} == {n if n.startswith("fine") else "'" + n for n in expected}
    for row in rows:  # no cell of any row starts a formula
        for cell in row.values():
            assert not cell.lstrip(" ").startswith(("=", "+", "@", "\t", "\uff1d")), cell
        assert row["quantity"] == "1"
    assert "\r" not in text


async def test_names_that_impersonate_or_hide_are_refused_and_shown_with_the_did(api: InProcessApi) -> None:
    ledger, admission = await coop(api)
    await api.other_writes(ledger, "member.about", {"name": "Alice", "member": admission})
    for name, code, status in (("\u0410lice", "confusable_name", 409), ("Alice", "confusable_name", 409),
                               ("\u202eecilA", "bad_name", 400), ("\u200b\u200b", "bad_name", 400),
                               ("An\u0085a", "bad_name", 400)):
        assert code_of(await api.call("POST", f"/ledgers/{ledger}/about", {"name": name})) == (status, code), name
    await api.created(f"/ledgers/{ledger}/about", {"name": " Cafe\u0301 Ana "})
    status, state = await api.call("GET", f"/ledgers/{ledger}/state")
    assert state["names"] == {BEN.did: "Alice", ANA.did: "Café Ana"}
    # A look-alike written by a node that did not check: stored, and shown with the end of its did:key.
    carol = SigningKey(bytes(range(52, 84)))
    assert short(BEN.did, ANA.did, {BEN.did: "Alice"}) == "Alice"
    names = {BEN.did: "Alice", carol.did: "\u0410lice"}
    assert short(carol.did, ANA.did, names) == f"\u0410lice (…{carol.did[-8:]})"
    assert short(BEN.did, ANA.did, names) == f"Alice (…{BEN.did[-8:]})"
    assert code_of(await api.call("POST", "/ledgers", {"name": "Bike\u202e coop"})) == (400, "bad_name")


async def test_json_nested_past_any_limit_is_a_clean_refusal(api: InProcessApi) -> None:
    deep = "[" * 30_000 + "]" * 30_000
    async with api.client.post("/api/v1/ledgers", data=deep, headers={
            "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] in ("bad_request", "bad_body")
    status, _ = await api.call("GET", "/identity")
    assert status == 200
