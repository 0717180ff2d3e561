"""The open-value ledger across three real nodes: `tally run` processes on loopback, linked with --peer.

Ana, Ben and Cleo each run a node on their own home. Ana founds a members-only coop; Ben and Cleo
follow it, and it reaches them only once they are admitted. They log, validate, reject and correct
contributions and change a verdict, all through the CLI (which writes through each running node),
and every node ends with the same `tally state --json` members and digest. An entry a non-member
writes reaches the others as evidence: listed under `invalid`, never counted.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from running_nodes import Node, ok, run, running, until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

RULES = """
visibility = "members"
[validation]
accept = 2
reject = 1
[rates.work]
hour = "25"
[rates.use]
day = "25"
"""


def state(node: Node, ledger: str) -> dict[str, Any] | None:
    """`tally state --json`, or None while this node does not hold the ledger."""
    return node.cli_state(ledger, strict=True)


def statuses(node: Node, ledger: str) -> dict[str, str]:
    r = run(node.home, "history", ledger, "--json")
    if r.returncode != 0:
        return {}
    return {row["id"]: row["status"] for row in map(json.loads, r.stdout.splitlines())}


def holds(node: Node, ledger: str, *ids: str) -> bool:
    have = statuses(node, ledger)
    return all(i in have for i in ids)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Node]]:
    with running(tmp_path_factory.mktemp("coop-nodes"), ("ana", "ben", "cleo")) as started:
        yield started


def test_a_coop_across_three_nodes(nodes: dict[str, Node], tmp_path: Path) -> None:
    ana, ben, cleo = nodes["ana"], nodes["ben"], nodes["cleo"]
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    ledger = ok(ana.home, "ledger", "create", "Bike coop", "--rules", str(rules))

    # Ben follows it at once, but a members-only ledger is served to members only. That Ana has answered
    # Ben's request for it by then: a public ledger he asks for next reaches him (one link, in order).
    ok(ben.home, "follow", ledger)
    board = ok(ana.home, "ledger", "create", "Notice board", "--public")
    ok(ben.home, "follow", board)
    until(lambda: state(ben, board) is not None, "the public notice board at Ben's")
    assert state(ben, ledger) is None
    ok(ana.home, "member", "admit", ledger, ben.did)  # the lone founder's sponsorship suffices
    until(lambda: (s := state(ben, ledger)) and ben.did in s["members"], "the ledger to reach Ben once admitted")

    # Cleo needs both members: Ana sponsors, Ben (once he sees Ana's sponsorship) sponsors too.
    ok(cleo.home, "follow", ledger)
    ok(ana.home, "member", "admit", ledger, cleo.did)
    until(lambda: cleo.did in (state(ben, ledger) or {}).get("sponsorships", {}), "Ana's sponsorship at Ben's")
    assert state(cleo, ledger) is None
    ok(ben.home, "member", "admit", ledger, cleo.did)
    until(lambda: (s := state(cleo, ledger)) and cleo.did in s["members"], "the ledger to reach Cleo once admitted")

    # Contributions, each through its author's node.
    typo = ok(ana.home, "contribute", ledger, "--action", "work", "--quantity", "5", "--unit", "hour",
              "--at", "2026-11-02")
    work = ok(ana.home, "contribute", ledger, "--action", "work", "--quantity", "6", "--unit", "hour",
              "--at", "2026-11-02", "--corrects", typo, "--note", "six hours, not five")
    ben_work = ok(ben.home, "contribute", ledger, "--action", "work", "--quantity", "4", "--unit", "hour",
                  "--from", "2026-11-03T09:00:00Z", "--to", "2026-11-03T13:00:00Z")
    oops = ok(ben.home, "contribute", ledger, "--action", "work", "--quantity", "40", "--unit", "hour")
    van = ok(cleo.home, "contribute", ledger, "--action", "use", "--quantity", "2", "--unit", "day",
             "--resource", "van")
    for node in nodes.values():
        until(lambda node=node: holds(node, ledger, typo, work, ben_work, oops, van), f"contributions at {node.name}")

    # Validation: two accepts make final, one reject rejects; Cleo changes her verdict on Ben's work.
    ok(ben.home, "endorse", work)
    ok(cleo.home, "endorse", work)
    ok(ana.home, "endorse", ben_work)
    ok(cleo.home, "endorse", ben_work, "--reject", "--note", "4 hours?")
    until(lambda: statuses(ana, ledger).get(ben_work) == "rejected", "Cleo's rejection at Ana's")
    r = run(cleo.home, "endorse", ben_work, "--reject")
    assert r.returncode == 1 and r.stderr.startswith("error: duplicate_endorsement: "), r.stderr
    ok(cleo.home, "endorse", ben_work, "--note", "checked the log")
    ok(ana.home, "endorse", van)
    ok(ben.home, "endorse", van)
    ok(ana.home, "endorse", oops, "--reject")
    r = run(cleo.home, "endorse", van)
    assert r.returncode == 1 and r.stderr.startswith("error: self_endorsement: "), r.stderr

    expected = {typo: "corrected", work: "final", ben_work: "final", oops: "rejected", van: "final"}
    members = sorted(n.did for n in nodes.values())
    for node in nodes.values():
        until(lambda node=node: statuses(node, ledger) == expected, f"the final statuses at {node.name}")

    def agreed() -> dict[str, Any] | None:
        states = [state(n, ledger) for n in nodes.values()]
        if any(s is None for s in states):
            return None
        digests = {s["digest"] for s in states if s is not None}
        return states[0] if len(digests) == 1 else None

    final = until(agreed, "the same state digest on every node")
    assert final["members"] == members
    assert final["totals"] == {
        ana.did: {"quantities": {"work": {"hour": "6"}}, "claim": "150"},
        ben.did: {"quantities": {"work": {"hour": "4"}}, "claim": "100"},
        cleo.did: {"quantities": {"use": {"day": "2"}}, "claim": "50"},
    }
    assert final["pending"] == [] and final["invalid"] == [] and final["waiting"] == []
    for node in nodes.values():
        s = state(node, ledger)
        assert s is not None and (s["members"], s["digest"]) == (members, final["digest"])


def test_a_non_members_entry_from_a_peer_is_evidence(nodes: dict[str, Node]) -> None:
    ana, cleo = nodes["ana"], nodes["cleo"]
    ledger = ok(ana.home, "ledger", "create", "Tool library", "--public")
    ok(cleo.home, "follow", ledger)
    until(lambda: state(cleo, ledger) is not None, "the public ledger at Cleo's")
    # Cleo is no member here: the CLI refuses, so she signs a raw entry claiming to be a founder.
    r = run(cleo.home, "contribute", ledger, "--action", "work", "--quantity", "3", "--unit", "hour")
    assert r.returncode == 1 and r.stderr.startswith("error: not_member: "), r.stderr
    body = {"action": "work", "effortQuantity": {"hasNumericalValue": "3", "hasUnit": "hour"},
            "member": {"/": ledger}}
    forged = ok(cleo.home, "append", "--ledger", ledger, "--kind", "vf.event", "--body", json.dumps(body))

    def evidence() -> dict[str, Any] | None:
        s = state(ana, ledger)
        found = [p for p in (s or {}).get("invalid", []) if p["id"] == forged]
        return s if found else None

    s = until(evidence, "Cleo's entry as evidence at Ana's")
    [problem] = s["invalid"]
    assert (problem["author"], problem["kind"], problem["code"]) == (cleo.did, "vf.event", "not_member")
    assert s["members"] == [ana.did] and s["totals"] == {} and s["pending"] == []
    assert statuses(ana, ledger) == {}
    until(lambda: (c := state(cleo, ledger)) is not None and c["digest"] == s["digest"], "the same digest at Cleo's")
