"""Governance and solidarity pledges across three real nodes: `tally run` processes on loopback, linked
with --peer, each on its own home, every write through the CLI (which writes through each running node).

Ana, Ben and Cleo found a coop together. They vote on motions (Ben changes his ballot), close them and
every node agrees on the winner and the totals; a score vote's winner differs from the plurality winner;
blanks count as zero in one ledger and as no opinion in another; ties are broken by the runoff, then by
the order of the options; a passed amendment raises a rate and later claims use it on every node. Then a
federation: Ben's house coop joins Ana's solidarity fund with the did:key of its node, pledges
0.10 €/m²/month on 300 m², pays three months (citing its own ledger's transfers), misses one, and every
node shows the same arrears; the citations resolve only where the house's ledger may be seen.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from running_nodes import Node, ok, refused, run, running, until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Node]]:
    with running(tmp_path_factory.mktemp("gov-nodes"), ("ana", "ben", "cleo")) as started:
        yield started


def coop(nodes: dict[str, Node], tmp_path: Path, name: str, rules: str = "") -> str:
    """A members-only ledger founded by all three (Ana writes the genesis); the others follow it."""
    founders = ", ".join(json.dumps(n.did) for n in nodes.values())
    path = tmp_path / f"{name}.toml"
    path.write_text(f"founders = [{founders}]\n{rules}")
    ledger = ok(nodes["ana"].home, "ledger", "create", name, "--rules", str(path))
    for node in nodes.values():
        if node.name != "ana":
            ok(node.home, "follow", ledger)
    for node in nodes.values():
        until(lambda node=node: node.cli_state(ledger) is not None, f"{name} at {node.name}")
    return ledger


def vote(node: Node, motion: str, **scores: int) -> str:
    return ok(node.home, "vote", motion, *(f"--score={o}={s}" for o, s in scores.items()))


def decided(nodes: dict[str, Node], motion: str, ballots: int) -> dict[str, Any]:
    """Close `motion` at its proposer's (Ana's) once her node holds `ballots` ballots; every node's view of it."""
    ana = nodes["ana"]
    until(lambda: len((ana.motion(motion) or {}).get("all_ballots", [])) == ballots, "the ballots at Ana's")
    closing = ok(ana.home, "motion", "close", motion)
    views = [until(lambda n=n: (m := n.motion(motion)) and m["closing"] == closing and m, f"closed at {n.name}")
             for n in nodes.values()]
    for view in views[1:]:
        assert {k: view[k] for k in ("winner", "totals", "averages", "ballots", "tie_break")} == \
            {k: views[0][k] for k in ("winner", "totals", "averages", "ballots", "tie_break")}
    return views[0]


def test_a_motion_changed_ballot_and_score_beating_plurality(nodes: dict[str, Node], tmp_path: Path) -> None:
    ana, ben, cleo = nodes["ana"], nodes["ben"], nodes["cleo"]
    ledger = coop(nodes, tmp_path, "Bike coop")
    motion = ok(ana.home, "motion", "create", ledger, "--title", "Where do we meet?", "--option", "cafe",
                "--option", "park", "--option", "hall")
    until(lambda: ben.motion(motion) and cleo.motion(motion), "the motion at Ben's and Cleo's")
    vote(ana, motion, cafe=5, park=3, hall=0)
    first = vote(ben, motion, cafe=0, park=4, hall=5)
    vote(cleo, motion, cafe=5, park=4, hall=0)
    refused(ben.home, "vote_out_of_range", "vote", motion, "--score", "park=6")
    refused(ben.home, "unknown_option", "vote", motion, "--score", "beach=5")
    changed = vote(ben, motion, cafe=1, park=5, hall=2)  # Ben's latest ballot replaces his first
    refused(ben.home, "not_proposer", "motion", "close", motion)
    result = decided(nodes, motion, ballots=4)
    # Cafe is the first choice of two voters of three (the plurality winner); park has the best total.
    assert result["totals"] == {"cafe": 11, "park": 12, "hall": 2}
    assert result["winner"] == "park" and result["closed"] and result["voters"] == 3
    counted = {b["id"] for b in result["ballots"]}
    assert changed in counted and first not in counted
    refused(cleo.home, "motion_closed", "vote", motion, "--score", "cafe=5")
    state = ana.cli_state(ledger)
    assert state is not None and [m["winner"] for m in state["motions"]] == ["park"]


