"""Chain rules (protocol/chain.py): valid chains verify; each defect has its own code."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from protocol_helpers import SIGNING, bodies, cid_of, follow, genesis, key

from protocol.chain import ChainHead, check_next, verify_chain
from protocol.cid import CID
from protocol.entry import Entry, create_entry
from protocol.errors import InvalidData

A = key(1)
B = key(2)
G = genesis(A, ts=100)
OTHER_LEDGER = genesis(B, ts=100)


def refused(entries: list[Entry], head: Entry | None = None) -> str:
    with pytest.raises(InvalidData) as info:
        verify_chain(entries, None if head is None else ChainHead.of(head))
    return info.value.code


def head_of(entry: Entry) -> ChainHead:
    return ChainHead.of(entry)


def make(author: Any, *, ledger: CID | None, seq: int, prev: CID | None, ts: int, kind: str = "vf.event",
         body: dict[str, Any] | None = None) -> Entry:
    return create_entry(author, ledger=ledger, seq=seq, prev=prev, ts=ts, kind=kind,
                        body={"seq": seq} if body is None else body)


# --- the shape of a ledger ---------------------------------------------------------------------------


def test_genesis_is_seq_1_of_the_founders_chain() -> None:
    check_next(None, G)
    founder_2 = make(A, ledger=G.id, seq=2, prev=G.id, ts=100)
    founder_3 = make(A, ledger=G.id, seq=3, prev=founder_2.id, ts=101)
    assert verify_chain([G, founder_2, founder_3]) == head_of(founder_3)
    assert head_of(founder_3) == ChainHead(A.public_key, G.id, 3, founder_3.id, 101)
    assert founder_2.ledger_id == G.ledger_id == G.id


def test_another_authors_first_entry_is_seq_1_with_prev_null() -> None:
    member_1 = make(B, ledger=G.id, seq=1, prev=None, ts=0)
    member_2 = make(B, ledger=G.id, seq=2, prev=member_1.id, ts=0)
    check_next(None, member_1)
    assert verify_chain([member_1, member_2]) == head_of(member_2)
    assert member_1.ledger_id == G.id
    # a member's chain is not the founder's
    with pytest.raises(InvalidData) as info:
        check_next(head_of(G), member_1)
    assert info.value.code == "wrong_author"


def test_founder_cannot_start_a_second_chain_after_genesis() -> None:
    again = make(A, ledger=G.id, seq=1, prev=None, ts=100)
    assert refused([G, again]) == "seq_gap"


def test_empty_and_split_chains() -> None:
    assert verify_chain([]) is None
    assert verify_chain([], head_of(G)) == head_of(G)
    e2 = follow(A, G, G.id)
    e3 = follow(A, e2, G.id)
    assert verify_chain([e3], verify_chain([G, e2])) == verify_chain([G, e2, e3]) == head_of(e3)


def test_equal_timestamps_are_allowed() -> None:
    e2 = make(A, ledger=G.id, seq=2, prev=G.id, ts=G.header.ts)
    assert verify_chain([G, e2]) == head_of(e2)


# --- each defect ------------------------------------------------------------------------------------

E2 = make(A, ledger=G.id, seq=2, prev=G.id, ts=200)


def test_empty_chain_must_start_at_seq_1() -> None:
    assert refused([E2]) == "seq_gap"
    assert refused([make(B, ledger=G.id, seq=5, prev=cid_of(b"x"), ts=0)]) == "seq_gap"


@pytest.mark.parametrize("seq", [1, 2, 4, 10])
def test_seq_gap(seq: int) -> None:
    entry = make(A, ledger=G.id, seq=seq, prev=None if seq == 1 else E2.id, ts=300)
    assert refused([entry], E2) == "seq_gap"


def test_repeated_entry_is_a_seq_gap() -> None:
    assert refused([G, G]) == "seq_gap"
    assert refused([G, E2, E2]) == "seq_gap"


@pytest.mark.parametrize("prev", [cid_of(b"elsewhere"), G.id], ids=["unknown", "skips-back"])
def test_bad_prev(prev: CID) -> None:
    entry = make(A, ledger=G.id, seq=3, prev=prev, ts=300)
    assert refused([G, E2, entry]) == "bad_prev"


def test_ts_regression() -> None:
    entry = make(A, ledger=G.id, seq=3, prev=E2.id, ts=E2.header.ts - 1)
    assert refused([G, E2, entry]) == "ts_regression"
    assert refused([make(A, ledger=G.id, seq=2, prev=G.id, ts=G.header.ts - 1)], G) == "ts_regression"


def test_wrong_ledger() -> None:
    entry = make(A, ledger=OTHER_LEDGER.id, seq=3, prev=E2.id, ts=300)
    assert refused([G, E2, entry]) == "wrong_ledger"
    # a second genesis by the founder founds another ledger: it cannot continue this chain
    assert refused([E2, genesis(A, ts=300)], G) == "wrong_ledger"


def test_wrong_author() -> None:
    entry = make(B, ledger=G.id, seq=3, prev=E2.id, ts=300)
    assert refused([G, E2, entry]) == "wrong_author"


# --- properties -------------------------------------------------------------------------------------


@st.composite
def chains(draw: st.DrawFn, min_size: int = 1) -> list[Entry]:
    """A valid chain: a founder's from genesis, or a member's in some ledger."""
    author = key(draw(st.integers(min_value=10, max_value=13)))
    size = draw(st.integers(min_value=min_size, max_value=12))
    steps = draw(st.lists(st.integers(min_value=0, max_value=5_000), min_size=size, max_size=size))
    ts = 1 + steps[0]
    body_list = draw(st.lists(bodies, min_size=size, max_size=size))
    if draw(st.booleans()):
        chain = [genesis(author, ts=ts, body=body_list[0])]
        ledger = chain[0].id
    else:
        ledger = G.id
        chain = [make(author, ledger=ledger, seq=1, prev=None, ts=ts, body=body_list[0])]
    for step, body in zip(steps[1:], body_list[1:], strict=True):
        ts += step
        chain.append(make(author, ledger=ledger, seq=len(chain) + 1, prev=chain[-1].id, ts=ts, body=body))
    return chain


@SIGNING
@given(chains())
def test_valid_chains_verify(chain: list[Entry]) -> None:
    assert verify_chain(chain) == head_of(chain[-1])
    assert all(e.ledger_id == chain[0].ledger_id for e in chain)
    for i in range(len(chain)):
        assert verify_chain(chain[i:], head_of(chain[i - 1]) if i else None) == head_of(chain[-1])


DEFECTS = ["seq_gap", "bad_prev", "ts_regression", "wrong_ledger", "wrong_author"]


def _defective(defect: str, head: ChainHead, data: st.DataObject) -> Entry:
    """The entry after `head` (by A) with exactly `defect` wrong."""
    fields: dict[str, Any] = {
        "ledger": head.ledger, "seq": head.seq + 1, "prev": head.id, "ts": head.ts + data.draw(st.integers(0, 9)),
    }
    author = B if defect == "wrong_author" else A
    if defect == "seq_gap":
        repeat = [head.seq] if head.seq > 1 else []  # seq 1 would need prev null
        fields["seq"] = data.draw(st.sampled_from([*repeat, head.seq + 2, head.seq + 7]))
    elif defect == "bad_prev":
        fields["prev"] = data.draw(st.sampled_from([cid_of(b"x"), cid_of(b"y")]))
    elif defect == "ts_regression":
        fields["ts"] = head.ts - data.draw(st.integers(min_value=1, max_value=head.ts))
    elif defect == "wrong_ledger":
        fields["ledger"] = OTHER_LEDGER.id
    return make(author, **fields)


@SIGNING
@given(st.data())
def test_each_defect_has_its_code(data: st.DataObject) -> None:
    chain = [G]
    for _ in range(data.draw(st.integers(min_value=0, max_value=6))):
        chain.append(make(A, ledger=G.id, seq=len(chain) + 1, prev=chain[-1].id,
                          ts=chain[-1].header.ts + data.draw(st.integers(0, 50))))
    defect = data.draw(st.sampled_from(DEFECTS))
    bad = _defective(defect, ChainHead.of(chain[-1]), data)
    assert verify_chain(chain) == head_of(chain[-1])
    assert refused([*chain, bad]) == defect
