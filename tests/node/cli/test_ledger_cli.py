"""The member's commands through the real CLI, real homes, no node running.

Ana founds a bike coop (K = 2 accepts, R = 1 reject), admits Ben (the lone founder's sponsorship
is enough), then Cleo (two sponsors: Ana, then Ben naming Ana's sponsorship). Homes exchange
their entries in between, as nodes would (`exchange`: what sync does, without a node). They log
work and a van's use, endorse, reject, correct and change a verdict; the claims are domain.md's
150 / 100 / 50. Every refusal exits 1 with its code and appends nothing.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from running_nodes import exchange, ok, output, run

RULES = """
units = ["hour", "euro", "day"]
[validation]
accept = 2
reject = 1
[rates.work]
hour = "25"
[rates.use]
day = "25"
[rates.transfer]
euro = "1"
"""


def state(home: Path, ledger: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(output(home, "state", ledger, "--json"))
    return data


def history(home: Path, ledger: str, *args: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output(home, "history", ledger, "--json", *args).splitlines()]


def entry_count(home: Path, ledger: str) -> int:
    return len(output(home, "log", "--ledger", ledger, "--json").splitlines())


@dataclass
class Coop:
    root: Path
    ledger: str
    homes: dict[str, Path]
    dids: dict[str, str]
    ids: dict[str, str] = field(default_factory=dict)

    def everyone(self) -> list[Path]:
        return list(self.homes.values())


@pytest.fixture(scope="module")
def coop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coop]:
    root = tmp_path_factory.mktemp("coop")
    homes = {name: root / name for name in ("ana", "ben", "cleo", "dan")}
    dids = {name: ok(home, "init") for name, home in homes.items()}
    (root / "rules.toml").write_text(RULES)
    ana, ben, cleo = homes["ana"], homes["ben"], homes["cleo"]
    ledger = ok(ana, "ledger", "create", "Bike coop", "--rules", str(root / "rules.toml"))
    c = Coop(root, ledger, homes, dids)

    # The lone founder's sponsorship is enough: min(K = 2, 1 member) = 1.
    c.ids["admit_ben"] = ok(ana, "member", "admit", ledger, dids["ben"])
    assert state(ana, ledger)["members"] == sorted([dids["ana"], dids["ben"]])
    exchange(*c.everyone())
    # Now two members: Cleo needs both. Ana's sponsorship alone does not admit her.
    c.ids["ana_sponsors_cleo"] = ok(ana, "member", "admit", ledger, dids["cleo"])
    s = state(ana, ledger)
    assert dids["cleo"] not in s["members"]
    assert s["sponsorships"] == {dids["cleo"]: [c.ids["ana_sponsors_cleo"]]}
    exchange(*c.everyone())
    c.ids["ben_sponsors_cleo"] = ok(ben, "member", "admit", ledger, dids["cleo"])
    assert dids["cleo"] in state(ben, ledger)["members"]
    exchange(*c.everyone())

    # Contributions (domain.md: Ana 6 h, Ben 4 h at 25 €/h; Cleo's van 2 days at 25 €/day).
    c.ids["ana_typo"] = ok(ana, "contribute", ledger, "--action", "work", "--quantity", "5", "--unit", "hour",
                           "--at", "2026-11-02", "--note", "brakes")
    c.ids["ana_work"] = ok(ana, "contribute", ledger, "--action", "work", "--quantity", "6.0", "--unit", "hour",
                           "--at", "2026-11-02", "--note", "brakes, all six hours",
                           "--corrects", c.ids["ana_typo"])
    c.ids["ben_work"] = ok(ben, "contribute", ledger, "--action", "work", "--quantity", "4", "--unit", "hour",
                           "--from", "2026-11-03T09:00:00Z", "--to", "2026-11-03T13:00:00Z")
    c.ids["ben_oops"] = ok(ben, "contribute", ledger, "--action", "work", "--quantity", "40", "--unit", "hour",
                           "--at", "2026-11-04T10:00:00+01:00")
    c.ids["cleo_van"] = ok(cleo, "contribute", ledger, "--action", "use", "--quantity", "2", "--unit", "day",
                           "--resource", "van", "--from", "2026-11-05", "--to", "2026-11-06")
    exchange(*c.everyone())

    # Endorsements: each needs two accepts; one reject rejects; a changed verdict counts as the latest.
    for who, what in (("ben", "ana_work"), ("cleo", "ana_work"), ("ana", "ben_work"), ("ana", "cleo_van"),
                      ("ben", "cleo_van")):
        c.ids[f"{who}_on_{what}"] = ok(homes[who], "endorse", c.ids[what])
    c.ids["cleo_rejects_ben_work"] = ok(cleo, "endorse", c.ids["ben_work"], "--reject", "--note", "4 h?")
    c.ids["ana_rejects_oops"] = ok(ana, "endorse", c.ids["ben_oops"], "--reject", "--note", "40 h is a typo")
    exchange(*c.everyone())
    assert {r["id"]: r["status"] for r in history(ana, ledger)}[c.ids["ben_work"]] == "rejected"
    c.ids["cleo_accepts_ben_work"] = ok(cleo, "endorse", c.ids["ben_work"], "--note", "checked the log")
    exchange(*c.everyone())
    yield c


def test_members_were_admitted_by_enough_sponsors(coop: Coop) -> None:
    s = state(coop.homes["ana"], coop.ledger)
    assert s["members"] == sorted(coop.dids[n] for n in ("ana", "ben", "cleo"))
    assert s["sponsorships"] == {} and s["left"] == []
    # Ben's sponsorship named Ana's, as ledger_ops builds it.
    rows = [json.loads(line)
            for line in output(coop.homes["ana"], "log", "--ledger", coop.ledger, "--json").splitlines()]
    body = next(r["body"] for r in rows if r["id"] == coop.ids["ben_sponsors_cleo"])
    assert body["agent"] == coop.dids["cleo"] and body["with"] == [{"/": coop.ids["ana_sponsors_cleo"]}]
    assert body["member"] == {"/": coop.ids["admit_ben"]}


def test_statuses_claims_and_totals(coop: Coop) -> None:
    rows = {r["id"]: r for r in history(coop.homes["cleo"], coop.ledger)}
    ids = coop.ids
    assert {k: rows[ids[k]]["status"] for k in ("ana_typo", "ana_work", "ben_work", "ben_oops", "cleo_van")} == {
        "ana_typo": "corrected", "ana_work": "final", "ben_work": "final", "ben_oops": "rejected",
        "cleo_van": "final",
    }
    assert rows[ids["ana_typo"]]["corrected_by"] == ids["ana_work"]
    assert rows[ids["ana_work"]]["corrects"] == ids["ana_typo"]
    assert rows[ids["ana_work"]]["quantity"] == "6" and rows[ids["ana_work"]]["claim"] == "150"
    assert rows[ids["ben_work"]]["accepts"] == sorted([coop.dids["ana"], coop.dids["cleo"]])
    assert rows[ids["ben_work"]]["rejects"] == []
    assert rows[ids["ben_oops"]]["rejects"] == [coop.dids["ana"]]
    assert rows[ids["cleo_van"]]["classification"] == "van"
    totals = state(coop.homes["ben"], coop.ledger)["totals"]
    assert totals == {
        coop.dids["ana"]: {"quantities": {"work": {"hour": "6"}}, "claim": "150"},
        coop.dids["ben"]: {"quantities": {"work": {"hour": "4"}}, "claim": "100"},
        coop.dids["cleo"]: {"quantities": {"use": {"day": "2"}}, "claim": "50"},
    }


def test_every_home_computes_the_same_state(coop: Coop) -> None:
    states = [state(coop.homes[n], coop.ledger) for n in ("ana", "ben", "cleo", "dan")]
    assert len({s["digest"] for s in states}) == 1 and len(states[0]["digest"]) == 64
    assert all(s["members"] == states[0]["members"] for s in states)
    assert states[0]["pending"] == [] and states[0]["invalid"] == []


def test_history_filters(coop: Coop) -> None:
    ana, ids, dids = coop.homes["ana"], coop.ids, coop.dids

    def listed(*args: str) -> list[str]:
        return [r["id"] for r in history(ana, coop.ledger, *args)]

    # Oldest event first: the two of 2 Nov (ts order), Ben's of 3 and 4 Nov, Cleo's of 5 Nov.
    assert listed() == [ids[k] for k in ("ana_typo", "ana_work", "ben_work", "ben_oops", "cleo_van")]
    assert listed("--agent", dids["ben"]) == [ids["ben_work"], ids["ben_oops"]]
    assert listed("--agent", coop.ledger) == listed()  # the coop receives them all
    assert listed("--action", "use") == [ids["cleo_van"]]
    assert listed("--status", "final") == [ids["ana_work"], ids["ben_work"], ids["cleo_van"]]
    assert listed("--status", "rejected") == [ids["ben_oops"]]
    assert listed("--status", "pending") == []
    assert listed("--since", "2026-11-03", "--until", "2026-11-04") == [ids["ben_work"], ids["ben_oops"]]
    # 10:00+01:00 is 09:00Z: a date-time bound is exact and inclusive.
    assert listed("--since", "2026-11-04T09:00:00Z") == [ids["ben_oops"], ids["cleo_van"]]
    assert listed("--until", "2026-11-04T08:59:59Z") == [ids[k] for k in ("ana_typo", "ana_work", "ben_work")]
    assert listed("--agent", dids["cleo"], "--action", "work") == []


def test_history_human_and_csv(coop: Coop) -> None:
    ana = coop.homes["ana"]
    lines = output(ana, "history", coop.ledger).splitlines()
    assert len(lines) == 5
    van = next(line for line in lines if coop.ids["cleo_van"] in line)
    assert van.startswith("2026-11-05..2026-11-06\tfinal\tuse 2 day (van)\t") and "claim 50" in van
    out = output(ana, "history", coop.ledger, "--csv", "--status", "final")
    table = list(csv.reader(io.StringIO(out)))
    from node.ledger_views import HISTORY_COLUMNS

    assert table[0] == list(HISTORY_COLUMNS)
    rows = [dict(zip(table[0], row, strict=True)) for row in table[1:]]
    assert [r["id"] for r in rows] == [coop.ids[k] for k in ("ana_work", "ben_work", "cleo_van")]
    assert rows[1]["accepts"] == " ".join(sorted([coop.dids["ana"], coop.dids["cleo"]]))
    assert rows[1]["at"] == "" and rows[1]["from"] == "2026-11-03T09:00:00Z" and rows[1]["claim"] == "100"
    r = run(ana, "history", coop.ledger, "--csv", "--json")
    assert r.returncode == 2 and r.stdout == ""
    r = run(ana, "history", coop.ledger, "--status", "done")
    assert r.returncode == 2


def test_state_human(coop: Coop) -> None:
    out = output(coop.homes["dan"], "state", coop.ledger).splitlines()
    digest = state(coop.homes["dan"], coop.ledger)["digest"]
    assert out[0] == f"ledger\t{coop.ledger}\tBike coop"
    assert out[-1] == f"digest\t{digest}"
    assert sorted(line.split("\t")[1] for line in out if line.startswith("member\t")) == sorted(
        coop.dids[n] for n in ("ana", "ben", "cleo"))
    assert any(line.startswith(f"total\t{coop.dids['cleo']}\tclaim 50\tuse 2 day") for line in out)


REFUSALS = [
    # (who, command, code)
    ("dan", ["contribute", "{L}", "--action", "work", "--quantity", "1", "--unit", "hour"], "not_member"),
    ("ana", ["contribute", "{L}", "--action", "work", "--quantity", "1", "--unit", "km"], "unknown_unit"),
    ("ana", ["contribute", "{L}", "--action", "work", "--quantity", "-1", "--unit", "hour"], "bad_quantity"),
    ("ana", ["contribute", "{L}", "--action", "work", "--quantity", "abc", "--unit", "hour"], "bad_quantity"),
    ("ana", ["contribute", "{L}", "--action", "work", "--quantity", "1.5e0", "--unit", "hour"], "bad_quantity"),
    ("ana", ["contribute", "{L}", "--action", "work", "--quantity", "1", "--unit", "hour",
             "--from", "2026-11-03", "--to", "2026-11-02"], "bad_time_range"),
    ("ana", ["contribute", "{L}", "--action", "work", "--quantity", "1", "--unit", "hour",
             "--from", "2026-11-03"], "bad_time_range"),
    ("ana", ["contribute", "{L}", "--action", "work", "--quantity", "1", "--unit", "hour",
             "--at", "2026-11-03T10:00"], "bad_time"),
    ("ana", ["contribute", "{L}", "--action", "wrok", "--quantity", "1", "--unit", "hour"], "unknown_action"),
    ("ana", ["contribute", "{L}", "--action", "work", "--quantity", "1", "--unit", "hour",
             "--provider", "bob"], "bad_agent"),
    ("ana", ["contribute", "{L}", "--action", "work", "--quantity", "1", "--unit", "hour",
             "--provider", "{ben}", "--receiver", "{cleo}"], "not_party"),
    ("ana", ["contribute", "{L}", "--action", "work", "--quantity", "1", "--unit", "hour",
             "--corrects", "{ben_work}"], "bad_correction"),
    ("ana", ["endorse", "{ana_work}"], "self_endorsement"),
    ("cleo", ["endorse", "{ana_work}"], "duplicate_endorsement"),
    ("ana", ["endorse", "{ben_oops}", "--reject"], "duplicate_endorsement"),
    ("ben", ["endorse", "{admit_ben}"], "not_contribution"),
    ("ben", ["endorse", "{L}"], "not_contribution"),
    ("dan", ["endorse", "{ben_work}"], "not_member"),
    ("ana", ["member", "admit", "{L}", "{ben}"], "already_member"),
    ("ana", ["member", "admit", "{L}", "did:key:z6Mknope"], "bad_agent"),
    ("dan", ["member", "admit", "{L}", "{dan}"], "not_member"),
    ("dan", ["member", "leave", "{L}"], "not_member"),
    ("ana", ["contribute", "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua", "--action", "work",
             "--quantity", "1", "--unit", "hour"], "unknown_ledger"),
    ("ana", ["endorse", "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua"], "unknown_entry"),
]


@pytest.mark.parametrize(("who", "command", "code"), REFUSALS, ids=[f"{c}:{w}:{m[0]}" for w, m, c in REFUSALS])
def test_refusals_append_nothing(coop: Coop, who: str, command: list[str], code: str) -> None:
    values = {"L": coop.ledger, **coop.dids, **coop.ids}
    before = entry_count(coop.homes[who], coop.ledger)
    r = run(coop.homes[who], *(arg.format(**values) for arg in command))
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stderr.startswith(f"error: {code}: "), r.stderr
    assert r.stdout == ""
    assert entry_count(coop.homes[who], coop.ledger) == before


def test_usage_errors(coop: Coop) -> None:
    ana = coop.homes["ana"]
    base = ["contribute", coop.ledger, "--action", "work", "--quantity", "1", "--unit", "hour"]
    before = entry_count(ana, coop.ledger)
    for extra in (["--at", "2026-11-02", "--from", "2026-11-01"], ["--at", "2026-11-02", "--to", "2026-11-03"]):
        r = run(ana, *base, *extra)
        assert r.returncode == 2 and "error: usage:" in r.stderr, r.stderr
    r = run(ana, "member")
    assert r.returncode == 2
    r = run(ana, "contribute", coop.ledger, "--action", "work")
    assert r.returncode == 2
    assert entry_count(ana, coop.ledger) == before


def test_leaving(tmp_path: Path) -> None:
    ana, ben = tmp_path / "ana", tmp_path / "ben"
    ben_did = ok(ben, "init")
    ok(ana, "init")
    ledger = ok(ana, "ledger", "create", "Tool library")
    ok(ana, "member", "admit", ledger, ben_did)
    exchange(ana, ben)
    ok(ben, "member", "leave", ledger)
    r = run(ben, "contribute", ledger, "--action", "work", "--quantity", "1", "--unit", "hour")
    assert r.returncode == 1 and r.stderr.startswith("error: not_member: "), r.stderr
    exchange(ana, ben)
    s = state(ana, ledger)
    assert s["left"] == [ben_did] and ben_did not in s["members"]
    assert state(ben, ledger)["digest"] == s["digest"]
    r = run(ben, "member", "leave", ledger)
    assert r.returncode == 1 and r.stderr.startswith("error: not_member: ")


def test_naming_yourself(tmp_path: Path) -> None:
    ana, ben = tmp_path / "ana", tmp_path / "ben"
    ben_did = ok(ben, "init")
    ana_did = ok(ana, "init")
    ledger = ok(ana, "ledger", "create", "Tool library")
    ok(ana, "member", "name", ledger, "Ana")
    ok(ana, "member", "name", ledger, "  Ana Silva  ")  # the latest counts; spaces at either end are trimmed
    for bad in ("", "x" * 81, "tab\there"):
        r = run(ana, "member", "name", ledger, bad)
        assert r.returncode == 1 and r.stderr.startswith("error: bad_field: "), (bad, r.stderr)
    r = run(ben, "member", "name", ledger, "Ben")  # not a member of a ledger it does not even hold
    assert r.returncode == 1 and r.stderr.startswith("error: unknown_ledger: "), r.stderr
    ok(ana, "member", "admit", ledger, ben_did)
    exchange(ana, ben)
    for bad, code in (("\u0410na Silva", "confusable_name"), ("Ana Silva", "confusable_name"),
                      ("\u202eneB", "bad_name"), ("\u200b", "bad_name")):  # Cyrillic А; an RLO; zero-width only
        r = run(ben, "member", "name", ledger, bad)
        assert r.returncode == 1 and r.stderr.startswith(f"error: {code}: "), (bad, r.stderr)
    ok(ben, "member", "name", ledger, "Ben")
    exchange(ana, ben)
    assert state(ana, ledger)["names"] == {ana_did: "Ana Silva", ben_did: "Ben"}
    lines = output(ben, "state", ledger).splitlines()
    assert f"member\t{ana_did}\tAna Silva" in lines and f"member\t{ben_did}\tBen" in lines
