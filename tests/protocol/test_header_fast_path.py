"""The fast header reader (`entry._canonical_header`) accepts exactly what the general decoder
accepts with the same result, or steps aside: it never accepts a header the decoder refuses."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from protocol_helpers import FAST, follow, genesis, header_map, key, signed_header

from protocol import InvalidData, dagcbor
from protocol.entry import MAX_KIND_CHARS, Header, _canonical_header, _check_fields, _header_fields

A = key(1)
G = genesis(A)
ENTRIES = [G, follow(A, None, G.id), follow(A, follow(A, None, G.id), G.id, ts=2**40, kind="vf.commitment")]


def general(raw: bytes) -> Header | str:
    """What the general path makes of `raw`: the header, or the refusal's code."""
    try:
        header = _header_fields(raw)
    except InvalidData as exc:
        return exc.code
    return header if header.encode() == raw else "bad_encoding"


def fast(raw: bytes) -> Header | str | None:
    """What the fast path makes of `raw` (None: it steps aside), field checks included."""
    header = _canonical_header(raw)
    if header is None:
        return None
    try:
        _check_fields(header)
    except InvalidData as exc:
        return exc.code
    return header


def test_every_canonical_header_takes_the_fast_path() -> None:
    for entry in ENTRIES:
        assert fast(entry.header_raw) == general(entry.header_raw) == entry.header


@FAST
@given(st.sampled_from(ENTRIES), st.data())
def test_a_mutated_header_is_read_alike_or_left_to_the_decoder(entry: object, data: st.DataObject) -> None:
    raw = bytearray(entry.header_raw)  # type: ignore[attr-defined]
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        at = data.draw(st.integers(0, len(raw) - 1))
        if op == "flip":
            raw[at] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del raw[at]
        else:
            raw.insert(at, data.draw(st.integers(0, 255)))
    read = fast(bytes(raw))
    if read is not None:
        assert general(bytes(raw)) == read


@FAST
@given(
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**20),
    st.text(max_size=70),
    st.booleans(),
)
def test_any_field_values_are_read_alike(ts: int, seq: int, size: int, kind: str, with_ledger: bool) -> None:
    fields = header_map(ENTRIES[1])
    fields.update({"ts": ts, "seq": seq, "size": size, "kind": kind})
    if not with_ledger:
        fields.pop("ledger")
    raw = signed_header(A, fields)
    read = fast(raw)
    if read is None:  # canonical by construction: it steps aside only from a kind longer than any valid one
        assert len(kind.encode()) > MAX_KIND_CHARS  # (kinds are ASCII, at most 64 characters: SPEC.md §5.1)
        assert isinstance(general(raw), str)  # which refuses it (bad_field, or another field first)
    else:
        assert general(raw) == read


def test_non_shortest_integers_are_left_to_the_decoder() -> None:
    raw = ENTRIES[1].header_raw
    ts_at = raw.index(dagcbor.text_string("ts")) + 3
    longer = raw[:ts_at] + bytes((0x18, raw[ts_at])) + raw[ts_at + 1 :]  # ts as a 1-byte argument below 24
    assert _canonical_header(longer) is None
    assert general(longer) == "bad_encoding"
