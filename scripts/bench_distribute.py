"""Benchmark: distributing income over a year of contributions (100 members, 100,000 events).

`bench_distribute()` builds a year of final contributions (work, use and transfer events with
their claim values, spread over the members and the days of 2026), then times the value
equation (protocol.distribution.distribute) splitting 100,000 € over them:
- `straight`: a 20 % reserve and an 80 % equity bucket (the defaults' shape);
- `remaining`: reserve, a debt bucket for loans (transfer), a once bucket (use), then equity (work),
  the costlier path (exact shares per contribution for debt and once claims), with half a year
  already paid out by an earlier distribution.
Goal: under a second each. scripts/bench_ledger.py calls it; alone:

    python scripts/bench_distribute.py [--members 100] [--events 100000]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import time
from collections.abc import Callable
from datetime import date
from decimal import Decimal

from protocol import CID, SigningKey
from protocol.distribution import distribute
from protocol.payouts import Payout
from protocol.rules import Rules
from protocol.state import FINAL, Contribution
from protocol.valueflows import Event, Quantity, claim_value

GOAL_S = 1.0
_ACTIONS = (("work", "hour", True), ("use", "day", True), ("transfer", "euro", False))


def year_of_contributions(rules: Rules, members: int, events: int, seed: int = 1) -> list[Contribution]:
    rng = random.Random(seed)
    dids = [SigningKey(hashlib.sha256(b"bench-%d" % i).digest()).did for i in range(members)]
    ledger = CID.for_block(b"bench ledger")
    result = []
    for i in range(events):
        action, unit, effort = _ACTIONS[0] if i % 10 < 8 else _ACTIONS[1 + i % 2]
        quantity = Quantity(Decimal(rng.randint(1, 40)) / 4, unit)
        day = date.fromordinal(date(2026, 1, 1).toordinal() + i * 365 // events).isoformat()
        event = Event(action, dids[rng.randrange(members)], str(ledger), quantity, effort, (), day, None, None, "",
                      None, ledger)
        result.append(Contribution(
            id=CID.for_block(i.to_bytes(4, "big")), author=event.provider, seq=i + 2, ts=i, event=event,
            claim=claim_value(event, rules), status=FINAL, accepts=(), rejects=(),
        ))
    return result


def _rules(mode: str, members: int) -> Rules:
    founders = [SigningKey(hashlib.sha256(b"bench-%d" % i).digest()).did for i in range(members)]
    buckets: list[dict[str, object]]
    if mode == "straight":
        buckets = [{"name": "reserve", "percent": "20", "recipient": "ledger"}, {"name": "members", "percent": "80"}]
    else:
        buckets = [
            {"name": "reserve", "percent": "10", "recipient": "ledger", "mode": mode},
            {"name": "loans", "percent": "30", "mode": mode, "claims": "debt", "actions": ["transfer"]},
            {"name": "tools", "percent": "20", "mode": mode, "claims": "once", "actions": ["use"]},
            {"name": "members", "percent": "100", "mode": mode, "actions": ["work"]},
        ]
    return Rules.from_config({
        "founders": founders, "rates": {"work": {"hour": "25"}, "use": {"day": "40"}, "transfer": {"euro": "1"}},
        "buckets": buckets,
    }, name="Bench coop", creator=founders[0])


def _best_of(runs: int, func: Callable[[], Payout]) -> tuple[float, Payout]:
    best, payout = float("inf"), None
    for _ in range(runs):
        started = time.perf_counter()
        payout = func()
        best = min(best, time.perf_counter() - started)
    assert isinstance(payout, Payout)
    return best, payout


def bench_distribute(members: int = 100, events: int = 100_000, *, runs: int = 3, quiet: bool = False
                     ) -> dict[str, float]:
    """Seconds to distribute over `events` final contributions of `members`, per mode (best of `runs`)."""
    ledger = CID.for_block(b"bench ledger")
    timings: dict[str, float] = {}
    for mode in ("straight", "remaining"):
        rules = _rules(mode, members)
        year = year_of_contributions(rules, members, events)
        earlier: list[Payout] = []
        if mode == "remaining":
            first_half = [c for c in year if c.event.point is not None and c.event.point < "2026-07-01"]
            earlier.append(distribute(rules, ledger, Decimal("50000"), "euro", first_half))

        def run(rules: Rules = rules, year: list[Contribution] = year, earlier: list[Payout] = earlier) -> Payout:
            return distribute(rules, ledger, Decimal("100000"), "euro", year, earlier, date(2026, 1, 1),
                              date(2026, 12, 31))

        seconds, payout = _best_of(runs, run)
        assert sum((line.amount for line in payout.lines), Decimal(0)) == Decimal("100000")
        timings[mode] = seconds
        if not quiet:
            verdict = "ok" if seconds < GOAL_S else "SLOW"
            print(f"distribute {mode:9}  {events} events, {members} members, {len(payout.lines)} lines: "
                  f"{seconds:.3f} s  (goal < {GOAL_S:.0f} s: {verdict})")
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    bench_distribute(args.members, args.events)


if __name__ == "__main__":
    main()
