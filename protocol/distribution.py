"""Value equations: splitting an amount of income among buckets and contributions.

`distribute` is the whole computation, pure and exact: it takes a ledger's rules,
the amount and its unit, the final contributions it may count and the payouts of
earlier recorded distributions, and returns the lines (bucket, recipient, amount)
that sum exactly to the amount. SPEC.md §17 specifies it; in short:

- Buckets go in order. Straight mode: a bucket is its percent of the whole amount.
  Remaining mode: its percent of what the buckets before it left.
- A bucket with a recipient pays it ("ledger" is the ledger itself). A bucket without
  one is shared among the contributions of its `actions` (all when empty) in the
  period, in proportion to their weights: equity → the claim value; debt → what is
  still owed on it (the claim minus what debt buckets of earlier distributions in
  this unit paid on it, never below 0); once → the claim value if no once bucket of
  an earlier distribution in this unit shared it, else 0.
- Caps: a contribution never gets more than its weight in remaining mode, nor in a
  debt or once bucket in either mode. What a capped (or empty) bucket cannot pay
  flows to the next bucket in remaining mode; in straight mode it stays with the
  ledger as a line (that bucket, the ledger). What the last remaining bucket leaves
  goes to the ledger as a line (the last bucket, the ledger).
- Shares are exact rationals until the end. Then each line is rounded down to the
  unit's minor unit and the cents still missing go one each to the lines with the
  largest remainders, ties to the smaller recipient id, then to the earlier bucket.
  Lines of zero are left out. So the lines sum exactly to the amount, and every node
  computes the same cents.

`parse_distribution` reads a `ledger.distribution` payload; the state
(protocol/state.py) recomputes it from the entries it names and refuses it with
`distribution_mismatch` when a line differs.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType
from typing import Any, Final, Protocol

from .amounts import check_period, format_amount, minor_units, parse_amount, parse_day
from .cid import CID
from .decimals import exact as exact_context
from .decimals import format_decimal
from .errors import InvalidData
from .identity import public_key_from_did

# `X as X`: re-exported, as the state's modules (state.py, ledger_state.py, prepared.py, validity.py, fold.py) import
# them from here
from .payouts import DistributionRecord as DistributionRecord
from .payouts import Line
from .payouts import Payout as Payout
from .payouts import RecordedDistribution as RecordedDistribution
from .payouts import conflicting as conflicting
from .rules import UNIT_PATTERN, Rules
from .valueflows import Event, parse_time

DISTRIBUTION_KIND: Final = "ledger.distribution"
MAX_LINES: Final = 4096  # lines in one ledger.distribution (the payload limit binds first)
EQUITY, DEBT, ONCE = "equity", "debt", "once"
_PAYLOAD_KEYS: Final = frozenset({"amount", "unit", "since", "until", "lines", "counted", "member"})
_FIXED: Final = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]+)?")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_MS: Final = 86_400_000
_HUNDRED: Final = Fraction(100)


# ---- what the computation takes and gives ----------------------------------------------


class Claimant(Protocol):
    """A final contribution as the value equation sees it (protocol.state.Contribution is one)."""

    @property
    def id(self) -> CID: ...

    @property
    def ts(self) -> int: ...

    @property
    def event(self) -> Event: ...

    @property
    def claim(self) -> Decimal: ...

    @property
    def origin(self) -> CID | None: ...  # the contribution a correction (lineage) started from; None: itself


# ---- the computation -------------------------------------------------------------------


def distribute(
    rules: Rules,
    ledger: CID | str,
    amount: Decimal,
    unit: str,
    contributions: Iterable[Claimant],
    earlier: Iterable[Payout] = (),
    since: date | None = None,
    until: date | None = None,
) -> Payout:
    """Split `amount` of `unit` by the ledger's value equation (module docstring; SPEC.md §17).

    `contributions` are the FINAL contributions that may count (the caller filters on
    status); `earlier` the payouts of the recorded distributions they were counted
    against (only those in `unit` reduce debt and once claims; the caller leaves out
    conflicting ones, `conflicting`).
    """
    if unit not in rules.units:
        raise InvalidData("unknown_unit", f"unit {unit!r:.40} is not one of this ledger's units: "
                          f"{', '.join(rules.units)}")
    amount = parse_amount(amount, unit)
    check_period(since, until)
    ledger_id = str(ledger)
    # Version 2 keys what was paid by the original of a correction lineage (a correction inherits it).
    key = _lineage if rules.version > 1 else _entry
    paid_before: dict[bytes, Fraction] = defaultdict(Fraction)
    once_before: set[bytes] = set()
    for payout in earlier:
        if payout.unit == unit:
            for raw, value in payout.paid.items():
                paid_before[raw] += value
            once_before |= payout.once
    low, high = _period_ms(since, until)
    candidates = [c for c in contributions if c.claim > 0 and (low is None or low <= _when_ms(c) < high)]

    total = Fraction(amount)
    rest = total  # what the buckets before this one left
    exact: dict[tuple[int, str], Fraction] = defaultdict(Fraction)
    shares: dict[tuple[int, str], dict[bytes, Fraction]] = defaultdict(dict)  # debt and once shares, per line
    paid: dict[bytes, Fraction] = defaultdict(Fraction)
    once: set[bytes] = set()
    for index, bucket in enumerate(rules.buckets):
        straight = bucket.mode == "straight"
        base = (total if straight else rest) * Fraction(bucket.percent) / _HUNDRED
        if bucket.recipient is not None:
            target = ledger_id if bucket.recipient == "ledger" else bucket.recipient
            exact[(index, target)] += base
            rest -= base
            continue
        sharing = [c for c in candidates if not bucket.actions or c.event.action in bucket.actions]
        owed: list[tuple[bytes, str, Fraction]] = []  # debt and once: (claim, provider, weight > 0)
        if bucket.claims == EQUITY:
            weights = _equity_weights(sharing)
        else:
            owed = _owed(sharing, bucket.claims, key, paid_before, paid, once_before, once)
            weights = defaultdict(Fraction)
            for _, provider, value in owed:
                weights[provider] += value
        weight = sum(weights.values(), Fraction(0))
        capped = not straight or bucket.claims != EQUITY
        given = Fraction(0) if weight == 0 else (min(base, weight) if capped else base)
        factor = given / weight if weight else Fraction(0)
        if factor:
            for recipient, value in weights.items():
                exact[(index, recipient)] += value * factor
            for raw, provider, value in owed:  # what a debt or once bucket paid on each claim
                share = value * factor
                line = shares[(index, provider)]
                line[raw] = line.get(raw, Fraction(0)) + share
                if bucket.claims == DEBT:
                    paid[raw] += share
                else:
                    once.add(raw)
        if straight:
            # What a straight bucket cannot pay stays with the ledger: it took its base off the top.
            if base > given:
                exact[(index, ledger_id)] += base - given
            rest -= base
        else:
            rest -= given
    if rest > 0:  # only after a remaining bucket: the rest goes to the ledger under the last bucket
        exact[(len(rules.buckets) - 1, ledger_id)] += rest
    cents = _round(exact, total, unit)
    lines = _lines(cents, unit, rules)
    if rules.version > 1:
        # What counts as paid is what the recorded lines pay, in minor units (SPEC.md §17.4).
        paid, once = _paid_cents(cents, exact, shares, rules, unit)
    return Payout(amount, unit, since, until, lines, MappingProxyType(dict(paid)), frozenset(once))


def _entry(c: Claimant) -> bytes:
    return c.id.raw


def _lineage(c: Claimant) -> bytes:
    return (c.origin or c.id).raw


def _equity_weights(sharing: list[Claimant]) -> dict[str, Fraction]:
    """Per recipient, the sum of claim values (exact: Decimal sums at a precision no sum can reach)."""
    sums: dict[str, Decimal] = {}
    with exact_context():
        for c in sharing:
            provider = c.event.provider
            sums[provider] = sums.get(provider, Decimal(0)) + c.claim
    return {who: Fraction(value) for who, value in sums.items()}


def _owed(sharing: list[Claimant], claims: str, key: Callable[[Claimant], bytes],
          paid_before: Mapping[bytes, Fraction], paid: Mapping[bytes, Fraction], once_before: set[bytes],
          once: set[bytes]) -> list[tuple[bytes, str, Fraction]]:
    """(claim, provider, weight) of each debt or once claim still owed: a debt its claim value less what was
    paid on it, never below 0; a once claim its value unless a once bucket paid it."""
    result = []
    for c in sharing:
        raw = key(c)
        if claims == DEBT:
            weight = Fraction(c.claim) - paid_before.get(raw, Fraction(0)) - paid.get(raw, Fraction(0))
        else:
            weight = Fraction(c.claim) if raw not in once_before and raw not in once else Fraction(0)
        if weight > 0:
            result.append((raw, c.event.provider, weight))
    return result


def _paid_cents(cents: Mapping[tuple[int, str], int], exact: Mapping[tuple[int, str], Fraction],
                shares: Mapping[tuple[int, str], Mapping[bytes, Fraction]], rules: Rules,
                unit: str) -> tuple[dict[bytes, Fraction], set[bytes]]:
    """Split each debt or once line's minor units among the claims that shared it, largest remainder first
    (ties: smaller claim id); what the ledger's own part of a line takes comes last. Then a debt is paid what
    its minor units say, and a once claim is used up only when it got at least one."""
    scale = 10 ** minor_units(unit)
    paid: dict[bytes, Fraction] = defaultdict(Fraction)
    once: set[bytes] = set()
    for line, claims in shares.items():
        parts = dict(claims)
        extra = exact[line] - sum(parts.values(), Fraction(0))  # the ledger's own part, when it is the provider
        # The ledger's own part (when it is the provider) sorts after every claim id on a tied remainder.
        split = _largest_remainder(
            [(value * scale, raw) for raw, value in parts.items()] + ([(extra * scale, b"\xff" * 40)] if extra else []),
            cents.get(line, 0),
        )
        for raw, units in split.items():
            if units and raw in parts:
                if rules.buckets[line[0]].claims == DEBT:
                    paid[raw] += Fraction(units, scale)
                else:
                    once.add(raw)
    return paid, once


def _largest_remainder(parts: list[tuple[Fraction, bytes]], units: int) -> dict[bytes, int]:
    """`units` whole units split among exact parts: each its floor, then one each by largest remainder."""
    result: dict[bytes, int] = {}
    remainders: list[tuple[Fraction, bytes]] = []
    for value, raw in parts:
        whole, rest = divmod(value.numerator, value.denominator)
        result[raw] = whole
        if rest:
            remainders.append((Fraction(rest, value.denominator), raw))
    missing = units - sum(result.values())
    if missing > 0:
        remainders.sort(key=lambda r: (-r[0], r[1]))
        for _, raw in remainders[:missing]:
            result[raw] += 1
    return result


def _round(exact: Mapping[tuple[int, str], Fraction], total: Fraction, unit: str) -> dict[tuple[int, str], int]:
    """Largest remainder in minor units; ties: smaller recipient id, then earlier bucket."""
    scale = 10 ** minor_units(unit)
    target = total * scale
    assert target.denominator == 1 and sum(exact.values(), Fraction(0)) == total
    cents: dict[tuple[int, str], int] = {}
    remainders: list[tuple[Fraction, str, int]] = []
    for (index, recipient), value in exact.items():
        scaled = value * scale
        whole = scaled.numerator // scaled.denominator
        cents[(index, recipient)] = whole
        remainders.append((scaled - whole, recipient, index))
    missing = int(target) - sum(cents.values())
    assert 0 <= missing <= len(remainders)
    remainders.sort(key=lambda r: (-r[0], r[1], r[2]))
    for _, recipient, index in remainders[:missing]:
        cents[(index, recipient)] += 1
    return cents


def _lines(cents: Mapping[tuple[int, str], int], unit: str, rules: Rules) -> tuple[Line, ...]:
    """The lines in bucket order, then by recipient; lines of zero are left out."""
    places = Decimal(1).scaleb(-minor_units(unit))
    with exact_context():
        return tuple(
            Line(rules.buckets[index].name, recipient, (Decimal(value) * places).quantize(places))
            for (index, recipient), value in sorted(cents.items())
            if value > 0
        )


def _period_ms(since: date | None, until: date | None) -> tuple[int | None, int]:
    """The period as [low, high) in ms since the epoch; low None when there is no period at all."""
    if since is None and until is None:
        return None, 0
    low = -(2**63) if since is None else (since - _EPOCH.date()).days * _DAY_MS
    high = 2**63 if until is None else ((until - _EPOCH.date()).days + 1) * _DAY_MS
    return low, high


def _when_ms(c: Claimant) -> int:
    """When a contribution happened: hasPointInTime, else hasBeginning, else its entry's ts."""
    text = c.event.point or c.event.beginning
    if text is None:
        return c.ts
    return (parse_time(text, "time") - _EPOCH) // timedelta(milliseconds=1)


