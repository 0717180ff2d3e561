"""Value equations (protocol/distribution.py, amounts.py, payouts.py) and recorded distributions in the state
(SPEC.md §17).

Every expected line below was worked out by hand; the comments show the arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from protocol_helpers import FAST, key

from protocol import CID, GENESIS_KIND, Entry, InvalidData, SigningKey, create_entry
from protocol.amounts import MINOR_UNITS, format_amount, minor_units, parse_amount
from protocol.distribution import DISTRIBUTION_KIND, distribute, distribution_body
from protocol.payouts import Payout
from protocol.rules import Rules
from protocol.state import CONFLICTING, FINAL, INVALID, VALID, WAITING, LedgerState, compute_state
from protocol.valueflows import Event, Quantity

ANA, BEN, CLEO, DANA = (key(i) for i in range(301, 305))
RATES = {"work": {"hour": "25"}, "use": {"day": "25"}, "transfer": {"euro": "1"}}
RESERVE = {"name": "reserve", "percent": "20", "recipient": "ledger"}


class Coop:
    """A ledger being written: each member's next entry in their chain, everything kept in `entries`."""

    def __init__(self, founders: Sequence[SigningKey], **config: Any) -> None:
        rules = Rules.from_config({"founders": [f.did for f in founders], "rates": RATES, **config},
                                  name="Van coop", creator=founders[0].did)
        self.genesis = create_entry(founders[0], ledger=None, seq=1, prev=None, ts=1_000, kind=GENESIS_KIND,
                                    body=rules.to_body())
        self.id = self.genesis.id
        self.heads: dict[bytes, Entry] = {founders[0].public_key: self.genesis}
        self.entries: list[Entry] = [self.genesis]
        self.clock = 1_000

    def append(self, author: SigningKey, kind: str, body: dict[str, Any]) -> Entry:
        head = self.heads.get(author.public_key)
        self.clock += 1
        entry = create_entry(author, ledger=self.id, seq=1 if head is None else head.seq + 1,
                             prev=None if head is None else head.id, ts=self.clock, kind=kind, body=body)
        self.heads[author.public_key] = entry
        self.entries.append(entry)
        return entry

    def event(self, author: SigningKey, quantity: str, action: str = "work", unit: str = "hour",
              **fields: Any) -> Entry:
        measure = "effortQuantity" if action in ("work", "use") else "resourceQuantity"
        return self.append(author, "vf.event", {
            "action": action, measure: {"hasNumericalValue": quantity, "hasUnit": unit}, "member": self.id, **fields})

    def endorse(self, author: SigningKey, event: Entry, verdict: str = "accept") -> Entry:
        return self.append(author, "vf.endorse", {"event": event.id, "verdict": verdict, "member": self.id})

    def state(self, entries: Iterable[Entry] | None = None) -> LedgerState:
        return compute_state(self.genesis, self.entries if entries is None else entries)

    def preview(self, amount: str, unit: str = "euro", state: LedgerState | None = None, **period: date) -> Payout:
        state = state or self.state()
        final = [c for c in state.contributions if c.status == FINAL]
        return distribute(state.rules, state.ledger, Decimal(amount), unit, final,
                          [d.payout for d in state.distributions], period.get("since"), period.get("until"))

    def record(self, author: SigningKey, payout: Payout, state: LedgerState | None = None,
               **changes: Any) -> Entry:
        state = state or self.state()
        return self.append(author, DISTRIBUTION_KIND, {**distribution_body(payout, state.heads, self.id), **changes})


def lines(payout: Payout) -> list[tuple[str, str, str]]:
    return [(line.bucket, line.recipient, format_amount(line.amount, payout.unit)) for line in payout.lines]


def total(payout: Payout) -> Decimal:
    return sum((line.amount for line in payout.lines), Decimal(0))