def test_blanks_counted_both_ways_and_ties(nodes: dict[str, Node], tmp_path: Path) -> None:
    ana, ben, cleo = nodes["ana"], nodes["ben"], nodes["cleo"]
    winners = {}
    for blank in ("zero", "no-opinion"):
        ledger = coop(nodes, tmp_path, f"Blank {blank}", f'[voting]\nblank = "{blank}"\nquorum = "0.5"\n')
        motion = ok(ana.home, "motion", "create", ledger, "--title", "Bread", "--option", "rye", "--option", "spelt")
        until(lambda motion=motion: ben.motion(motion) and cleo.motion(motion), "the motion everywhere")
        vote(ana, motion, rye=4, spelt=5)
        vote(ben, motion, rye=4, spelt=5)
        vote(cleo, motion, rye=3)  # Cleo never tasted spelt: a blank
        result = decided(nodes, motion, ballots=3)
        winners[blank] = result["winner"]
        if blank == "zero":
            assert result["totals"] == {"rye": 11, "spelt": 10}
        else:
            assert result["scored"] == {"rye": 3, "spelt": 2}
            assert result["averages"] == {"rye": "3.6667", "spelt": "5"}
    assert winners == {"zero": "rye", "no-opinion": "spelt"}

    ledger = coop(nodes, tmp_path, "Ties")
    runoff = ok(ana.home, "motion", "create", ledger, "--title", "Tie", "--option", "x", "--option", "y")
    order = ok(ana.home, "motion", "create", ledger, "--title", "Even", "--option", "y", "--option", "x")
    until(lambda: ben.motion(order) and cleo.motion(order), "the motions everywhere")
    vote(ana, runoff, x=5, y=0)
    vote(ben, runoff, x=0, y=3)
    vote(cleo, runoff, x=1, y=3)
    result = decided(nodes, runoff, ballots=3)
    assert result["totals"] == {"x": 6, "y": 6}  # tied: y is scored above x on two ballots of three
    assert (result["winner"], result["tie_break"]) == ("y", "runoff")
    vote(ana, order, x=5, y=0)
    vote(ben, order, x=0, y=5)
    result = decided(nodes, order, ballots=2)
    assert (result["winner"], result["tie_break"]) == ("y", "listed-first")  # even runoff: y is listed first


def test_an_amendment_changes_later_claims_on_every_node(nodes: dict[str, Node], tmp_path: Path) -> None:
    ana, ben, cleo = nodes["ana"], nodes["ben"], nodes["cleo"]
    ledger = coop(nodes, tmp_path, "Rates coop", '[rates.work]\nhour = "20"\n')
    before = ok(cleo.home, "contribute", ledger, "--action", "work", "--quantity", "2", "--unit", "hour")
    amend = tmp_path / "amend.toml"
    amend.write_text('[rates.work]\nhour = "30"\n')
    bad = tmp_path / "bad.toml"
    bad.write_text('[rates.work]\nkm = "1"\n')
    refused(ana.home, "bad_amendment", "motion", "create", ledger, "--title", "Km", "--amend", str(bad))
    motion = ok(ana.home, "motion", "create", ledger, "--title", "Raise the hourly rate", "--amend", str(amend))
    until(lambda: ben.motion(motion) and cleo.motion(motion), "the motion everywhere")
    vote(ben, motion, yes=5, no=0)
    vote(cleo, motion, yes=4, no=2)
    result = decided(nodes, motion, ballots=2)
    assert result["winner"] == "yes" and result["amended"] is True
    for node in (ben, cleo):
        until(lambda node=node: node.cli_state(ledger)["rules"]["rates"]["work"]["hour"] == "30",
              f"the amended rate at {node.name}")
    after = ok(ben.home, "contribute", ledger, "--action", "work", "--quantity", "2", "--unit", "hour")

    def claims(node: Node) -> dict[str, str]:
        r = run(node.home, "history", ledger, "--json")
        return {row["id"]: row["claim"] for row in map(json.loads, r.stdout.splitlines())}

    for node in nodes.values():
        until(lambda node=node: claims(node) == {before: "40", after: "60"}, f"the claims at {node.name}")
    digests = {until(lambda n=n: n.cli_state(ledger), "state")["digest"] for n in nodes.values()}
    assert len(digests) == 1