# ---- the ledger.distribution payload ----------------------------------------------------


def distribution_body(payout: Payout, counted: Iterable[CID], member: CID) -> dict[str, Any]:
    """The payload of a `ledger.distribution` entry recording `payout`."""
    body: dict[str, Any] = {
        "amount": format_decimal(payout.amount),
        "unit": payout.unit,
        "lines": [[line.bucket, line.recipient, format_amount(line.amount, payout.unit)] for line in payout.lines],
        "counted": sorted(set(counted), key=lambda c: c.raw),
        "member": member,
    }
    if payout.since is not None:
        body["since"] = payout.since.isoformat()
    if payout.until is not None:
        body["until"] = payout.until.isoformat()
    return body


def parse_distribution(body: Mapping[str, Any], *, ledger: CID) -> DistributionRecord:
    """Read a `ledger.distribution` payload strictly (SPEC.md §17.5).

    What depends on the rules (the unit is one of the ledger's, the lines are the value
    equation's) and what it names are checked by the state, under the rules in effect at
    the entry (`distribute`, `check_lines`).
    """
    unknown = sorted(set(body) - _PAYLOAD_KEYS)
    if unknown:
        raise InvalidData("unknown_field", f"{DISTRIBUTION_KIND} has unknown field(s): {', '.join(unknown)}")
    member = body.get("member")
    if not isinstance(member, CID):
        raise InvalidData("not_member", f"{DISTRIBUTION_KIND} must name the author's admission (or the genesis) "
                          "as member")
    unit = body.get("unit")
    if not isinstance(unit, str) or not UNIT_PATTERN.fullmatch(unit):
        raise InvalidData("unknown_unit", f"unit {unit!r:.40} is not a unit")
    text = body.get("amount")
    amount = parse_amount(text, unit)
    if not isinstance(text, str) or format_decimal(amount) != text:
        raise InvalidData("bad_amount", f"amount {text!r:.40} must be a canonical decimal string")
    since = None if body.get("since") is None else parse_day(body["since"], "since")
    until = None if body.get("until") is None else parse_day(body["until"], "until")
    check_period(since, until)
    counted = body.get("counted")
    if not isinstance(counted, list) or not all(isinstance(c, CID) for c in counted):
        raise InvalidData("bad_reference", "counted must list links to the heads of the chains counted")
    if [c.raw for c in counted] != sorted({c.raw for c in counted}):
        raise InvalidData("bad_field", "counted must be sorted by id, without duplicates")
    lines = body.get("lines")
    if not isinstance(lines, list) or len(lines) > MAX_LINES:
        raise InvalidData("bad_field", f"lines must be a list of at most {MAX_LINES} [bucket, recipient, amount]")
    return DistributionRecord(
        amount=amount, unit=unit, since=since, until=until,
        lines=tuple(_line(item, i, unit, ledger) for i, item in enumerate(lines)),
        counted=tuple(counted), member=member,
    )


