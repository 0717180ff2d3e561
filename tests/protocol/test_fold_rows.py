"""protocol/fold_rows.py, protocol/fold_events.py: an event kept as columns is built back equal to the one kept,
through pickling too."""

from __future__ import annotations

import pickle
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.cid import CID
from protocol.fold_ids import Ids
from protocol.fold_rows import Rows
from protocol.valueflows import Event, Quantity


def cid(n: int) -> CID:
    return CID.for_block(n.to_bytes(8, "big"))


texts = st.sampled_from(["", "work", "did:key:z6Mk1", "did:key:z6Mk2", "2025-01-01", "2025-01-01T10:00:00Z", "é"])
times = st.none() | texts
quantities = st.builds(Quantity, st.decimals(allow_nan=False, allow_infinity=False, places=2), texts)
links = st.none() | st.integers(0, 3).map(cid)
events = st.builds(
    Event, texts, texts, texts, quantities, st.booleans(), st.lists(texts, max_size=3).map(tuple), times, times, times,
    texts, links, st.integers(0, 3).map(cid), links,
    st.none() | st.floats(allow_nan=False, allow_infinity=False) | st.just(-0.0) | st.just(0.0),
)


@settings(max_examples=200)
@given(st.lists(events, min_size=1, max_size=8))
def test_events_kept_as_columns_are_built_back_equal(kept: list[Event]) -> None:
    ids = Ids()
    rows = Rows(cid(99), ids)
    for i, event in enumerate(kept):
        ids.add(cid(1_000 + i).raw)
        rows.ts.append(i)
        rows.grow()
        rows.keep_event(i, event)
    rows.built.clear()  # built again from the columns, not the events kept for the arrival
    again = pickle.loads(pickle.dumps(rows))
    for held in (rows, again):
        built = [held.event(i) for i in range(len(kept))]
        assert built == kept
        # each field alike, `at`'s sign and type too (a dataclass's == would not tell -0.0 from 0.0)
        for b, e in zip(built, kept, strict=True):
            assert [repr(getattr(b, f)) for f in Event.__slots__] == [repr(getattr(e, f)) for f in Event.__slots__]
    assert rows.event(0) is not rows.event(0)  # made when read, kept nowhere


def test_values_alike_are_kept_once() -> None:
    ids = Ids()
    rows = Rows(cid(99), ids)
    for i in range(3):
        ids.add(cid(1_000 + i).raw)
        rows.ts.append(i)
        rows.grow()
        rows.keep_event(i, Event("work", "did:key:a", "did:key:b", Quantity(Decimal("2"), "hour"), True, ("x",),
                                 None, "2025-01-01T10:00:00Z", "2025-01-01T12:00:00Z", "", None, cid(1), None, 1.5))
    assert len(rows.events.whats) == len(rows.events.whos) == 1
    assert len(rows.events.values) == 4  # None, the quantity, the beginning and the end
    assert not rows.events.named
