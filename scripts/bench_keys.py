"""What key events cost a ledger's state (SPEC.md §19.6): prints figures, asserts nothing.

    python scripts/bench_keys.py [ENTRIES]

A ledger of three members and ENTRIES contributions (default 5,000), its state computed three ways:
with no key event (one round of the fold), with one member's key.incept and key.rotate (the rounds
of §19.6: two), and with a device added and revoked as well. A ledger with key events is also
folded whole by protocol/fold.py's LedgerFold, so this is what each new state of it costs.
"""

from __future__ import annotations

import hashlib
import sys
import time
from typing import Any

from protocol import GENESIS_KIND, Entry, SigningKey, create_entry
from protocol.keys import next_digest
from protocol.rules import Rules
from protocol.state import compute_state


def key(n: int) -> SigningKey:
    return SigningKey(hashlib.sha256(b"bench-keys-%d" % n).digest())


class Book:
    def __init__(self, founders: list[SigningKey]) -> None:
        rules = Rules.from_config({"founders": [f.did for f in founders]}, name="Bench", creator=founders[0].did)
        self.genesis = create_entry(founders[0], ledger=None, seq=1, prev=None, ts=1_000, kind=GENESIS_KIND,
                                    body=rules.to_body())
        self.heads: dict[bytes, Entry] = {founders[0].public_key: self.genesis}
        self.entries = [self.genesis]
        self.clock = 1_000

    def append(self, author: SigningKey, kind: str, body: dict[str, Any]) -> Entry:
        head = self.heads.get(author.public_key)
        self.clock += 1
        entry = create_entry(author, ledger=self.genesis.id, seq=1 if head is None else head.seq + 1,
                             prev=None if head is None else head.id, ts=self.clock, kind=kind,
                             body={"member": self.genesis.id, **body})
        self.heads[author.public_key] = entry
        self.entries.append(entry)
        return entry

    def work(self, author: SigningKey) -> Entry:
        return self.append(author, "vf.event", {"action": "work",
                                                "effortQuantity": {"hasNumericalValue": "1", "hasUnit": "hour"}})


def timed(entries: list[Entry], genesis: Entry) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        compute_state(genesis, entries)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5_000
    a, b, c, a2, a3, phone = (key(i) for i in range(6))
    members = [a, b, c]
    plain = Book(members)
    for i in range(n):
        plain.work(members[i % 3])
    print(f"{n} contributions, no key event: {timed(plain.entries, plain.genesis) * 1000:.0f} ms")

    rotated = Book(members)
    for i in range(n // 2):
        rotated.work(members[i % 3])
    incept = rotated.append(a, "key.incept", {"next": next_digest(a2.public_key)})
    rotated.append(a2, "key.rotate", {"identity": a.did, "prior": incept.id, "last": incept.id,
                                      "next": next_digest(a3.public_key)})
    members = [a2, b, c]
    for i in range(n - n // 2):
        rotated.work(members[i % 3])
    print(f"{n} contributions, one rotation: {timed(rotated.entries, rotated.genesis) * 1000:.0f} ms")

    grant = rotated.append(a2, "key.device", {"key": phone.public_key, "name": "phone"})
    first = rotated.append(phone, "vf.event", {"action": "work", "grant": grant.id,
                                               "effortQuantity": {"hasNumericalValue": "1", "hasUnit": "hour"}})
    rotated.append(a2, "key.revoke", {"device": grant.id, "last": first.id})
    print(f"{n} contributions, a rotation, a device added and revoked: "
          f"{timed(rotated.entries, rotated.genesis) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