def _line(item: object, index: int, unit: str, ledger: CID) -> Line:
    where = f"lines[{index}]"
    if not isinstance(item, list) or len(item) != 3 or not all(isinstance(x, str) for x in item):
        raise InvalidData("bad_field", f"{where} must be [bucket, recipient, amount], three strings")
    bucket, recipient, text = item
    if recipient != str(ledger):
        try:
            public_key_from_did(recipient)
        except InvalidData:
            raise InvalidData(
                "unknown_bucket_recipient", f"{where}: {recipient!r:.70} is neither the ledger's id nor a did:key"
            ) from None
    if not _FIXED.fullmatch(text):
        raise InvalidData("bad_amount", f"{where}: {text!r:.40} is not an amount like \"100.00\"")
    amount = parse_amount(text, unit, where)  # bounded digits before anything computes with it
    if format_amount(amount, unit) != text:
        raise InvalidData("bad_amount", f"{where}: {text!r:.40} must be more than 0 with exactly "
                          f"{minor_units(unit)} decimal places")
    return Line(bucket, recipient, amount)


def check_lines(record: DistributionRecord, payout: Payout) -> None:
    """`distribution_mismatch` unless the recorded lines are exactly the recomputed ones."""
    if record.lines == payout.lines:
        return
    for i, (got, want) in enumerate(zip(record.lines, payout.lines, strict=False)):
        if got != want:
            raise InvalidData(
                "distribution_mismatch", f"lines[{i}] is {_show(got, payout.unit)}; the value equation gives "
                f"{_show(want, payout.unit)}"
            )
    raise InvalidData(
        "distribution_mismatch", f"{len(record.lines)} lines recorded; the value equation gives {len(payout.lines)}"
    )


def _show(line: Line, unit: str) -> str:
    return f"[{line.bucket}, {line.recipient}, {format_amount(line.amount, unit)}]"
