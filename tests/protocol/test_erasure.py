"""Erasing a payload (SPEC.md §20; protocol/erasure.py and its part of protocol/state.py): the erased entry
counts for nothing, the same on a node that dropped its bytes as on one that still holds them."""

from __future__ import annotations

import random
from typing import Any

from protocol_helpers import LedgerBuilder, key
from test_distribution import ANA, BEN, Coop

from protocol import Entry, SigningKey, decode_entry
from protocol.state import ERASED, FINAL, INVALID, VALID, LedgerState, compute_state

A, B = key(401), key(402)


def work(coop: LedgerBuilder, author: SigningKey, hours: str = "2", **fields: Any) -> Entry:
    return coop.append(author, "vf.event", {"action": "work",
                                            "effortQuantity": {"hasNumericalValue": hours, "hasUnit": "hour"},
                                            **fields})


def headers_only(entries: list[Entry], erased: Entry) -> list[Entry]:
    """What a node that dropped `erased`'s payload holds."""
    return [decode_entry(e.header_raw, None) if e.id == erased.id else e for e in entries]


def refused(coop: LedgerBuilder, entry: Entry) -> str:
    return code(coop.state(), entry)


def code(state: LedgerState, entry: Entry) -> str:
    assert state.status[entry.id.raw] == INVALID, state.status[entry.id.raw]
    return next(p.code for p in state.invalid if p.id == entry.id)


def test_an_erased_contribution_counts_for_nothing_with_or_without_its_bytes() -> None:
    coop = LedgerBuilder([A, B])
    first = work(coop, A, "1")
    secret = work(coop, A, "5", note="my phone number")
    coop.append(B, "vf.endorse", {"event": first.id, "verdict": "accept"})
    endorsed = coop.append(B, "vf.endorse", {"event": secret.id, "verdict": "accept"})
    before = coop.state()
    assert before.totals()[A.did].claim == 6
    erase = coop.append(A, "ledger.erase", {"entry": secret.id})
    later = work(coop, A, "3")
    state = coop.state()
    assert state.status[erase.id.raw] == VALID and state.status[secret.id.raw] == ERASED
    assert [(e.id, e.agent, e.by) for e in state.erased] == [(secret.id, A.did, erase.id)]
    assert state.totals()[A.did].claim == 1  # the erased 5 hours count for nothing; `later` waits for B
    assert state.status[later.id.raw] == "pending"  # the chain goes on after the erased entry
    assert code(state, endorsed) == "bad_reference"  # an endorsement of an erased contribution counts nothing
    dropped = compute_state(coop.genesis, headers_only(coop.entries, secret))
    assert dropped.digest == state.digest and dropped.status == state.status
    shuffled = headers_only(coop.entries, secret)
    random.Random(4).shuffle(shuffled)
    assert compute_state(coop.genesis, shuffled).digest == state.digest


def test_a_missing_payload_without_its_erasure_is_invalid() -> None:
    coop = LedgerBuilder([A, B])
    work(coop, A)
    lost = work(coop, A)
    state = compute_state(coop.genesis, headers_only(coop.entries, lost))
    assert code(state, lost) == "bad_payload"


def test_only_the_same_key_erases_an_earlier_erasable_entry() -> None:
    coop = LedgerBuilder([A, B])
    first = work(coop, B)  # B's first entry: it would name what authorizes B's key
    mine = work(coop, A)
    about = coop.append(A, "member.about", {"name": "Ana"})
    leave_later = work(coop, B)
    assert refused(coop, coop.append(B, "ledger.erase", {"entry": mine.id})) == "not_erasable"
    assert refused(coop, coop.append(B, "ledger.erase", {"entry": first.id})) == "not_erasable"
    admit = coop.append(A, "member.admit", {"agent": key(403).did})
    assert refused(coop, coop.append(A, "ledger.erase", {"entry": admit.id})) == "not_erasable"
    named = coop.append(A, "ledger.erase", {"entry": about.id})
    state = coop.state()
    assert state.status[named.id.raw] == VALID and A.did not in state.names
    assert state.status[leave_later.id.raw] == "pending"


def test_a_contribution_a_distribution_counted_is_not_erased_and_one_recorded_concurrently_lapses() -> None:
    coop = Coop([ANA, BEN])
    coop.event(ANA, "1")
    counted = coop.event(ANA, "4")
    coop.endorse(BEN, counted)
    d1 = coop.record(BEN, coop.preview("100"))
    coop.append(ANA, "vf.endorse", {"event": d1.id, "verdict": "accept", "member": coop.id})  # ANA sees d1
    late = coop.append(ANA, "ledger.erase", {"entry": counted.id, "member": coop.id})
    assert code(coop.state(), late) == "not_erasable"  # d1 is in its causal past and counted it
    # An erasure concurrent with a distribution that counted the entry: the distribution no longer recomputes.
    other = Coop([ANA, BEN])
    other.event(ANA, "1")
    gone = other.event(ANA, "4")
    other.endorse(BEN, gone)
    d2 = other.record(BEN, other.preview("100"))
    erase = other.append(ANA, "ledger.erase", {"entry": gone.id, "member": other.id})  # does not know d2
    state = other.state()
    assert state.status[erase.id.raw] == VALID and state.status[gone.id.raw] == ERASED
    assert code(state, d2) == "distribution_mismatch"
    assert FINAL not in {c.status for c in state.contributions if c.id == gone.id}
