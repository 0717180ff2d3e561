"""Exact decimals: every quantity, rate, percent and amount of the protocol (SPEC.md §1.1, §14).

Never floats: a decimal is read from its canonical string (`parse_decimal`), written back as it
(`format_decimal`), and computed with in a context that traps rounding (`exact`).
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from decimal import Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow, localcontext
from typing import Final

from .errors import InvalidData

MAX_DECIMAL_PLACES: Final = 18  # digits after the point
MAX_INTEGER_DIGITS: Final = 18  # digits before it, leading zeros aside
_DECIMAL: Final = re.compile(r"-?([0-9]+)(?:\.([0-9]+))?")
#: Precision of every exact computation (sums, products, dues): 4 × the 36 digits a quantity may have, far
#: above any figure the bounded inputs can reach (SPEC.md §1.1). Python's default of 28 would round.
EXACT_DIGITS: Final = 4 * (MAX_INTEGER_DIGITS + MAX_DECIMAL_PLACES)


def parse_decimal(value: object, what: str) -> Decimal:
    """An exact decimal from a string like `"2.5"`, an int or a finite Decimal; `bad_quantity` otherwise.

    Never a float or a bool. Strings are `-?digits(.digits)?`: no exponent, no
    sign `+`, no spaces, at most 18 digits after the point and 18 before it.
    The result is canonical (`Decimal("2.5")` for `"2.50"`). `what` names the key.
    """
    if type(value) is str:  # a str subclass is parsed, not looked up
        found = _PARSED.get(value)
        if found is not None:
            return found
    if isinstance(value, bool | float) or not isinstance(value, str | int | Decimal):
        raise InvalidData(
            "bad_quantity", f"{what}: {value!r} is not an exact decimal; write decimals as strings, e.g. \"2.5\""
        )
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidData("bad_quantity", f"{what}: {value} is not a finite decimal")
        text = format_decimal(value)
    else:
        text = str(value)
    match = _DECIMAL.fullmatch(text)
    if match is None:
        raise InvalidData(
            "bad_quantity", f"{what}: {value!r} is not a decimal like \"2.5\" (digits, an optional point and "
            "digits; no exponent, no spaces)"
        )
    integer, fraction = match.group(1), match.group(2) or ""
    if len(fraction) > MAX_DECIMAL_PLACES or len(integer.lstrip("0")) > MAX_INTEGER_DIGITS:
        raise InvalidData(
            "bad_quantity", f"{what}: {value!r} has more than {MAX_INTEGER_DIGITS} digits before the point or "
            f"{MAX_DECIMAL_PLACES} after it"
        )
    parsed = Decimal(format_decimal(Decimal(text)))
    if type(value) is str and len(_PARSED) < _PARSED_KEPT:
        _PARSED[value] = parsed
    return parsed


#: Decimal strings parsed before, each with its (immutable) decimal: a ledger's quantities repeat ("1", "2.5"),
#: and a fold keeps one decimal of each then, not one per event; bounded, so any text cannot fill it.
_PARSED: Final[dict[str, Decimal]] = {}
_PARSED_KEPT: Final = 4096


def exact() -> AbstractContextManager[Context]:
    """A Decimal context of EXACT_DIGITS that traps rounding: a figure SPEC calls exact never loses a digit
    silently (the bounds on inputs keep every figure far below this precision)."""
    return localcontext(Context(prec=EXACT_DIGITS, traps=[Inexact, InvalidOperation, DivisionByZero, Overflow]))


def format_decimal(d: Decimal) -> str:
    """The canonical string of a finite decimal: no exponent, no trailing zeros after the point, no `-0`."""
    if not d.is_finite():
        raise ValueError(f"{d} is not a finite decimal")
    if d.is_zero():
        return "0"
    text = format(d, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def bounded_decimal(value: object, what: str, *, low: Decimal, high: Decimal | None = None, low_open: bool = False,
              canonical: bool = False) -> Decimal:
    """A decimal within [low, high] (or (low, high] when low_open); canonical: only its canonical string."""
    if canonical and not isinstance(value, str):
        raise InvalidData("bad_quantity", f"{what}: {value!r} must be a decimal string, e.g. \"2.5\"")
    d = parse_decimal(value, what)
    if canonical and format_decimal(d) != value:
        raise InvalidData("bad_quantity", f"{what}: {value!r} is not in canonical form ({format_decimal(d)!r})")
    if d < low or (low_open and d == low) or (high is not None and d > high):
        bounds = f"{'(' if low_open else '['}{format_decimal(low)}, {'…' if high is None else format_decimal(high)}]"
        raise InvalidData("bad_quantity", f"{what}: {format_decimal(d)} is outside {bounds}")
    return d