def ana_ben_cleo(mode: str = "straight") -> Coop:
    """domain.md's worked example: Ana 6 h and Ben 4 h at 25 €/h, Cleo's van 2 days at 25 €/day; all final."""
    members = {"name": "members", "percent": "80" if mode == "straight" else "100"}
    coop = Coop([ANA, BEN, CLEO], buckets=[{**RESERVE, "mode": mode}, {**members, "mode": mode}])
    ana, ben = coop.event(ANA, "6"), coop.event(BEN, "4")
    cleo = coop.event(CLEO, "2", action="use", unit="day")
    coop.endorse(BEN, ana)
    coop.endorse(CLEO, ben)
    coop.endorse(ANA, cleo)
    return coop


def problem(state: LedgerState, entry: Entry) -> str:
    assert state.status[entry.id.raw] == INVALID
    return next(p.code for p in state.invalid if p.id == entry.id)


# ---- worked examples -----------------------------------------------------------------------------


def test_the_domain_example_comes_out_exactly() -> None:
    # 600 €: reserve 20 % = 120; members 80 % = 480 over claims 150 + 100 + 50 = 300, i.e. 1.6 € per claim euro
    coop = ana_ben_cleo()
    payout = coop.preview("600")
    ledger = str(coop.id)
    assert lines(payout) == sorted([
        ("reserve", ledger, "120.00"),
        ("members", ANA.did, "240.00"), ("members", BEN.did, "160.00"), ("members", CLEO.did, "80.00"),
    ], key=lambda line: (line[0] != "reserve", line[1]))
    assert total(payout) == 600


def test_remaining_mode_caps_each_contributor_at_their_claim() -> None:
    # reserve 20 % of 600 = 120; members take 100 % of the 480 left, but never more than their claims
    # (150, 100, 50): 300 in all; the 180 the last bucket cannot pay stays with the ledger.
    coop = ana_ben_cleo("remaining")
    payout = coop.preview("600")
    ledger = str(coop.id)
    assert lines(payout)[:2] == [("reserve", ledger, "120.00"), ("members", ledger, "180.00")]  # a CID sorts first
    assert dict(((b, r), a) for b, r, a in lines(payout)) == {
        ("reserve", ledger): "120.00", ("members", ledger): "180.00", ("members", ANA.did): "150.00",
        ("members", BEN.did): "100.00", ("members", CLEO.did): "50.00",
    }
    assert total(payout) == 600


def test_remaining_mode_passes_what_a_bucket_cannot_pay_to_the_next() -> None:
    # 1000 €: reserve 10 % = 100, 900 left. Cleo's van bucket (use only) takes 50 % of 900 = 450 but her claim
    # is 50: she gets 50, so 850 is left. Members (work) take 100 % of 850, capped at 150 + 100: 250. The rest,
    # 600, goes to the ledger under the last bucket.
    coop = Coop([ANA, BEN, CLEO], buckets=[
        {"name": "reserve", "percent": "10", "recipient": "ledger", "mode": "remaining"},
        {"name": "tools", "percent": "50", "mode": "remaining", "actions": ["use"]},
        {"name": "members", "percent": "100", "mode": "remaining", "actions": ["work"]},
    ])
    ana, ben, cleo = coop.event(ANA, "6"), coop.event(BEN, "4"), coop.event(CLEO, "2", action="use", unit="day")
    coop.endorse(BEN, ana), coop.endorse(CLEO, ben), coop.endorse(ANA, cleo)
    got = {(b, r): a for b, r, a in lines(coop.preview("1000"))}
    assert got == {
        ("reserve", str(coop.id)): "100.00", ("tools", CLEO.did): "50.00", ("members", ANA.did): "150.00",
        ("members", BEN.did): "100.00", ("members", str(coop.id)): "600.00",
    }


