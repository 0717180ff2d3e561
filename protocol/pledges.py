"""Solidarity pledges: a member's recurring transfers to the ledger, and what is owed on them.

A pledge is a ValueFlows Commitment (`vf.commitment`): the member (provider)
promises the ledger (receiver) a `transfer` of an amount every month, quarter or
year from a start month, optionally until an end month. The amount is a fixed
sum, or a rate per unit of a basis (0.10 euro per m² on 300 m²), and it may rise
each year by a fixed step (`escalate`, +0.05 euro a year) or by a percentage,
compounded (`indexation`, +5 % a year, rounded to the unit's minor unit). Payments are ordinary `transfer`
events that name the pledge in `fulfills` (protocol/valueflows.py).

`standing` says, as of a date, what was due in each period, what the payments
covered (they fill the oldest open period first) and the running arrears. All
amounts are exact decimals; months are counted as integers (year × 12 + month − 1).
SPEC.md §18.5 specifies the payload and the schedule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType
from typing import Any, Final

from .amounts import minor_units
from .cid import CID
from .decimals import exact, format_decimal, parse_decimal
from .errors import InvalidData
from .rules import UNIT_PATTERN, Rules
from .valueflows import parse_time

PLEDGE_KIND: Final = "vf.commitment"
PLEDGE_ACTION: Final = "transfer"
#: Months per period.
PERIODS: Final[Mapping[str, int]] = MappingProxyType({"month": 1, "quarter": 3, "year": 12})
MAX_NOTE_CHARS: Final = 2000
MIN_MONTH: Final = 1970 * 12  # 1970-01: nothing is owed from before the epoch of entries' ts
MAX_MONTH: Final = 9999 * 12 + 11  # 9999-12: the last month YYYY-MM can write
MAX_INDEXED_YEARS: Final = 100  # indexation compounds for at most this many years; then the due stays
MAX_LISTED_PERIODS: Final = 24  # a standing lists its latest periods only; the rest are summed
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MONTH: Final = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")
_KEYS: Final = frozenset({
    "action", "provider", "receiver", "resourceQuantity", "per", "basis", "every", "start", "until", "escalate",
    "indexation", "note", "member",
})
MAX_INDEXATION: Final = Decimal(100)  # percent a year: a pledge at most doubles each year


def parse_month(value: object, key: str) -> int:
    """`"2027-01"` as a month number (year × 12 + month − 1), within 1970-01 … 9999-12; `bad_time` otherwise."""
    match = _MONTH.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidData("bad_time", f"{key} must be a month written YYYY-MM, e.g. 2027-01")
    month = int(match.group(1)) * 12 + int(match.group(2)) - 1
    if not MIN_MONTH <= month <= MAX_MONTH:
        raise InvalidData("bad_time", f"{key} must lie within {month_text(MIN_MONTH)} … {month_text(MAX_MONTH)}")
    return month


def month_text(month: int) -> str:
    return f"{month // 12:04d}-{month % 12 + 1:02d}"


def month_of(day: date) -> int:
    return day.year * 12 + day.month - 1


@dataclass(frozen=True, slots=True)
class Pledge:
    provider: str  # the member who pledges (the entry's author)
    receiver: str  # the ledger's id
    amount: Decimal  # due each period, per basis unit when `per` is given
    unit: str  # one of the ledger's units, e.g. euro
    per: str | None  # the basis's unit, e.g. m2
    basis: Decimal | None  # how many `per` units, e.g. 300
    every: str  # month, quarter or year
    start: int  # the first period's first month
    until: int | None  # no period starts after this month
    escalate: Decimal  # added to `amount` after each full year since `start`
    note: str
    member: CID
    indexation: Decimal = Decimal(0)  # percent the amount rises after each full year, compounded (version 2)

    def due(self, month: int) -> Decimal:
        """What the period starting in `month` owes (SPEC §18.5)."""
        return self.year_due((month - self.start) // 12)

    def year_due(self, years: int) -> Decimal:
        """What each period owes `years` whole years after start: (amount + escalate × years) × basis, exactly;
        with indexation, amount × (1 + indexation/100)^years × basis rounded half up to the unit's minor unit,
        compounding for at most MAX_INDEXED_YEARS years (the figure stays bounded)."""
        if not self.indexation:
            with exact():
                return (self.amount + self.escalate * years) * (self.basis if self.basis is not None else 1)
        return self._indexed_dues(min(years, MAX_INDEXED_YEARS), only_last=True)[0]

    def _indexed_dues(self, last: int, *, only_last: bool = False) -> list[Decimal]:
        """The indexed dues of years 0 … last (or of year `last` only). Exact rational growth, then one rounding,
        so every implementation gets the same cents; in integers (no gcd of ever larger Fractions)."""
        places = minor_units(self.unit)
        growth = 1 + Fraction(self.indexation) / 100
        base = Fraction(self.amount) * Fraction(self.basis if self.basis is not None else 1) * 10**places
        first = last if only_last else 0
        num, den = base.numerator * growth.numerator**first, base.denominator * growth.denominator**first
        dues = []
        with exact():
            for _ in range(first, last + 1):
                dues.append(Decimal((2 * num + den) // (2 * den)).scaleb(-places))  # floor(x + 1/2): half up
                num, den = num * growth.numerator, den * growth.denominator
        return dues

    def count(self, as_of: date) -> int:
        """How many periods have begun by `as_of` (a period is due on its first day)."""
        last = month_of(as_of) if self.until is None else min(month_of(as_of), self.until)
        return max(0, (last - self.start) // PERIODS[self.every] + 1)

    def month(self, index: int) -> int:
        """The first month of period `index` (0, 1, …)."""
        return self.start + index * PERIODS[self.every]

    def due_before(self, index: int) -> Decimal:
        """The dues of periods 0 … index − 1, in closed form.

        Period i is due (amount + escalate × ⌊i / p⌋) × basis, p periods a year; the sum of
        ⌊i / p⌋ over i < n is p × q(q − 1)/2 + r × q, where n = q × p + r.
        """
        per_year = 12 // PERIODS[self.every]
        q, r = divmod(index, per_year)
        with exact():
            if not self.indexation:
                years = per_year * q * (q - 1) // 2 + r * q
                return (self.amount * index + self.escalate * years) * (self.basis if self.basis is not None else 1)
            # Indexed: year by year while it compounds (at most MAX_INDEXED_YEARS), then a constant due.
            dues = self._indexed_dues(min(q, MAX_INDEXED_YEARS))
            grown = min(q, MAX_INDEXED_YEARS)
            total = sum(dues[:grown], Decimal(0)) + dues[-1] * (q - grown)
            return total * per_year + dues[-1] * r


def parse_pledge(body: Mapping[str, Any], *, author: str, ledger: CID) -> Pledge:
    """A pledge's payload; its unit is checked against the rules in effect by `check_pledge`."""
    unknown = sorted(set(body) - _KEYS)
    if unknown:
        raise InvalidData("unknown_field", f"{PLEDGE_KIND} has unknown field(s): {', '.join(unknown)}")
    if body.get("action", PLEDGE_ACTION) != PLEDGE_ACTION:
        raise InvalidData("bad_pledge", "a pledge promises transfers: action is \"transfer\"")
    if body.get("provider", author) != author:
        raise InvalidData("bad_pledge", "a member pledges their own transfers: provider is the author")
    if body.get("receiver", str(ledger)) != str(ledger):
        raise InvalidData("bad_pledge", "a pledge is made to the ledger: receiver is the ledger's id")
    quantity = body.get("resourceQuantity")
    if not isinstance(quantity, dict) or set(quantity) != {"hasNumericalValue", "hasUnit"}:
        raise InvalidData("bad_quantity", "resourceQuantity must be {hasNumericalValue, hasUnit}")
    amount = parse_decimal(quantity["hasNumericalValue"], "resourceQuantity.hasNumericalValue")
    unit = quantity["hasUnit"]
    if amount <= 0:
        raise InvalidData("bad_quantity", "resourceQuantity.hasNumericalValue must be more than 0")
    if not isinstance(unit, str) or not UNIT_PATTERN.fullmatch(unit):
        raise InvalidData("unknown_unit", f"unit {unit!r:.40} is not a unit name")
    per, basis = body.get("per"), body.get("basis")
    if (per is None) != (basis is None):
        raise InvalidData("bad_pledge", "per and basis go together (a rate per unit of a basis)")
    if per is not None and (not isinstance(per, str) or not UNIT_PATTERN.fullmatch(per)):
        raise InvalidData("bad_pledge", "per must be a unit name, e.g. m2")
    base = None if basis is None else parse_decimal(basis, "basis")
    if base is not None and base <= 0:
        raise InvalidData("bad_quantity", "basis must be more than 0")
    every = body.get("every")
    if not isinstance(every, str) or every not in PERIODS:
        raise InvalidData("bad_pledge", f"every must be one of {', '.join(PERIODS)}")
    start = parse_month(body.get("start"), "start")
    until = None if body.get("until") is None else parse_month(body["until"], "until")
    if until is not None and until < start:
        raise InvalidData("bad_pledge", "until is before start")
    escalate = parse_decimal(body.get("escalate", "0"), "escalate")
    if escalate < 0:
        raise InvalidData("bad_quantity", "escalate must be at least 0")
    indexation = parse_decimal(body.get("indexation", "0"), "indexation")
    if not 0 <= indexation <= MAX_INDEXATION:
        raise InvalidData("bad_quantity", f"indexation is a percent a year from 0 to {MAX_INDEXATION}")
    if escalate and indexation:
        raise InvalidData("bad_pledge", "a pledge rises by escalate (a fixed step) or by indexation (a percent), "
                          "not both")
    note = body.get("note", "")
    if not isinstance(note, str) or len(note) > MAX_NOTE_CHARS:
        raise InvalidData("bad_field", f"note must be text of at most {MAX_NOTE_CHARS} characters")
    member = body.get("member")
    if not isinstance(member, CID):
        raise InvalidData("not_member", f"{PLEDGE_KIND} must name the author's admission (or the genesis) as member")
    return Pledge(author, str(ledger), amount, unit, per, base, every, start, until, escalate, note, member,
                  indexation)


