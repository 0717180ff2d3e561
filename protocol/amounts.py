"""Amounts to distribute, in their units' minor units, and the days a period runs between (SPEC.md §17).

An amount is an exact decimal above 0 with no more decimal places than its unit's minor unit (cents for
euro, none for yen), and a line's amount is written with exactly that many.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from types import MappingProxyType
from typing import Final

from .decimals import exact as exact_context
from .decimals import parse_decimal
from .errors import InvalidData

#: Decimal places of each known unit's minor unit (cents for currencies). Any other unit: DEFAULT_MINOR_UNITS.
MINOR_UNITS: Final[Mapping[str, int]] = MappingProxyType({
    "euro": 2, "eur": 2, "usd": 2, "dollar": 2, "gbp": 2, "pound": 2, "chf": 2, "franc": 2, "sek": 2, "nok": 2,
    "dkk": 2, "cad": 2, "aud": 2, "jpy": 0, "yen": 0, "krw": 0, "hour": 2, "day": 2, "minute": 0,
})
DEFAULT_MINOR_UNITS: Final = 2
_DAY: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def minor_units(unit: str) -> int:
    """The decimal places of `unit`'s minor unit: 2 for euro (cents), 0 for yen; 2 when not in MINOR_UNITS."""
    return MINOR_UNITS.get(unit, DEFAULT_MINOR_UNITS)


def parse_amount(value: object, unit: str, what: str = "amount") -> Decimal:
    """An amount to distribute: an exact decimal > 0 with at most the unit's minor-unit places; `bad_amount`."""
    try:
        amount = parse_decimal(value, what)
    except InvalidData as exc:
        raise InvalidData("bad_amount", exc.message) from None
    if amount <= 0:
        raise InvalidData("bad_amount", f"{what}: {value!r} must be more than 0")
    places = minor_units(unit)
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)  # parse_decimal returns finite decimals
    if -exponent > places:
        raise InvalidData(
            "bad_amount", f"{what}: {value!r} has more decimal places than the minor unit of {unit} ({places})"
        )
    return amount


def format_amount(amount: Decimal, unit: str) -> str:
    """A line's amount with exactly the unit's minor-unit places: `"100.00"` euro, `"100"` yen."""
    with exact_context():
        return f"{amount.quantize(Decimal(1).scaleb(-minor_units(unit))):f}"


def parse_day(value: object, what: str) -> date:
    """A day `YYYY-MM-DD` (a period's since or until, both inclusive, UTC); `bad_time` otherwise."""
    if not isinstance(value, str) or not _DAY.fullmatch(value):
        raise InvalidData("bad_time", f"{what} must be a date YYYY-MM-DD, got {value!r:.40}")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidData("bad_time", f"{what} {value!r} is not a date") from None


def check_period(since: date | None, until: date | None) -> None:
    if since is not None and until is not None and since > until:
        raise InvalidData("bad_time_range", f"since {since.isoformat()} is after until {until.isoformat()}")
