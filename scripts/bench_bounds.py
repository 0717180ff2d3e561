"""What bounded inputs cost (SPEC.md §1.1): prints figures, asserts nothing.

    python scripts/bench_bounds.py

- pledges: a ledger's pledges as the API and `tally pledges --json` give them (node/governance_views.py),
  begun in 2026 or at the earliest allowed month (1970-01), plain, escalating and indexed, as of 9999-12-31:
  time and JSON size, which should not depend on the start;
- hostile pledges: a ledger with 100 pledges from year 0 (invalid evidence) folded into a state;
- a rules file at the size limit and one nested past the depth limit;
- names: the TR39 skeleton of an 80-character name, and the confusable check against 1,000 members.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from datetime import date
from decimal import Decimal

from node.governance_views import pledge_json
from protocol import GENESIS_KIND, InvalidData, SigningKey, create_entry
from protocol.names import check_not_confusable, skeleton
from protocol.pledges import MIN_MONTH, Pledge, PledgeState
from protocol.rules import Rules
from protocol.rules_file import MAX_RULES_TOML_CHARS, parse_rules_toml
from protocol.state import compute_state


def key(n: int) -> SigningKey:
    return SigningKey(hashlib.sha256(b"bench-bounds-%d" % n).digest())


def timed(fn: Callable[[], object], repeat: int = 5) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def bench_pledges() -> None:
    a = key(1)
    genesis = create_entry(a, ledger=None, seq=1, prev=None, ts=1, kind=GENESIS_KIND,
                           body=Rules.from_config({}, name="Bench", creator=a.did).to_body())
    far = date(9999, 12, 31)
    print("pledges as of 9999-12-31 (100 pledges, pledge_json of each):")
    for label, escalate, indexation in (("plain", "0", "0"), ("escalate 0.05", "0.05", "0"),
                                        ("indexation 5%", "0", "5")):
        for start in (2026 * 12, MIN_MONTH):
            pledge = Pledge(a.did, str(genesis.id), Decimal("12.5"), "euro", None, None, "month", start, None,
                            Decimal(escalate), "", genesis.id, Decimal(indexation))
            states = [PledgeState(genesis.id, a.did, 1, pledge, ()) for _ in range(100)]
            seconds, rows = timed(lambda states=states: [pledge_json(p, far) for p in states])  # type: ignore[misc]
            assert isinstance(rows, list)
            size = len(json.dumps(rows))
            print(f"  {label:14} from {start // 12}-01: {seconds * 1000:8.1f} ms, {size / 1024:7.1f} KiB, "
                  f"{rows[0]['period_count']} periods due, {len(rows[0]['periods'])} listed")


def bench_hostile_pledges() -> None:
    a = key(2)
    genesis = create_entry(a, ledger=None, seq=1, prev=None, ts=1, kind=GENESIS_KIND,
                           body=Rules.from_config({}, name="Bench", creator=a.did).to_body())
    entries, prev = [], genesis
    for seq in range(2, 102):
        prev = create_entry(a, ledger=genesis.id, seq=seq, prev=prev.id, ts=seq, kind="vf.commitment", body={
            "resourceQuantity": {"hasNumericalValue": "1", "hasUnit": "euro"}, "every": "month",
            "start": "0000-01", "member": genesis.id})
        entries.append(prev)
    seconds, state = timed(lambda: compute_state(genesis, [genesis, *entries]), repeat=3)
    assert state is not None
    invalid = getattr(state, "invalid", ())
    print(f"100 pledges from 0000-01 folded: {seconds * 1000:.1f} ms, {len(invalid)} invalid "
          f"({', '.join(sorted({p.code for p in invalid}))}), {len(getattr(state, 'pledges', ()))} counted")


def bench_rules() -> None:
    big = ("purpose = '" + "x" * (MAX_RULES_TOML_CHARS - 20) + "'\n")[:MAX_RULES_TOML_CHARS]
    seconds, _ = timed(lambda: parse_rules_toml(big))
    print(f"rules TOML of {len(big)} characters parsed: {seconds * 1000:.2f} ms")
    deep = "x = " + "[" * 30_000 + "]" * 30_000

    def refuse() -> str:
        try:
            parse_rules_toml(deep[:MAX_RULES_TOML_CHARS])
        except InvalidData as exc:
            return exc.code
        return "accepted"

    seconds, code = timed(refuse)
    print(f"rules TOML nested 30,000 deep (cut to the size limit): {code} in {seconds * 1000:.2f} ms")


def bench_names() -> None:
    name = "Ana María Ло́пес " * 5
    skeleton.cache_clear()
    seconds, _ = timed(lambda: skeleton(name[:80]), repeat=1)
    print(f"skeleton of an 80-character name (uncached): {seconds * 1e6:.0f} µs")
    names = {key(i).did: f"Member number {i}" for i in range(1000)}
    skeleton.cache_clear()
    cold, _ = timed(lambda: check_not_confusable("Someone new", "did:key:me", names), repeat=1)
    warm, _ = timed(lambda: check_not_confusable("Someone new", "did:key:me", names))
    print(f"confusable check against 1,000 members: {cold * 1000:.1f} ms cold, {warm * 1000:.2f} ms cached")


if __name__ == "__main__":
    bench_pledges()
    bench_hostile_pledges()
    bench_rules()
    bench_names()
