"""protocol/fold_ids.py: a fold's ids off the Python heap find every row they were given, and nothing else."""

from __future__ import annotations

import hashlib
import pickle
from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.cid import CID
from protocol.fold_ids import WIDTH, Ids


def cid(n: int) -> bytes:
    return CID.for_block(n.to_bytes(8, "big")).raw


def test_rows_by_id_and_ids_by_row_through_growth_and_pickling() -> None:
    ids = Ids()
    raws = [cid(n) for n in range(5_000)]  # the table grows ~9 times
    assert [ids.add(raw) for raw in raws] == list(range(5_000))
    ids.settled()  # from the table alone
    again = pickle.loads(pickle.dumps(ids))
    for held in (ids, again):
        assert len(held) == 5_000
        assert [held[raw] for raw in raws] == list(range(5_000))
        assert [held.id(i) for i in range(5_000)] == raws == list(held.first(5_000))
        assert list(held.first(3)) == raws[:3]
        assert held.raws(array("i", [4_999, 0, 17])) == [raws[4_999], raws[0], raws[17]]
        assert all(type(raw) is bytes for raw in [*held.first(2), *held.raws(array("i", [1]))])
        assert cid(5_000) not in held and held.get(cid(5_001)) is None
        with pytest.raises(KeyError):
            held[cid(5_002)]
        with pytest.raises(IndexError):
            held.id(5_000)


def test_ids_alike_in_the_bytes_probed_are_told_apart() -> None:
    """Ids that agree on their last 8 bytes (what picks the slot and the step) take one probe chain: each is
    still found, by comparing whole ids."""
    ids = Ids()
    tail = hashlib.sha256(b"tail").digest()[-8:]
    raws = [bytes(4) + hashlib.sha256(bytes([n])).digest()[:24] + tail for n in range(200)]
    assert all(len(raw) == WIDTH for raw in raws)
    for raw in raws:
        ids.add(raw)
    ids.settled()
    assert [ids.get(raw) for raw in raws] == list(range(200))
    assert bytes(4) + bytes(24) + tail not in ids


def test_ids_of_another_width_are_kept_beside() -> None:
    ids = Ids()
    short, long = b"\x01" * 10, b"\x02" * 40
    rows = [ids.add(cid(1)), ids.add(short), ids.add(cid(2)), ids.add(long)]
    ids.settled()
    again = pickle.loads(pickle.dumps(ids))
    for held in (ids, again):
        assert [held[raw] for raw in (cid(1), short, cid(2), long)] == rows == [0, 1, 2, 3]
        assert [held.id(i) for i in rows] == [cid(1), short, cid(2), long] == list(held.first(4))
        assert held.raws(array("i", [3, 0])) == [long, cid(1)]
        assert b"\x01" * 11 not in held


@given(st.lists(st.binary(min_size=WIDTH, max_size=WIDTH), unique=True, max_size=300),
       st.lists(st.binary(min_size=WIDTH, max_size=WIDTH), max_size=20))
def test_the_same_rows_as_a_dict(raws: list[bytes], others: list[bytes]) -> None:
    ids, expected = Ids(), {}
    for n, raw in enumerate(raws):
        expected[raw] = ids.add(raw)
        if n % 7 == 0:
            ids.settled()
    for raw in [*raws, *others]:
        assert ids.get(raw) == expected.get(raw)
    assert [ids.id(i) for i in range(len(raws))] == raws


def test_add_new_adds_what_is_not_held_and_refuses_what_is() -> None:
    ids = Ids()
    raws = [cid(n) for n in range(3_000)]  # through growth, as `add` does
    assert [ids.add_new(raw) for raw in raws] == list(range(3_000))
    assert ids.add_new(raws[17]) == -1  # held since this batch (the dict) ...
    ids.settled()
    assert ids.add_new(raws[2_999]) == -1  # ... and in the table alone
    short = b"\x03" * 9
    assert ids.add_new(short) == 3_000 and ids.add_new(short) == -1  # another width: beside
    assert ids.add_new(cid(3_000)) == 3_001
    assert len(ids) == 3_002
    assert [ids[raw] for raw in raws] == list(range(3_000)) and ids[short] == 3_000 and ids.id(3_001) == cid(3_000)