def test_a_debt_is_paid_off_over_two_distributions() -> None:
    # Dana lent 300 € (transfer, claim 300, debt). Loans take 50 % of each distribution, members the rest
    # (remaining mode, capped at claims: Ana 150, Ben 100).
    coop = Coop([ANA, BEN, DANA], buckets=[
        {"name": "loans", "percent": "50", "mode": "remaining", "claims": "debt", "actions": ["transfer"]},
        {"name": "members", "percent": "100", "mode": "remaining", "actions": ["work"]},
    ])
    loan = coop.event(DANA, "300", action="transfer", unit="euro")
    ana, ben = coop.event(ANA, "6"), coop.event(BEN, "4")
    coop.endorse(ANA, loan), coop.endorse(BEN, ana), coop.endorse(DANA, ben)
    ledger = str(coop.id)

    # 1st, 400 €: loans 200 of the 300 owed; members 200 of their 250 (0.8 each): Ana 120, Ben 80
    first = coop.preview("400")
    assert {(b, r): a for b, r, a in lines(first)} == {
        ("loans", DANA.did): "200.00", ("members", ANA.did): "120.00", ("members", BEN.did): "80.00"}
    d1 = coop.record(ANA, first)
    state = coop.state()
    assert state.status[d1.id.raw] == VALID and [d.id for d in state.distributions] == [d1.id]

    # 2nd, 400 €: loans 200, but only 100 is still owed: Dana 100, 300 left; members capped at 250;
    # the 50 nobody can take stays with the ledger
    second = coop.preview("400", state=state)
    assert {(b, r): a for b, r, a in lines(second)} == {
        ("loans", DANA.did): "100.00", ("members", ANA.did): "150.00", ("members", BEN.did): "100.00",
        ("members", ledger): "50.00"}
    d2 = coop.record(BEN, second, state)
    state = coop.state()
    assert [state.status[d.id.raw] for d in (d1, d2)] == [VALID, VALID]

    # 3rd: the loan is paid off, Dana gets nothing more
    third = coop.preview("400", state=state)
    assert {(b, r): a for b, r, a in lines(third)} == {
        ("members", ANA.did): "150.00", ("members", BEN.did): "100.00", ("members", ledger): "150.00"}
    # debts paid in another unit are another account: in hours the loan is still owed in full
    assert DANA.did not in {line.recipient for line in third.lines}


def test_a_once_claim_is_paid_once() -> None:
    coop = Coop([ANA, BEN], buckets=[
        {"name": "bonus", "percent": "100", "mode": "straight", "claims": "once"},
    ])
    ana = coop.event(ANA, "2")  # claim 50
    coop.endorse(BEN, ana)
    first = coop.preview("80")
    # straight mode still caps a once claim at its value: 50 to Ana, 30 to the ledger
    assert {(b, r): a for b, r, a in lines(first)} == {("bonus", ANA.did): "50.00", ("bonus", str(coop.id)): "30.00"}
    coop.record(ANA, first)
    second = coop.preview("80")
    assert lines(second) == [("bonus", str(coop.id), "80.00")]


def test_rounding_follows_largest_remainder_then_recipient_id() -> None:
    # 100 € over three equal claims: 33.333… each; 33.33 × 3 = 99.99, and the missing cent goes to the
    # smallest recipient id (the remainders tie).
    coop = Coop([ANA, BEN, CLEO], buckets=[{"name": "members", "percent": "100"}])
    for member, endorser in ((ANA, BEN), (BEN, CLEO), (CLEO, ANA)):
        coop.endorse(endorser, coop.event(member, "1"))
    payout = coop.preview("100")
    first, *others = sorted((ANA.did, BEN.did, CLEO.did))
    assert lines(payout) == [("members", first, "33.34"), *(("members", who, "33.33") for who in others)]
    # the largest remainder wins before any tie: claims 2 : 1 of 10 € are 6.666… and 3.333…
    coop.endorse(BEN, coop.event(ANA, "1"))
    payout = coop.preview("20")  # Ana 50, Ben 25, Cleo 25 of 100 claim: 10, 5, 5
    assert {r: a for _, r, a in lines(payout)} == {ANA.did: "10.00", BEN.did: "5.00", CLEO.did: "5.00"}
    payout = coop.preview("0.10")  # 0.05, 0.025, 0.025: the tie between Ben and Cleo goes to the smaller id
    small = min(BEN.did, CLEO.did)
    assert {r: a for _, r, a in lines(payout)} == {ANA.did: "0.05", small: "0.03", max(BEN.did, CLEO.did): "0.02"}


def test_a_tie_for_one_recipient_goes_to_the_earlier_bucket_and_zero_lines_are_dropped() -> None:
    coop = Coop([ANA], buckets=[
        {"name": "a", "percent": "50", "recipient": BEN.did}, {"name": "b", "percent": "50", "recipient": BEN.did},
    ])
    assert lines(coop.preview("0.01")) == [("a", BEN.did, "0.01")]  # 0.005 and 0.005: one cent, to bucket a