def pledge_body(pledge: Pledge) -> dict[str, Any]:
    """The canonical payload of a pledge (what a node writes)."""
    body: dict[str, Any] = {
        "action": PLEDGE_ACTION, "provider": pledge.provider, "receiver": pledge.receiver,
        "resourceQuantity": {"hasNumericalValue": format_decimal(pledge.amount), "hasUnit": pledge.unit},
        "every": pledge.every, "start": month_text(pledge.start), "member": pledge.member,
    }
    if pledge.per is not None and pledge.basis is not None:
        body["per"], body["basis"] = pledge.per, format_decimal(pledge.basis)
    if pledge.until is not None:
        body["until"] = month_text(pledge.until)
    if pledge.escalate:
        body["escalate"] = format_decimal(pledge.escalate)
    if pledge.indexation:
        body["indexation"] = format_decimal(pledge.indexation)
    if pledge.note:
        body["note"] = pledge.note
    return body


def check_pledge(pledge: Pledge, rules: Rules) -> None:
    if pledge.indexation and rules.version < 2:
        raise InvalidData("bad_pledge", "indexation needs version 2 rules; use escalate (a fixed step)")
    if pledge.unit not in rules.units:
        raise InvalidData("unknown_unit", f"unit {pledge.unit!r} is not one of this ledger's units: "
                          f"{', '.join(rules.units)}")


