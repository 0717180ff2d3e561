"""Claims paid once, whatever the order: issue 18's accounting failures on three real nodes, one offline.

Ana, Ben and Cleo run `tally run` on loopback. Cleo lends the coop 100 € (a debt claim). Ben's node is
stopped; Ben records a distribution of 100 € from his home while Ana records another through her running
node: each pays the loan in full. When Ben's node is back and the nodes sync, every node marks the same
one of the two `conflicting`, the loan is paid 100 € (not 200), and a distribution recorded again pays
nothing more on it. Cleo re-files her loan with --corrects: the correction inherits what was paid, so it
is owed nothing. A 0.01 € distribution pays one of two once claims a cent: the other is not used up.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import sys
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from running_nodes import Node, ok, output, run, running, start, until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[dict[str, Node]]:
    with running(tmp_path / "nodes", ("ana", "ben", "cleo")) as started:
        yield started  # a restarted node replaces its entry, so `running` stops that one


def coop(nodes: dict[str, Node], tmp_path: Path, name: str, claims: str) -> str:
    founders = ", ".join(json.dumps(n.did) for n in nodes.values())
    path = tmp_path / f"{name}.toml"
    path.write_text(f'founders = [{founders}]\n[rates.transfer]\neuro = "1"\n'
                    f'[[buckets]]\nname = "loans"\npercent = "100"\nclaims = "{claims}"\nactions = ["transfer"]\n')
    ledger = ok(nodes["ana"].home, "ledger", "create", name, "--rules", str(path))
    for node in nodes.values():
        if node.name != "ana":
            ok(node.home, "follow", ledger)
    return ledger


def state(node: Node, ledger: str) -> dict[str, Any] | None:
    return node.cli_state(ledger)


def history(node: Node, ledger: str) -> dict[str, str]:
    """Contribution id -> status at this node; {} while it does not hold the ledger yet."""
    r = run(node.home, "history", ledger, "--json")
    return {row["id"]: row["status"] for row in map(json.loads, r.stdout.splitlines())} if r.returncode == 0 else {}


def final(node: Node, ledger: str, *events: str) -> bool:
    statuses = history(node, ledger)
    return all(statuses.get(e) == "final" for e in events)


def preview(node: Node, ledger: str, amount: str) -> list[tuple[str, str, str]]:
    data = json.loads(output(node.home, "distribute", ledger, "--amount", amount, "--unit", "euro", "--json"))
    return [(line["bucket"], line["recipient"], line["amount"]) for line in data["lines"]]


def paid(view: dict[str, Any], who: str) -> Decimal:
    """What the distributions that count paid `who`, as a node's state shows them."""
    return sum((Decimal(line["amount"]) for d in view["distributions"] if d["status"] == "valid"
                for line in d["lines"] if line["recipient"] == who), Decimal(0))


def dashboard(node: Node, path: str) -> str:
    """A dashboard page as the node's owner sees it: follow a fresh `tally open` login link, keep its cookie."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with opener.open(ok(node.home, "open"), timeout=60) as reply:
        reply.read()
    with opener.open(f"{node.address}{path}", timeout=60) as reply:
        page: str = reply.read().decode()
    return page


def test_a_loan_is_paid_once_though_two_nodes_recorded_it_apart(nodes: dict[str, Node], tmp_path: Path) -> None:
    ana, ben, cleo = nodes["ana"], nodes["ben"], nodes["cleo"]
    ledger = coop(nodes, tmp_path, "Van coop", "debt")
    loan = ok(cleo.home, "contribute", ledger, "--action", "transfer", "--quantity", "100", "--unit", "euro")
    until(lambda: loan in history(ana, ledger), "the loan at Ana's")
    ok(ana.home, "endorse", loan)
    until(lambda: final(ben, ledger, loan), "the loan final at Ben's")

    ben.proc.terminate()  # Ben goes offline
    ben.proc.wait(timeout=60)
    lines = [row.split() for row in output(ben.home, "distribute", ledger, "--amount", "100", "--unit", "euro",
                                       "--record").splitlines()]
    offline = lines[-1][-1]
    online = output(ana.home, "distribute", ledger, "--amount", "100", "--unit", "euro", "--record").splitlines()[-1]
    assert lines[0][1:3] == [cleo.did, "100.00"]  # Ben's distribution paid the whole loan too

    back = start("ben", ben.home, ben.did, ana.address, cleo.address)
    nodes["ben"] = back
    views = {}
    for node in (ana, back, cleo):
        views[node.name] = until(
            lambda node=node: (s := state(node, ledger)) and len(s["distributions"]) == 2 and s, f"both at {node.name}")
    statuses = {name: {d["id"]: d["status"] for d in view["distributions"]} for name, view in views.items()}
    assert len({json.dumps(s, sort_keys=True) for s in statuses.values()}) == 1  # every node agrees
    assert sorted(statuses["ana"].values()) == ["conflicting", "valid"]
    assert set(statuses["ana"]) == {offline, online}
    assert len({view["digest"] for view in views.values()}) == 1
    assert all(paid(view, cleo.did) == Decimal(100) for view in views.values())  # not 200
    # What the member sees: the CLI and the dashboard say which one counts nothing, and what to do.
    (clash,) = [d for d, status in statuses["ana"].items() if status == "conflicting"]
    assert f"distribution\t{clash}\t" in output(ana.home, "state", ledger) and "record it again" in \
        output(ana.home, "state", ledger)
    row = re.search(rf'<tr[^>]*data-id="{clash}"[^>]*>(.*?)</tr>', dashboard(ana, f"/ledgers/{ledger}/shares"), re.S)
    assert row and "conflicting: counts nothing" in row.group(1)

    # Recorded again after the sync: it counts both, and the loan is paid.
    assert preview(ana, ledger, "100") == [("loans", ledger, "100.00")]
    again = output(ana.home, "distribute", ledger, "--amount", "100", "--unit", "euro", "--record").splitlines()[-1]
    until(lambda: (s := state(cleo, ledger)) and any(d["id"] == again and d["status"] == "valid"
                                                      for d in s["distributions"]), "the new one at Cleo's")

    # Cleo re-files the loan unchanged as a correction; Ben accepts it. It inherits what was paid.
    fix = ok(cleo.home, "contribute", ledger, "--action", "transfer", "--quantity", "100", "--unit", "euro",
             "--corrects", loan)
    until(lambda: fix in history(back, ledger), "the correction at Ben's")
    ok(back.home, "endorse", fix)
    until(lambda: final(ana, ledger, fix), "the correction final at Ana's")
    assert preview(ana, ledger, "100.01") == [("loans", ledger, "100.01")]  # the audit saw 100.01 paid


def test_a_cent_does_not_use_up_the_once_claim_it_does_not_reach(nodes: dict[str, Node], tmp_path: Path) -> None:
    ana, ben, cleo = nodes["ana"], nodes["ben"], nodes["cleo"]
    ledger = coop(nodes, tmp_path, "Bonus coop", "once")
    claims = [ok(node.home, "contribute", ledger, "--action", "transfer", "--quantity", "50", "--unit", "euro")
              for node in (ben, cleo)]
    until(lambda: all(c in history(ana, ledger) for c in claims), "the claims at Ana's")
    for claim in claims:
        ok(ana.home, "endorse", claim)
    (line,) = preview(ana, ledger, "0.01")
    output(ana.home, "distribute", ledger, "--amount", "0.01", "--unit", "euro", "--record")
    other = cleo.did if line[1] == ben.did else ben.did
    assert preview(ana, ledger, "100") == sorted([("loans", ledger, "50.00"), ("loans", other, "50.00")])