def test_with_nothing_to_share_a_straight_bucket_stays_with_the_ledger() -> None:
    coop = Coop([ANA, BEN], buckets=[RESERVE, {"name": "members", "percent": "80"}])
    coop.event(ANA, "3")  # pending: not counted
    assert lines(coop.preview("50")) == [("reserve", str(coop.id), "10.00"), ("members", str(coop.id), "40.00")]


def test_the_period_counts_contributions_by_their_own_time() -> None:
    coop = Coop([ANA, BEN], buckets=[{"name": "members", "percent": "100"}])
    coop.endorse(BEN, coop.event(ANA, "1", hasPointInTime="2026-01-31T23:59:59Z"))
    coop.endorse(ANA, coop.event(BEN, "1", hasBeginning="2026-02-01", hasEnd="2026-02-02"))
    assert {r for _, r, _ in lines(coop.preview("10", since=date(2026, 2, 1)))} == {BEN.did}
    assert {r for _, r, _ in lines(coop.preview("10", until=date(2026, 1, 31)))} == {ANA.did}
    assert {r for _, r, _ in lines(coop.preview("10", since=date(2026, 1, 31), until=date(2026, 2, 1)))} == {
        ANA.did, BEN.did}
    with pytest.raises(InvalidData) as exc:
        coop.preview("10", since=date(2026, 2, 2), until=date(2026, 2, 1))
    assert exc.value.code == "bad_time_range"


@given(
    amount=st.integers(min_value=1, max_value=10**12),
    claims=st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=6),
    percent=st.integers(min_value=1, max_value=99),
    mode=st.sampled_from(["straight", "remaining"]),
)
@FAST
def test_lines_always_sum_exactly_to_the_amount(amount: int, claims: list[int], percent: int, mode: str) -> None:
    rules = Rules.from_config({"founders": [ANA.did], "rates": RATES, "buckets": [
        {"name": "reserve", "percent": str(percent), "recipient": "ledger", "mode": mode},
        {"name": "members", "percent": str(100 - percent) if mode == "straight" else "100", "mode": mode},
    ]}, name="Coop", creator=ANA.did)
    people = [key(400 + i).did for i in range(len(claims))]
    contributions = [_Claim(CID.for_block(bytes([i])), p, Decimal(c)) for i, (p, c) in enumerate(zip(people, claims,
                                                                                                     strict=True))]
    value = Decimal(amount).scaleb(-2)
    payout = distribute(rules, CID.for_block(b"L"), value, "euro", contributions)
    assert total(payout) == value
    assert all(line.amount > 0 for line in payout.lines)
    assert len({(line.bucket, line.recipient) for line in payout.lines}) == len(payout.lines)


class _Claim:
    def __init__(self, cid: CID, provider: str, claim: Decimal) -> None:
        self.id, self.ts, self.claim, self.origin = cid, 0, claim, None
        self.event = Event("work", provider, "x", Quantity(claim, "hour"), True, (), None, None, None, "", None, cid)


# ---- amounts and units --------------------------------------------------------------------------


def test_minor_units() -> None:
    assert (minor_units("euro"), minor_units("usd"), minor_units("jpy"), minor_units("hour")) == (2, 2, 0, 2)
    assert minor_units("apples") == 2 and MINOR_UNITS["day"] == 2
    assert format_amount(Decimal("100"), "euro") == "100.00" and format_amount(Decimal("7"), "yen") == "7"


@pytest.mark.parametrize(("value", "unit"), [
    ("10.001", "euro"), ("0", "euro"), ("-5", "euro"), ("1e3", "euro"), (1.5, "euro"), ("10.5", "yen"),
    ("", "euro"), (True, "euro"), ("1" * 19, "euro"),
])
def test_bad_amounts(value: object, unit: str) -> None:
    with pytest.raises(InvalidData) as exc:
        parse_amount(value, unit)
    assert exc.value.code == "bad_amount"


