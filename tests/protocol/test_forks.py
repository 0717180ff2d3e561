"""Fork proofs (protocol/fork.py)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from protocol_helpers import SIGNING, bodies, follow, genesis, header_map, key, signed_header

from protocol import dagcbor
from protocol.entry import Entry, create_entry
from protocol.errors import InvalidData
from protocol.fork import MAX_FORK_PROOF_BYTES, ForkProof

A = key(1)
B = key(2)
G = genesis(A, ts=100)
G_OTHER = genesis(A, ts=100, body={"name": "Other coop"})
E2 = follow(A, G, G.id, body={"n": 1})
E2_FORK = follow(A, G, G.id, body={"n": 2})
E3 = follow(A, E2, G.id)


def refused(data: bytes) -> str:
    with pytest.raises(InvalidData) as info:
        ForkProof.decode(data)
    return info.value.code


def proof_bytes(a: Entry, b: Entry, **extra: Any) -> bytes:
    return dagcbor.encode({"v": 1, "a": a.header_raw, "b": b.header_raw, **extra})


def test_fork_proof_round_trip() -> None:
    proof = ForkProof.of(E2, E2_FORK)
    assert proof == ForkProof.of(E2_FORK, E2)
    assert proof.a.id.raw < proof.b.id.raw
    assert {proof.a.id, proof.b.id} == {E2.id, E2_FORK.id}
    assert proof.author == A.did
    assert proof.seq == 2
    data = proof.encode()
    assert len(data) <= MAX_FORK_PROOF_BYTES
    assert dagcbor.decode(data, max_bytes=MAX_FORK_PROOF_BYTES) == {
        "v": 1, "a": proof.a.header_raw, "b": proof.b.header_raw,
    }
    back = ForkProof.decode(data)
    assert (back.a.id, back.b.id) == (proof.a.id, proof.b.id)
    assert back.a.header == proof.a.header and back.b.header == proof.b.header
    assert back.encode() == data


def test_genesis_and_founders_seq_1_entry_in_its_ledger_fork() -> None:
    second_start = create_entry(A, ledger=G.id, seq=1, prev=None, ts=100, kind="vf.event", body={})
    proof = ForkProof.of(G, second_start)
    assert proof.seq == 1
    assert ForkProof.decode(proof.encode()).a.ledger_id == G.id


def test_every_single_byte_change_of_a_proof_is_refused() -> None:
    data = ForkProof.of(E2, E2_FORK).encode()
    for i in range(len(data)):
        for xor in (0x01, 0x80):
            changed = data[:i] + bytes([data[i] ^ xor]) + data[i + 1:]
            with pytest.raises(InvalidData):
                ForkProof.decode(changed)


def test_truncated_or_extended_proof_is_refused() -> None:
    data = ForkProof.of(E2, E2_FORK).encode()
    for end in range(len(data)):
        with pytest.raises(InvalidData):
            ForkProof.decode(data[:end])
    assert refused(data + b"\x00") == "bad_encoding"


NOT_FORKS = {
    "different-seqs": (E2, E3),
    "different-authors": (follow(A, None, G.id, body={}), follow(B, None, G.id, body={})),
    "different-ledgers": (G, G_OTHER),
    "different-ledgers-same-seq": (follow(A, G, G.id), follow(A, G_OTHER, G_OTHER.id)),
    "same-entry": (E2, E2),
}


@pytest.mark.parametrize(("one", "other"), NOT_FORKS.values(), ids=NOT_FORKS.keys())
def test_not_a_fork(one: Entry, other: Entry) -> None:
    with pytest.raises(InvalidData) as info:
        ForkProof.of(one, other)
    assert info.value.code == "bad_fork_proof"
    a, b = sorted((one, other), key=lambda e: e.id.raw)
    assert refused(proof_bytes(a, b)) == "bad_fork_proof"


def test_headers_out_of_order() -> None:
    a, b = sorted((E2, E2_FORK), key=lambda e: e.id.raw)
    with pytest.raises(InvalidData) as info:
        ForkProof(b, a)
    assert info.value.code == "bad_fork_proof"
    assert refused(proof_bytes(b, a)) == "bad_fork_proof"


def test_header_with_bad_signature() -> None:
    a, b = sorted((E2, E2_FORK), key=lambda e: e.id.raw)
    forged = signed_header(B, header_map(b))
    data = dagcbor.encode({"v": 1, "a": a.header_raw, "b": forged})
    assert refused(data) == "bad_signature"


@pytest.mark.parametrize("value", [2, 0, True, "1", None])
def test_unknown_proof_version(value: Any) -> None:
    a, b = sorted((E2, E2_FORK), key=lambda e: e.id.raw)
    assert refused(proof_bytes(a, b, v=value)) == "unknown_version"


def _ordered() -> tuple[Entry, Entry]:
    a, b = sorted((E2, E2_FORK), key=lambda e: e.id.raw)
    return a, b


BAD_SHAPES = {
    "not-a-map": lambda a, b: dagcbor.encode([1, a.header_raw, b.header_raw]),
    "missing-b": lambda a, b: dagcbor.encode({"v": 1, "a": a.header_raw}),
    "extra-key": lambda a, b: proof_bytes(a, b, c=b""),
    "a-as-text": lambda a, b: dagcbor.encode({"v": 1, "a": "header", "b": b.header_raw}),
    "b-as-list": lambda a, b: dagcbor.encode({"v": 1, "a": a.header_raw, "b": [b.header_raw]}),
    "a-as-cid": lambda a, b: dagcbor.encode({"v": 1, "a": a.id, "b": b.header_raw}),
}


@pytest.mark.parametrize("build", BAD_SHAPES.values(), ids=BAD_SHAPES.keys())
def test_bad_proof_shape(build: Any) -> None:
    assert refused(build(*_ordered())) == "bad_fork_proof"


def test_oversize_proof() -> None:
    a, b = _ordered()
    data = dagcbor.encode({"v": 1, "a": a.header_raw, "b": b.header_raw + b"\x00" * MAX_FORK_PROOF_BYTES})
    assert refused(data) == "oversize"


@SIGNING
@given(bodies, bodies)
def test_any_two_bodies_at_one_seq_fork(one: dict[str, Any], other: dict[str, Any]) -> None:
    x = follow(A, E2, G.id, body=one)
    y = follow(A, E2, G.id, body=other, ts=E2.header.ts + (one == other))
    proof = ForkProof.of(x, y)
    back = ForkProof.decode(proof.encode())
    assert {back.a.id, back.b.id} == {x.id, y.id}
    assert back.seq == 3
