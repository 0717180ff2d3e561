"""A pledge's standing costs the same whenever it began (SPEC.md §18.5 "Bounded cost"), and the closed form
gives exactly what walking every period one by one gives."""

from __future__ import annotations

import math
import random
from datetime import date
from decimal import Decimal
from fractions import Fraction

from protocol_helpers import cid_of, key

from protocol.pledges import MAX_LISTED_PERIODS, MAX_MONTH, MIN_MONTH, PERIODS, Payment, Pledge, standing

A = key(1)
BIG = "123456789012345678.123456789012345678"


def walked(pledge: Pledge, payments: list[Payment], as_of: date) -> list[tuple[int, Fraction, Fraction, Fraction]]:
    """Every period begun by `as_of`, one by one in exact rationals, as SPEC §18.5 defines them."""
    last = as_of.year * 12 + as_of.month - 1
    if pledge.until is not None:
        last = min(last, pledge.until)
    paid = sum((Fraction(p.amount) for p in payments if p.day <= as_of), Fraction(0))
    left, so_far, rows = paid, Fraction(0), []
    for month in range(pledge.start, last + 1, PERIODS[pledge.every]):
        years, basis = (month - pledge.start) // 12, Fraction(pledge.basis if pledge.basis is not None else 1)
        due = (Fraction(pledge.amount) + Fraction(pledge.escalate) * years) * basis
        if pledge.indexation:  # compounded for at most 100 years, rounded half up to cents (euro)
            grown = Fraction(pledge.amount) * (1 + Fraction(pledge.indexation) / 100) ** min(years, 100) * basis
            due = Fraction(math.floor(grown * 100 + Fraction(1, 2)), 100)
        covered = min(due, left)
        left -= covered
        so_far += due
        rows.append((month, due, covered, max(Fraction(0), so_far - paid)))
    return rows


def a_pledge(rng: random.Random) -> Pledge:
    start = rng.randrange(MIN_MONTH, 2030 * 12)
    until = None if rng.random() < 0.5 else start + rng.randrange(0, 400)
    basis = None if rng.random() < 0.5 else Decimal(rng.randrange(1, 10**6)) / 100
    indexed = rng.random() < 0.3
    return Pledge(A.did, "ledger", Decimal(rng.randrange(1, 10**8)) / 1000, "euro", None if basis is None else "m2",
                  basis, rng.choice(list(PERIODS)), start, until,
                  Decimal(0) if indexed else Decimal(rng.randrange(0, 500)) / 100, "", cid_of(b"member"),
                  Decimal(rng.randrange(1, 10_001)) / 100 if indexed else Decimal(0))


def test_the_closed_form_equals_walking_every_period() -> None:
    rng = random.Random(14)
    for _ in range(300):
        pledge = a_pledge(rng)
        as_of = date(rng.choice((rng.randrange(1970, 2060), rng.randrange(2100, 2300))), rng.randrange(1, 13),
                     rng.randrange(1, 29))
        payments = [Payment(cid_of(bytes([i])), date(rng.randrange(1970, 2060), 1, 1),
                            Decimal(rng.randrange(1, 10**7)) / 10) for i in range(rng.randrange(0, 6))]
        rows = walked(pledge, payments, as_of)
        result = standing(pledge, payments, as_of)
        assert result.count == len(rows)
        assert Fraction(result.due) == sum((r[1] for r in rows), Fraction(0))
        expected_arrears = rows[-1][3] if rows else Fraction(0)
        assert Fraction(result.arrears) == expected_arrears
        assert Fraction(result.credit) == max(Fraction(0), Fraction(result.paid) - Fraction(result.due))
        listed = [(p.month, Fraction(p.due), Fraction(p.paid), Fraction(p.arrears)) for p in result.periods]
        assert listed == rows[-MAX_LISTED_PERIODS:] if rows else listed == []


def test_a_pledge_from_1970_lists_as_many_periods_as_one_from_last_year() -> None:
    rng = random.Random(1)
    old = a_pledge(rng)
    old = Pledge(old.provider, old.receiver, old.amount, old.unit, None, None, "month", MIN_MONTH, None,
                 Decimal("0.05"), "", old.member)
    recent = Pledge(old.provider, old.receiver, old.amount, old.unit, None, None, "month", 2025 * 12, None,
                    Decimal("0.05"), "", old.member)
    far = date(9999, 12, 31)
    assert standing(old, [], far).count == MAX_MONTH - MIN_MONTH + 1  # 96,360 periods, summed in closed form
    assert len(standing(old, [], far).periods) == len(standing(recent, [], far).periods) == MAX_LISTED_PERIODS
    indexed = Pledge(old.provider, old.receiver, Decimal(BIG), old.unit, "m2", Decimal(BIG), "month", MIN_MONTH,
                     None, Decimal(0), "", old.member, Decimal(100))  # doubling every year, on 36-digit figures
    result = standing(indexed, [], far)
    grown = Fraction(BIG) ** 2 * 2**100
    assert Fraction(result.periods[-1].due) == Fraction(math.floor(grown * 100 + Fraction(1, 2)), 100)
    assert result.count == MAX_MONTH - MIN_MONTH + 1 and len(result.periods) == MAX_LISTED_PERIODS