def test_an_unknown_unit_is_refused() -> None:
    coop = ana_ben_cleo()
    with pytest.raises(InvalidData) as exc:
        coop.preview("10", unit="dollar")
    assert exc.value.code == "unknown_unit"


# ---- recorded distributions in the state -------------------------------------------------------------


def test_other_nodes_recompute_a_recorded_distribution_and_refuse_a_changed_line() -> None:
    coop = ana_ben_cleo()
    payout = coop.preview("600")
    good = coop.record(ANA, payout)
    body = distribution_body(payout, coop.state().heads, coop.id)
    changed = [list(line) for line in body["lines"]]
    changed[1][2] = "240.01" if changed[1][2] == "240.00" else "0.01"
    bad = coop.record(BEN, payout, lines=changed)
    state = coop.state()
    assert state.status[good.id.raw] == VALID
    assert problem(state, bad) == "distribution_mismatch"
    assert [d.id for d in state.distributions] == [good.id]  # kept as evidence, not counted


def test_a_peer_distribution_with_bad_fields_is_kept_as_evidence() -> None:
    coop = ana_ben_cleo()
    payout = coop.preview("600")
    cases = {
        "bad_amount": {"amount": "600.001"},
        "unknown_unit": {"unit": "dollar"},
        "unknown_bucket_recipient": {"lines": [["reserve", "the coop", "120.00"]]},
        "distribution_mismatch": {"lines": [["no such bucket", str(coop.id), "600.00"]]},
        "bad_time": {"since": "1 May"},
        "bad_reference": {"counted": ["not a link"]},
        "unknown_field": {"extra": 1},
    }
    made = {code: coop.record(CLEO, payout, **change) for code, change in cases.items()}
    line_amount = coop.record(CLEO, payout, lines=[["reserve", str(coop.id), "120.0"]])
    state = coop.state()
    assert {code: problem(state, entry) for code, entry in made.items()} == {code: code for code in cases}
    assert problem(state, line_amount) == "bad_amount"
    assert state.distributions == ()


def test_late_endorsements_cannot_change_a_recorded_distribution() -> None:
    coop = Coop([ANA, BEN, CLEO], buckets=[{"name": "members", "percent": "100"}])
    ana = coop.event(ANA, "6")
    coop.endorse(BEN, ana)
    ben = coop.event(BEN, "4")  # pending when the distribution is recorded
    payout = coop.preview("100")
    assert lines(payout) == [("members", ANA.did, "100.00")]
    recorded = coop.record(CLEO, payout)
    coop.endorse(CLEO, ben)  # now Ben's contribution is final too…
    state = coop.state()
    assert state.status[recorded.id.raw] == VALID  # …but the distribution counted only what it named
    assert lines(state.distributions[0].payout) == [("members", ANA.did, "100.00")]
    assert {r for _, r, _ in lines(coop.preview("100", state=state))} == {ANA.did, BEN.did}


def test_a_distribution_waits_for_the_chains_it_counts() -> None:
    coop = ana_ben_cleo()
    recorded = coop.record(ANA, coop.preview("600"))
    cleos_chain = [e for e in coop.entries if e.header.author == CLEO.public_key]
    without = [e for e in coop.entries if e not in cleos_chain]
    assert coop.state(without).status[recorded.id.raw] == WAITING
    assert coop.state(reversed(coop.entries)).status[recorded.id.raw] == VALID


def test_distributions_are_counted_by_set_not_arrival_order() -> None:
    coop = ana_ben_cleo("remaining")
    coop.record(ANA, coop.preview("600"))
    coop.record(BEN, coop.preview("300"))
    forward, backward = coop.state(), coop.state(list(reversed(coop.entries)))
    assert forward.digest == backward.digest
    assert [lines(d.payout) for d in forward.distributions] == [lines(d.payout) for d in backward.distributions]


# ---- claims paid once, whatever the order (version 2 rules; issue 18's audit failures) ----------------------

LOANS = [{"name": "loans", "percent": "100", "claims": "debt", "actions": ["transfer"]}]


def paid_to(state: LedgerState, who: SigningKey) -> Decimal:
    """What the distributions that count paid `who`."""
    return sum((line.amount for d in state.distributions for line in d.payout.lines if line.recipient == who.did),
               Decimal(0))


