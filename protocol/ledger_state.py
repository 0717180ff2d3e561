"""What a ledger's state holds (protocol/state.py computes it from the entries, protocol/fold.py keeps it
current): the state, the problems it keeps as evidence, the entries it erased, and its statuses."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from .cid import CID
from .contributions import FINAL, Contribution, Contributions
from .decimals import exact
from .distribution import RecordedDistribution
from .governance import MotionState
from .identity import public_key_from_did
from .keys import IdentityKeys, next_digest
from .pledges import PledgeState
from .rules import Rules

VALID, INVALID, WAITING, QUARANTINED, IGNORED = "valid", "invalid", "waiting", "quarantined", "ignored"
CONFLICTING = "conflicting"  # a valid distribution that counts nothing (SPEC.md §17.5; version 2 rules)
ERASED = "erased"  # its payload was erased by a valid ledger.erase (SPEC.md §20): it counts for nothing


@dataclass(frozen=True, slots=True)
class Problem:
    """An entry kept as evidence that does not count: who wrote it and what rule it breaks."""

    id: CID
    author: str
    kind: str
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class MemberTotals:
    quantities: dict[str, dict[str, Decimal]]  # action -> unit -> quantity (final contributions)
    claim: Decimal


@dataclass(frozen=True, slots=True)
class Erased:
    id: CID
    agent: str
    kind: str
    seq: int
    ts: int
    by: CID  # the ledger.erase entry


@dataclass(frozen=True, slots=True)
class LedgerState:
    ledger: CID
    rules: Rules
    members: tuple[str, ...]  # admitted and not left, sorted
    left: tuple[str, ...]
    contributions: Contributions  # by author then seq (compute_state's a tuple; a fold's made as read)
    invalid: tuple[Problem, ...]
    waiting: tuple[CID, ...]  # dependencies not arrived yet
    quarantined: tuple[CID, ...]  # after their author's fork point
    status: Mapping[bytes, str] = field(repr=False)  # entry id (raw) -> status
    #: member -> the entry a new entry of theirs names as `member` (the genesis, for founders)
    admissions: Mapping[str, CID] = field(default_factory=dict, repr=False)
    #: agent not yet a member -> the valid sponsorships of them so far (what a new one names in `with`)
    sponsorships: Mapping[str, tuple[CID, ...]] = field(default_factory=dict, repr=False)
    digest: bytes = b""
    #: valid ledger.distribution entries, in the canonical order, with what each paid (SPEC.md §17)
    distributions: tuple[RecordedDistribution, ...] = field(default=(), repr=False)
    #: valid distributions that count nothing: each paid a claim an earlier one it did not count paid (§17.5)
    conflicting: tuple[RecordedDistribution, ...] = field(default=(), repr=False)
    #: the latest applied entry of every chain, sorted by id: what a new distribution names as `counted`
    heads: tuple[CID, ...] = field(default=(), repr=False)
    #: governance (SPEC.md §18): motions in canonical order, pledges, the closings whose amendments made
    #: `rules` (canonical order), and what a new entry names in `rules` to be checked under them
    motions: tuple[MotionState, ...] = field(default=(), repr=False)
    pledges: tuple[PledgeState, ...] = field(default=(), repr=False)
    amendments: tuple[CID, ...] = field(default=(), repr=False)
    rules_heads: tuple[CID, ...] = field(default=(), repr=False)
    names: Mapping[str, str] = field(default_factory=dict, repr=False)  # did:key -> the name they gave (§16.1)
    #: identities with key events (SPEC.md §19): their main key, devices, what a rotation names as prior
    identities: Mapping[str, IdentityKeys] = field(default_factory=dict, repr=False)
    #: (identity, new key did) -> the valid key.recover approvals of it: what the next approval names in `with`
    recoveries: Mapping[tuple[str, str], tuple[CID, ...]] = field(default_factory=dict, repr=False)
    #: entries whose payload a valid ledger.erase erased (SPEC.md §20), in canonical order
    erased: tuple[Erased, ...] = field(default=(), repr=False)

    def agent_of(self, key: str) -> str:
        """The identity a key (did:key) writes as here: an identity's current key or device, or the next key it
        committed to (which may write its rotation, §19.8), else the key itself."""
        digest = next_digest(public_key_from_did(key)) if self.identities else b""
        for ident in self.identities.values():
            if key in ident.writers() or ident.next == digest:
                return ident.identity
        return key

    def totals(self) -> dict[str, MemberTotals]:
        """Per provider (did:key): quantities by action and unit, and claim value, of final contributions."""
        quantities: dict[str, dict[str, dict[str, Decimal]]] = defaultdict(lambda: defaultdict(dict))
        claims: dict[str, Decimal] = defaultdict(Decimal)
        with exact():  # sums of up to 36-digit quantities: Python's default 28 digits would round them
            for event, claim in self.contributions.claimed(FINAL):  # no Contribution made (a fold's state)
                if not event.provider.startswith("did:"):
                    continue
                by_unit = quantities[event.provider][event.action]
                by_unit[event.quantity.unit] = by_unit.get(event.quantity.unit, Decimal(0)) + event.quantity.value
                claims[event.provider] += claim
        return {
            who: MemberTotals({a: dict(u) for a, u in quantities[who].items()}, claims[who])
            for who in sorted(set(quantities) | set(claims))
        }

    def contribution(self, entry_id: CID) -> Contribution | None:
        return self.contributions.get(entry_id)

