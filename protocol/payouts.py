"""What a distribution gives (a `Payout` of `Line`s), what a `ledger.distribution` records, and which
recorded distributions conflict (SPEC.md §17.5). The computation is protocol/distribution.py's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from fractions import Fraction

from .cid import CID


@dataclass(frozen=True, slots=True)
class Line:
    bucket: str
    recipient: str  # a did:key, or the ledger's id
    amount: Decimal  # with exactly the unit's minor-unit places


@dataclass(frozen=True, slots=True)
class Payout:
    """A computed distribution: its lines, and what it paid on debt and once claims (for later ones)."""

    amount: Decimal
    unit: str
    since: date | None
    until: date | None
    lines: tuple[Line, ...]
    #: claim -> what debt buckets paid on it: version 1, contribution id -> the exact share; version 2, the
    #: lineage's original id -> the minor units of the lines (a correction inherits it)
    paid: Mapping[bytes, Fraction] = field(default_factory=dict, repr=False)
    #: claims a once bucket used up (version 2: that got at least one minor unit)
    once: frozenset[bytes] = frozenset()


@dataclass(frozen=True, slots=True)
class DistributionRecord:
    """A parsed `ledger.distribution` payload."""

    amount: Decimal
    unit: str
    since: date | None
    until: date | None
    lines: tuple[Line, ...]
    counted: tuple[CID, ...]  # the head of every chain counted: each chain up to it is counted
    member: CID


@dataclass(frozen=True, slots=True)
class RecordedDistribution:
    """A valid `ledger.distribution` entry and what it paid."""

    id: CID
    author: str
    ts: int
    payout: Payout
    seq: int = 0
    #: the chains it counts: author -> the seq of the head it names
    reach: Mapping[str, int] = field(default_factory=dict, repr=False)


def conflicting(recorded: Iterable[RecordedDistribution]) -> frozenset[bytes]:
    """The distributions that count nothing because an earlier one paid the same claim unseen (SPEC.md §17.5).

    Taken by (ts, id): one conflicts when a distribution before it that stands, in the same unit,
    paid at least one minor unit on a debt or once claim it also paid, and neither counts the other.
    """
    standing: list[RecordedDistribution] = []
    result: set[bytes] = set()
    for d in sorted(recorded, key=lambda r: (r.ts, r.id.raw)):
        if any(_clash(e, d) for e in standing):
            result.add(d.id.raw)
        else:
            standing.append(d)
    return frozenset(result)


def _counts(d: RecordedDistribution, other: RecordedDistribution) -> bool:
    return d.reach.get(other.author, 0) >= other.seq


def _clash(e: RecordedDistribution, d: RecordedDistribution) -> bool:
    if e.payout.unit != d.payout.unit or _counts(d, e) or _counts(e, d):
        return False
    return bool(_claims_paid(e.payout) & _claims_paid(d.payout))


def _claims_paid(payout: Payout) -> set[bytes]:
    return {raw for raw, value in payout.paid.items() if value > 0} | set(payout.once)