def test_two_distributions_recorded_concurrently_cannot_pay_one_debt_twice() -> None:
    # Dana lent 100 €. Ana records a distribution of 100 € while Ben, offline, records another from the
    # same state: each pays the loan in full. The later one (by ts, then id) conflicts and counts nothing.
    coop = Coop([ANA, BEN, DANA], buckets=LOANS)
    loan = coop.event(DANA, "100", action="transfer", unit="euro")
    coop.endorse(ANA, loan)
    before = coop.state()
    first = coop.record(ANA, coop.preview("100", state=before), before)
    second = coop.record(BEN, coop.preview("100", state=before), before)  # Ben had not seen Ana's
    state = coop.state()
    assert [state.status[e.id.raw] for e in (first, second)] == [VALID, CONFLICTING]
    assert [d.id for d in state.conflicting] == [second.id]
    assert paid_to(state, DANA) == Decimal(100)  # not 200
    # Re-recorded after sync, it counts both: the loan is paid, the 100 € stay with the ledger.
    again = coop.record(BEN, coop.preview("100", state=state), state)
    state = coop.state()
    assert state.status[again.id.raw] == VALID and paid_to(state, DANA) == Decimal(100)
    assert lines(state.distributions[-1].payout) == [("loans", str(coop.id), "100.00")]
    # Whatever order the entries arrive in, the same distribution conflicts.
    assert coop.state(reversed(coop.entries)).digest == state.digest


def test_concurrent_distributions_that_pay_no_common_claim_both_count() -> None:
    coop = Coop([ANA, BEN, DANA], buckets=[{"name": "members", "percent": "100"}])
    work = coop.event(DANA, "4")
    coop.endorse(ANA, work)
    before = coop.state()
    first = coop.record(ANA, coop.preview("100", state=before), before)
    second = coop.record(BEN, coop.preview("50", state=before), before)
    state = coop.state()
    assert [state.status[e.id.raw] for e in (first, second)] == [VALID, VALID]  # equity: no claim is used up


def test_version_1_ledgers_keep_their_rules_and_pay_concurrent_distributions_both() -> None:
    coop = Coop([ANA, BEN, DANA], buckets=LOANS, version=1)
    loan = coop.event(DANA, "100", action="transfer", unit="euro")
    coop.endorse(ANA, loan)
    before = coop.state()
    coop.record(ANA, coop.preview("100", state=before), before)
    coop.record(BEN, coop.preview("100", state=before), before)
    assert paid_to(coop.state(), DANA) == Decimal(200)  # the failure the audit found; version 2 refuses it


def test_a_correction_inherits_what_was_paid_on_the_claim_it_corrects() -> None:
    # Dana's 300 € loan is paid in full; she re-files it unchanged as a correction, endorsed again: nothing
    # more is owed (the audit saw 400.01 paid on a 300 loan).
    coop = Coop([ANA, BEN, DANA], buckets=LOANS)
    loan = coop.event(DANA, "300", action="transfer", unit="euro")
    coop.endorse(ANA, loan)
    coop.record(ANA, coop.preview("300"))
    fix = coop.event(DANA, "300", action="transfer", unit="euro", corrects=loan.id)
    coop.endorse(BEN, fix)
    assert lines(coop.preview("100.01")) == [("loans", str(coop.id), "100.01")]
    # Raised to 350, the correction is owed the 50 the original was not paid.
    raised = coop.event(DANA, "350", action="transfer", unit="euro", corrects=fix.id)
    coop.endorse(BEN, raised)
    assert lines(coop.preview("100")) == sorted([("loans", str(coop.id), "50.00"), ("loans", DANA.did, "50.00")])


