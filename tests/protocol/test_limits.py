"""SPEC.md §1.1: every input bound the table lists is the code's, and each is refused with its code."""

from __future__ import annotations

import importlib
import pkgutil
import re
from datetime import date
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from test_state import A, B, Coop

import protocol
from protocol import InvalidData
from protocol.pledges import MAX_LISTED_PERIODS, Payment, parse_month, parse_pledge, standing
from protocol.rules import Rules
from protocol.rules_file import MAX_RULES_DEPTH, parse_rules_toml
from protocol.state import FINAL

SPEC = (Path(__file__).resolve().parents[2] / "SPEC.md").read_text()
LIMITS = SPEC[SPEC.index("### 1.1 Limits") : SPEC.index("## 2. DAG-CBOR")]
#: `NAME = value` written in the §1.1 table.
NAMED = re.findall(r"`([A-Z_]+) = ([0-9]+)`", LIMITS)
BIG = "123456789012345678.123456789012345678"  # 36 significant digits: the most a quantity may have


def constants() -> dict[str, set[float]]:
    """Every upper-case numeric constant of every protocol module and of the node's HTTP guards, by name."""
    found: dict[str, set[float]] = {}
    modules = [f"protocol.{m.name}" for m in pkgutil.iter_modules(protocol.__path__)]
    for name in [*modules, "node.http.guard", "node.http.context"]:
        for key, value in vars(importlib.import_module(name)).items():
            if key.isupper() and isinstance(value, int | float) and not isinstance(value, bool):
                found.setdefault(key, set()).add(value)
    return found


def test_the_spec_limits_table_names_the_codes_constants() -> None:
    assert len(NAMED) >= 15
    known = constants()
    for name, value in NAMED:
        assert int(value) in known.get(name, set()), f"SPEC §1.1 says {name} = {value}; protocol/ has {known.get(name)}"


@pytest.mark.parametrize("month", ["0000-01", "1969-12", "10000-01", "2027-13", "2027-1", 202701, None])
def test_pledge_months_outside_1970_to_9999_are_bad_time(month: object) -> None:
    with pytest.raises(InvalidData) as exc:
        parse_month(month, "start")
    assert exc.value.code == "bad_time"


def test_pledge_months_at_the_bounds_are_accepted() -> None:
    assert parse_month("1970-01", "start") == 1970 * 12
    assert parse_month("9999-12", "until") == 9999 * 12 + 11
    for key in ("start", "until"):
        body = {"resourceQuantity": {"hasNumericalValue": "1", "hasUnit": "euro"}, "every": "month",
                "start": "1970-01", "member": Coop([A]).id, key: "0000-01"}
        with pytest.raises(InvalidData) as exc:
            parse_pledge(body, author=A.did, ledger=Coop([A]).id)
        assert exc.value.code == "bad_time"


def test_a_pledge_from_year_0_is_invalid_evidence_and_not_counted() -> None:
    coop = Coop([A])
    body = {"resourceQuantity": {"hasNumericalValue": "1", "hasUnit": "euro"}, "every": "month", "member": coop.id}
    old = coop.append(A, "vf.commitment", {**body, "start": "0000-01"})
    new = coop.append(A, "vf.commitment", {**body, "start": "1970-01"})
    state = coop.state()
    assert [p.id for p in state.pledges] == [new.id]
    assert [(p.id, p.code) for p in state.invalid] == [(old.id, "bad_time")]
    since_1970 = state.pledges[0].standing(date(2026, 12, 3))
    assert since_1970.count == 56 * 12 + 12 and len(since_1970.periods) == MAX_LISTED_PERIODS
    assert since_1970.due == since_1970.count and since_1970.periods[-1].label == "2026-12"


def test_totals_and_claims_of_36_digit_quantities_are_exact() -> None:
    coop = Coop([A, B], rates={"work": {"hour": BIG}})
    events = [coop.event(A, coop.id, BIG) for _ in range(3)]
    for e in events:
        coop.endorse(B, coop.id, e)
    state = coop.state()
    assert all(c.status == FINAL for c in state.contributions)
    totals = state.totals()[A.did]
    # Fractions are exact by nature: the expected figures cannot round.
    assert Fraction(totals.quantities["work"]["hour"]) == Fraction(BIG) * 3
    assert Fraction(totals.claim) == Fraction(BIG) ** 2 * 3
    assert len(str(totals.claim).replace(".", "")) > 70  # far beyond the 28 digits Python keeps by default


def test_pledge_dues_of_30_plus_digit_amounts_are_exact() -> None:
    coop = Coop([A])
    amount, basis, escalate = "98765432109876543.21098765432109876", "123456789012.3456789", "0.000000000000000001"
    pledge = parse_pledge({"resourceQuantity": {"hasNumericalValue": amount, "hasUnit": "euro"}, "per": "m2",
                           "basis": basis, "escalate": escalate, "every": "month", "start": "2020-01",
                           "member": coop.id}, author=A.did, ledger=coop.id)
    payments = [Payment(coop.id, date(2020, 1, 1), Decimal(BIG))]
    result = standing(pledge, payments, date(2021, 12, 31))  # 24 months: 12 at amount, 12 at amount + escalate
    due = (Fraction(amount) * 24 + Fraction(escalate) * 12) * Fraction(basis)
    assert Fraction(result.due) == due and len(str(result.due).replace(".", "")) > 50
    assert Fraction(result.arrears) == due - Fraction(BIG) and result.credit == 0
    assert Fraction(result.periods[-1].due) == (Fraction(amount) + Fraction(escalate)) * Fraction(basis)


def test_rules_toml_nested_deeper_than_the_limit_is_bad_rules() -> None:
    for deep in ("x = " + "[" * 500 + "]" * 500, "x = " + "{a = " * 500 + "1" + "}" * 500):
        with pytest.raises(InvalidData) as exc:
            parse_rules_toml(deep)
        assert exc.value.code == "bad_rules" and "nest" in exc.value.message
    with pytest.raises(InvalidData) as exc:
        parse_rules_toml("x = " + "[" * (MAX_RULES_DEPTH + 1) + "]" * (MAX_RULES_DEPTH + 1))
    assert exc.value.code == "bad_rules"
    assert parse_rules_toml("x = " + "[" * MAX_RULES_DEPTH + "]" * MAX_RULES_DEPTH)["x"]
    # brackets inside strings and comments do not count
    text = 'purpose = "' + "[" * 100 + '"\nnote = \'\'\'' + "{" * 100 + "\'\'\'\n# " + "[" * 100 + "\n"
    assert parse_rules_toml(text)["purpose"] == "[" * 100
    with pytest.raises(InvalidData) as exc:
        parse_rules_toml("purpose = 'x'\n" * 10_000)
    assert exc.value.code == "bad_rules"
    with pytest.raises(InvalidData) as exc:
        parse_rules_toml("units = [")
    assert exc.value.code == "bad_rules"


def test_rules_nested_deeper_than_the_limit_are_bad_rules_when_walked() -> None:
    deep: dict[str, object] = {}
    for _ in range(MAX_RULES_DEPTH + 2):
        deep = {"a": deep}
    with pytest.raises(InvalidData) as exc:
        Rules.from_config({"rates": deep}, name="Coop", creator=A.did)
    assert exc.value.code == "bad_rules"
