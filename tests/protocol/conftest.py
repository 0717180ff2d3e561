"""Every ledger the state, governance, distribution and keys tests build is folded incrementally too.

Their `compute_state` is wrapped so that each state they compute is also built by a `LedgerFold`
(protocol/fold.py) fed the same entries in the same order, in batches of varied sizes, and the two
must be equal, digest and every field. The tests themselves are unchanged.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Mapping

import pytest

from protocol import Entry
from protocol.fold import LedgerFold
from protocol.state import LedgerState, compute_state

FOLDED_MODULES = frozenset({"test_state", "test_governance", "test_distribution", "test_keys"})


def folded(genesis: Entry, entries: Iterable[Entry], forks: Mapping[bytes, int] | None = None) -> LedgerState:
    arrived = list(entries)
    reference = compute_state(genesis, arrived, forks)
    fold = LedgerFold(genesis, forks)
    rnd = random.Random(len(arrived))  # batches vary from ledger to ledger, the same on every run
    start = 0
    while start < len(arrived):
        size = rnd.choice((1, 1, 2, 5, len(arrived)))
        fold.add(arrived[start : start + size])
        start += size
    assert fold.state() == reference
    return reference


@pytest.fixture(autouse=True)
def fold_every_state(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    module = request.module
    if module.__name__ in FOLDED_MODULES and getattr(module, "compute_state", None) is compute_state:
        monkeypatch.setattr(module, "compute_state", folded)
    yield