def test_a_house_pledges_to_the_federation_and_every_node_agrees_on_arrears(
    nodes: dict[str, Node], tmp_path: Path
) -> None:
    ana, ben, cleo = nodes["ana"], nodes["ben"], nodes["cleo"]
    # Ana's and Cleo's nodes run the federation's fund; Ben's node is the house coop's always-on node.
    rules = tmp_path / "fund.toml"
    rules.write_text(f'founders = [{json.dumps(ana.did)}, {json.dumps(cleo.did)}]\nunits = ["euro", "hour"]\n'
                     '[rates.transfer]\neuro = "1"\n')
    fund = ok(ana.home, "ledger", "create", "Solidarity fund", "--rules", str(rules))
    for node in (ben, cleo):
        ok(node.home, "follow", fund)
    ok(ana.home, "member", "admit", fund, ben.did)  # the house joins with its node's did:key
    until(lambda: (s := ben.cli_state(fund)) and ben.did in s["members"], "the fund at the house's node")
    house = ok(ben.home, "ledger", "create", "House Rosa")  # the house's own books, members only

    pledge = ok(ben.home, "pledge", "create", fund, "--amount", "0.10", "--unit", "euro", "--per", "m2",
                "--basis", "300", "--every", "month", "--start", "2027-01")
    internal = []
    for day in ("2027-01-05", "2027-02-05", "2027-03-05"):  # April is missed
        own = ok(ben.home, "contribute", house, "--action", "transfer", "--quantity", "30", "--unit", "euro",
                 "--at", day, "--note", "solidarity transfer to the fund")
        internal.append(own)
        ok(ben.home, "contribute", fund, "--action", "transfer", "--quantity", "30", "--unit", "euro",
           "--fulfills", pledge, "--at", day, "--cites", own)
    refused(cleo.home, "bad_payment", "contribute", fund, "--action", "transfer", "--quantity", "30", "--unit",
            "euro", "--fulfills", pledge)  # only the pledger pays their pledge
    refused(ben.home, "unknown_pledge", "contribute", fund, "--action", "transfer", "--quantity", "30", "--unit",
            "euro", "--fulfills", fund)

    def standing(node: Node) -> dict[str, Any] | None:
        found = node.pledges(fund, "2027-04-20")
        return found[0] if found and len(found[0]["payments"]) == 3 else None

    views = [until(lambda n=n: standing(n), f"the pledge and its payments at {n.name}") for n in nodes.values()]
    for view in views:
        assert view == views[0]
    view = views[0]
    assert (view["pledger"], view["due"], view["paid"], view["arrears"]) == (ben.did, "120", "90", "30")
    assert [(p["period"], p["due"], p["paid"], p["arrears"]) for p in view["periods"]] == [
        ("2027-01", "30", "30", "0"), ("2027-02", "30", "30", "0"), ("2027-03", "30", "30", "0"),
        ("2027-04", "30", "0", "30"),
    ]
    states = [until(lambda n=n: n.cli_state(fund), "state") for n in nodes.values()]
    assert len({s["digest"] for s in states}) == 1 and states[0]["pledges"][0]["id"] == pledge

    # The payments cite the house's own entries by CID; nothing of the house's ledger reached the fund's nodes.
    status, entry = ben.api("GET", f"/entries/{internal[0]}", timeout=30)
    assert status == 200 and entry["ledger"] == house
    for node in (ana, cleo):
        status, answer = node.api("GET", f"/entries/{internal[0]}", timeout=30)
        assert (status, answer["error"]["code"]) == (404, "unknown_entry")
        assert node.cli_state(house) is None