def test_paid_means_the_minor_units_on_the_lines() -> None:
    # Ana and Ben each have a once claim of 50. 0.01 € goes to one of them (the smaller did:key, the
    # remainders tie); the other's line is 0.00, so their claim is not used up and the next distribution pays it.
    coop = Coop([ANA, BEN, CLEO], buckets=[{"name": "bonus", "percent": "100", "claims": "once"}])
    ana, ben = coop.event(ANA, "2"), coop.event(BEN, "2")
    coop.endorse(CLEO, ana), coop.endorse(CLEO, ben)
    tiny = coop.preview("0.01")
    (winner,) = [line.recipient for line in tiny.lines]
    assert winner == min(ANA.did, BEN.did)
    coop.record(CLEO, tiny)
    other = ANA.did if winner == BEN.did else BEN.did
    assert lines(coop.preview("100")) == sorted([("bonus", str(coop.id), "50.00"), ("bonus", other, "50.00")])


def test_a_debt_is_paid_the_cents_its_line_paid() -> None:
    # 100 € over three debts of 100: 33.34, 33.33, 33.33 paid; each is then owed exactly 100 − what it got.
    coop = Coop([ANA, BEN, CLEO, DANA], buckets=LOANS)
    loans = [coop.event(who, "100", action="transfer", unit="euro") for who in (ANA, BEN, CLEO)]
    for loan in loans:
        coop.endorse(DANA, loan)
    first = coop.preview("100")
    coop.record(DANA, first)
    got = {line.recipient: line.amount for line in first.lines}
    second = coop.preview("300")
    owed = {line.recipient: line.amount for line in second.lines if line.recipient != str(coop.id)}
    assert owed == {who: Decimal(100) - got[who] for who in got}
    assert sum(owed.values()) == Decimal(200)


def test_mixed_buckets_take_straight_percents_off_the_top_and_share_the_rest() -> None:
    # 300 €: reserve 10 % (30) and education 5 % (15) off the top; members share the remaining 255 by claim
    # value (150, 100, 50 of 300), capped at their claims: 127.50, 85.00, 42.50.
    coop = Coop([ANA, BEN, CLEO], buckets=[
        {**RESERVE, "percent": "10"}, {"name": "education", "percent": "5", "recipient": "ledger"},
        {"name": "members", "percent": "100", "mode": "remaining"},
    ])
    ana, ben = coop.event(ANA, "6"), coop.event(BEN, "4")
    cleo = coop.event(CLEO, "2", action="use", unit="day")
    coop.endorse(BEN, ana), coop.endorse(CLEO, ben), coop.endorse(ANA, cleo)
    ledger = str(coop.id)
    assert {(b, r): a for b, r, a in lines(coop.preview("300"))} == {
        ("reserve", ledger): "30.00", ("education", ledger): "15.00",
        ("members", ANA.did): "127.50", ("members", BEN.did): "85.00", ("members", CLEO.did): "42.50"}


@pytest.mark.slow
@given(
    loans=st.lists(st.integers(min_value=1, max_value=50_000), min_size=1, max_size=4),  # in cents
    amounts=st.lists(st.integers(min_value=1, max_value=40_000), min_size=1, max_size=5),  # in cents
    claims=st.sampled_from(["debt", "once"]),
)
@FAST
def test_a_debt_or_once_claim_is_never_paid_more_than_its_value(loans: list[int], amounts: list[int],
                                                                 claims: str) -> None:
    people = [ANA, BEN, CLEO, DANA][:len(loans)]
    coop = Coop([ANA, BEN, CLEO, DANA], buckets=[{"name": "loans", "percent": "100", "claims": claims,
                                                  "actions": ["transfer"]}])
    for who, cents in zip(people, loans, strict=True):
        loan = coop.event(who, str(Decimal(cents).scaleb(-2)), action="transfer", unit="euro")
        coop.endorse(ANA if who != ANA else BEN, loan)
    recorder = [ANA, BEN]
    for i, cents in enumerate(amounts):
        coop.record(recorder[i % 2], coop.preview(str(Decimal(cents).scaleb(-2))))
    state = coop.state()
    assert not state.conflicting and len(state.distributions) == len(amounts)
    for who, cents in zip(people, loans, strict=True):
        assert paid_to(state, who) <= Decimal(cents).scaleb(-2)  # whole-cent claims: never a cent more
        paying = [d for d in state.distributions if any(line.recipient == who.did for line in d.payout.lines)]
        assert claims == "debt" or len(paying) <= 1  # a once claim: one distribution pays it, at most
