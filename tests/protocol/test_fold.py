"""The incremental fold (protocol/fold.py) equals the full rebuild (compute_state, protocol/state.py):
for random ledgers, random arrival orders (late arrivals, duplicates, entries before what they name)
and random batch splits, after every batch, digest and every field."""

from __future__ import annotations

import pickle
import random
from collections.abc import Mapping, Sequence

import pytest
import test_governance
import test_state
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import CID, Entry, InvalidData, LocalError
from protocol.contributions import Contributions, Matching, PackedContributions, event_order, event_ts_time
from protocol.fold import LedgerFold
from protocol.keys import INCEPT_KIND
from protocol.state import CORRECTED, FINAL, PENDING, REJECTED, LedgerState, compute_state
from protocol.valueflows import Event

MANY = settings(max_examples=500, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def arrive(genesis: Entry, entries: Sequence[Entry], forks: Mapping[bytes, int], rnd: random.Random) -> None:
    """Deliver `entries` shuffled, some twice, in random batches; the fold's state must equal the
    full rebuild of what has arrived after each batch."""
    order = [e for e in entries for _ in range(2 if rnd.random() < 0.1 else 1)]
    rnd.shuffle(order)
    fold = LedgerFold(genesis, forks)
    arrived: list[Entry] = []
    earlier: list[tuple[LedgerState, LedgerState]] = []
    while order:
        batch, order = order[: rnd.randint(1, max(1, len(order) // 2))], order[len(order) // 2 or 1 :]
        arrived += batch
        fold.add(batch)
        state, reference = fold.state(), compute_state(genesis, arrived, forks)
        assert state == reference and state.totals() == reference.totals()
        same_lookups(state.contributions, reference.contributions, rnd)
        kept = pickle.loads(pickle.dumps(state.contributions))  # as a snapshot keeps them: columns
        assert isinstance(kept, PackedContributions)
        same_lookups(kept, reference.contributions, rnd)
        earlier.append((state, reference))
    assert len(fold) == len({e.id.raw for e in arrived} | {genesis.id.raw})
    for state, reference in earlier:  # a state is the fold's as it was then, whatever arrived since
        assert state == reference


def same_lookups(shown: Contributions, reference: Contributions, rnd: random.Random) -> None:
    """A fold's contributions (made as read) answer each lookup as compute_state's tuple does."""
    assert shown == tuple(reference) and list(shown) == list(reference) and len(shown) == len(reference)
    people = sorted(reference.authors() | {c.event.receiver for c in reference} | {"did:key:nobody"})
    assert shown.authors() == reference.authors()
    for who in people:
        assert list(shown.by_author(who)) == list(reference.by_author(who))
        assert list(shown.awaiting(who)) == list(reference.awaiting(who))
    for statuses in ((FINAL,), (PENDING,), (REJECTED, CORRECTED), (FINAL, PENDING)):
        assert list(shown.of_status(*statuses)) == list(reference.of_status(*statuses))
        assert list(shown.claimed(statuses[0])) == list(reference.claimed(statuses[0]))
        assert list(shown.charted(*statuses)) == list(reference.charted(*statuses))
        some, theirs = shown.of_status(*statuses), reference.of_status(*statuses)  # a lookup of a lookup's answer
        assert list(some.by_event_time()[::-1]) == list(theirs.by_event_time()[::-1])
        assert some.authors() == theirs.authors() and list(some.by_time()) == list(theirs.by_time())
    assert list(shown.by_time()) == list(reference.by_time())
    assert list(shown.by_event_time()) == list(reference.by_event_time())

    def keep(e: Event, author: str, status: str, ts: int) -> bool:
        return status != PENDING or ts % 3 == 0 or author < e.receiver

    def key(e: Event, ts: int, raw: bytes) -> tuple[str, int, bytes]:
        return e.action, ts // 1000, raw

    for chosen in (shown.select(keep, key), reference.select(keep, key)):
        assert list(chosen) == sorted((c for c in reference if keep(c.event, c.author, c.status, c.ts)),
                                      key=lambda c: key(c.event, c.ts, c.id.raw))
    for n in (1, 5, len(reference) + 1):
        assert shown.top(n, lambda e, ts: ts % 7) == reference.top(n, lambda e, ts: ts % 7) == \
            sorted(reference, key=lambda c: c.ts % 7, reverse=True)[:n]
    # A history page's filter and order (and the newest events), which a fold's view reads off its columns
    times = sorted({event_ts_time(c.event, c.ts) for c in reference}) or [0.0]
    actions = [*sorted({c.event.action for c in reference}), "cite"]
    for m in (Matching(), Matching(rnd.choice(people)), Matching(action=rnd.choice(actions)),
              Matching(rnd.choice(people), rnd.choice(actions), times[0], times[-1], rnd.random() < 0.5),
              Matching(since=rnd.choice(times), until=rnd.choice(times), until_day=True)):
        for some, theirs in ((shown, reference), *((shown.of_status(s), reference.of_status(s)) for s in (FINAL,))):
            matching = sorted((c for c in theirs if m(c.event, c.author, c.status, c.ts)),
                              key=lambda c: event_order(c.event, c.ts, c.id.raw))
            assert list(some.select(m, event_order)) == list(theirs.select(m, event_order)) == matching
    for n in (1, 12, len(reference) + 1):
        assert shown.top(n, event_ts_time) == reference.top(n, event_ts_time)
    assert list(shown.by_time()[::-1]) == list(reference.by_time()[::-1])
    for c in reference:
        assert shown.get(c.id) == c
    if reference:
        i = rnd.randrange(len(reference))
        assert shown[i] == reference[i] and list(shown[i:]) == list(reference[i:])
    assert shown.get(CID.for_block(b"not an entry")) is None


@pytest.mark.slow
@MANY
@given(test_state.scenarios(), st.randoms(use_true_random=False))
def test_membership_endorsements_corrections_and_forks(scenario: test_state.Scenario, rnd: random.Random) -> None:
    arrive(scenario.genesis, scenario.entries, scenario.forks, rnd)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(test_governance.scenarios(), st.randoms(use_true_random=False))
def test_motions_closings_amendments_and_pledges(fund: test_governance.Ledger, rnd: random.Random) -> None:
    arrive(fund.genesis, fund.entries, {}, rnd)


def test_an_entry_older_than_the_newest_is_placed_before_them() -> None:
    """A late closing whose amendment applies before a later-added one: the rules follow the canonical order."""
    a, b = test_governance.A, test_governance.B
    fund = test_governance.Ledger([a, b], rates={"work": {"hour": "10"}})
    early = fund.motion(a, "yes", "no", amend={"rates": {"work": {"hour": "20"}}})
    late = fund.motion(b, "yes", "no", amend={"rates": {"work": {"hour": "30"}}})
    closings = [fund.close(a, early, fund.vote(a, early, yes=5), ts=5_000),
                fund.close(b, late, fund.vote(b, late, yes=5), ts=4_000)]
    fund.event(a, "1", rules=sorted((c.id for c in closings), key=lambda c: c.raw))
    fold = LedgerFold(fund.genesis)
    fold.add(fund.entries[:-2])  # the closing at ts 5000 applies first
    fold.add(fund.entries[-2:-1])  # then the one at ts 4000 arrives, before it in canonical order
    fold.add(fund.entries[-1:])
    state = fold.state()
    assert state == compute_state(fund.genesis, fund.entries)
    assert state.amendments == (closings[1].id, closings[0].id)  # ts 4000 before ts 5000
    assert state.contributions[0].claim == 20  # the later closing (in canonical order) wins


def test_a_fold_takes_only_its_own_ledger() -> None:
    coop, other = test_state.Coop([test_state.A]), test_state.Coop([test_state.B])
    fold = LedgerFold(coop.genesis)
    fold.add([other.genesis, coop.genesis])
    assert len(fold) == 1 and coop.genesis.id in fold and other.genesis.id not in fold
    with pytest.raises(InvalidData) as raised:
        LedgerFold(coop.event(test_state.A, coop.id, "1"))
    assert raised.value.code == "bad_genesis"


def test_a_fold_that_keeps_no_entries_says_when_a_ledger_needs_folding_whole() -> None:
    """Key events (SPEC.md §19) are folded whole from every entry: a fold that keeps none says so."""
    coop = test_state.Coop([test_state.A])
    coop.event(test_state.A, coop.id, "1")
    fold = LedgerFold(coop.genesis, keep_entries=False)
    fold.add(coop.entries)
    assert not fold.keyed and fold.state() == compute_state(coop.genesis, coop.entries)
    kept = LedgerFold(coop.genesis)
    coop.append(test_state.A, INCEPT_KIND, {"member": coop.id})
    fold.add(coop.entries)
    kept.add(coop.entries)
    assert fold.keyed and kept.keyed
    assert kept.state() == compute_state(coop.genesis, coop.entries)
    with pytest.raises(LocalError):
        fold.state()