def check_payment(pledge: Pledge, *, action: str, provider: str, receiver: str, unit: str) -> None:
    """A payment is a transfer of the pledge's unit from its pledger to the ledger."""
    if action != PLEDGE_ACTION or provider != pledge.provider or receiver != pledge.receiver or unit != pledge.unit:
        raise InvalidData(
            "bad_payment", f"a payment of this pledge is a transfer of {pledge.unit} from {pledge.provider} to the "
            "ledger"
        )


def payment_day(point: str | None, ts: int, *, utc: bool = True) -> date:
    """The day a payment was made: the UTC day of its hasPointInTime, else of its entry's ts. Version 1 rules
    (`utc=False`) take a hasPointInTime's date in its own offset."""
    if point is not None:
        when = parse_time(point, "hasPointInTime")
        return (when.astimezone(UTC) if utc else when).date()
    return (_EPOCH + timedelta(milliseconds=ts)).date()


@dataclass(frozen=True, slots=True)
class Payment:
    id: CID
    day: date  # its hasPointInTime, else the day of its entry's ts (UTC)
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Period:
    month: int  # its first month
    due: Decimal
    paid: Decimal  # what the payments covered of it
    arrears: Decimal  # running: everything due so far minus everything paid so far (at least 0)

    @property
    def label(self) -> str:
        return month_text(self.month)


@dataclass(frozen=True, slots=True)
class Standing:
    as_of: date
    count: int  # periods due by as_of
    periods: tuple[Period, ...]  # the latest of them, at most MAX_LISTED_PERIODS
    due: Decimal
    paid: Decimal  # payments made by as_of
    arrears: Decimal
    credit: Decimal  # paid beyond what is due so far (it fills the next periods)


def standing(pledge: Pledge, payments: Iterable[Payment], as_of: date) -> Standing:
    """Due, paid and arrears as of `as_of`, and the latest periods begun by then with what each owed, what the
    payments covered of it (they fill the oldest open period first) and the running arrears after it.

    Closed form (`Pledge.due_before`): the cost is the same for a pledge begun last month or in 1970.
    """
    zero = Decimal(0)
    count = pledge.count(as_of)
    with exact():
        paid = sum((p.amount for p in payments if p.day <= as_of), zero)
        periods = []
        first = max(0, count - MAX_LISTED_PERIODS)
        before = pledge.due_before(first)  # the listed periods are consecutive: add their dues as they come
        for index in range(first, count):
            month = pledge.month(index)
            due = pledge.due(month)
            covered = min(due, max(zero, paid - before))
            before += due
            periods.append(Period(month, due, covered, max(zero, before - paid)))
        total = pledge.due_before(count)
        return Standing(as_of, count, tuple(periods), total, paid, max(zero, total - paid), max(zero, paid - total))


@dataclass(frozen=True, slots=True)
class PledgeState:
    id: CID
    author: str
    ts: int
    pledge: Pledge
    payments: tuple[Payment, ...]  # valid payments, not rejected or corrected, by day then id

    def standing(self, as_of: date) -> Standing:
        return standing(self.pledge, self.payments, as_of)
