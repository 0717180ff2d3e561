"""Signed entries (protocol/entry.py): round trips, every byte covered, and one test per rule."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st
from protocol_helpers import (
    FAST,
    SIGNING,
    cid_of,
    dag_values,
    entries,
    follow,
    genesis,
    header_map,
    key,
    signed_header,
)

from protocol import dagcbor
from protocol.cid import CID, CODEC_RAW
from protocol.entry import (
    GENESIS_KIND,
    MAX_HEADER_BYTES,
    MAX_KIND_CHARS,
    MAX_PAYLOAD_BYTES,
    MAX_SAFE_INT,
    SIGNING_PREFIX,
    Entry,
    check_entry_signature,
    create_entry,
    decode_entry,
    decode_header,
    decode_stored_entries,
    decode_stored_entry,
)
from protocol.errors import InvalidData
from protocol.identity import verify_signature

A = key(1)
B = key(2)
GENESIS = genesis(A, ts=1_000)
LINKED = cid_of(b"some other block")
E2 = follow(
    A, GENESIS, GENESIS.id, ts=1_001,
    body={"qty": "5.25", "note": "h\u00e9llo", "ref": LINKED, "raw": b"\x00\x01", "n": [-1, 2**40, None, True]},
)
XORS = (0x01, 0x40, 0x80, 0xFF)


def code_of(header_raw: bytes, payload_raw: bytes | None = None) -> str:
    with pytest.raises(InvalidData) as info:
        decode_entry(header_raw, payload_raw)
    return info.value.code


# --- round trips and layout ------------------------------------------------------------------------


@pytest.mark.parametrize("entry", [GENESIS, E2], ids=["genesis", "seq2"])
def test_round_trip(entry: Entry) -> None:
    assert entry.payload_raw is not None
    back = decode_entry(entry.header_raw, entry.payload_raw)
    assert back == entry
    assert back.body == entry.body
    assert back.id == CID.for_block(entry.header_raw)
    assert str(back.id).startswith("bafyrei")
    assert len(entry.header_raw) <= MAX_HEADER_BYTES


@pytest.mark.parametrize("entry", [GENESIS, E2], ids=["genesis", "seq2"])
def test_header_verifies_without_payload(entry: Entry) -> None:
    back = decode_entry(entry.header_raw, None)
    assert back.id == entry.id
    assert back.header == entry.header
    assert back.payload_raw is None
    assert back.body is None


def test_entry_properties() -> None:
    assert GENESIS.is_genesis and not E2.is_genesis
    assert GENESIS.ledger_id == GENESIS.id
    assert E2.ledger_id == GENESIS.id
    assert GENESIS.author == E2.author == A.did
    assert (GENESIS.seq, E2.seq) == (1, 2)
    assert (GENESIS.kind, E2.kind) == (GENESIS_KIND, "vf.event")
    assert GENESIS.header.prev is None and E2.header.prev == GENESIS.id
    assert E2.header.payload == CID.for_block(dagcbor.encode(E2.body))
    assert E2.header.size == len(dagcbor.encode(E2.body))


@pytest.mark.parametrize(
    ("entry", "keys"),
    [
        (GENESIS, ["v", "ts", "seq", "sig", "kind", "prev", "size", "author", "payload"]),
        (E2, ["v", "ts", "seq", "sig", "kind", "prev", "size", "author", "ledger", "payload"]),
    ],
    ids=["genesis", "seq2"],
)
def test_header_wire_layout(entry: Entry, keys: list[str]) -> None:
    """A header is a DAG-CBOR map in length-first key order; a genesis has no ledger key at all."""
    value = cbor2.loads(entry.header_raw)  # a lenient reader, to see the order on the wire
    assert list(value) == keys
    assert entry.header_raw[:4] == bytes([0xA0 + len(keys), 0x61, ord("v"), 0x01])


@pytest.mark.parametrize("entry", [GENESIS, E2], ids=["genesis", "seq2"])
def test_signature_covers_prefix_and_header_without_sig(entry: Entry) -> None:
    fields = header_map(entry)
    sig = fields.pop("sig")
    assert verify_signature(A.public_key, sig, SIGNING_PREFIX + dagcbor.encode(fields))
    assert entry.header.signing_bytes() == SIGNING_PREFIX + dagcbor.encode(fields)
    assert signed_header(A, header_map(entry)) == entry.header_raw  # Ed25519 is deterministic


@SIGNING
@given(entries())
def test_random_entries_round_trip(entry: Entry) -> None:
    assert entry.payload_raw is not None
    assert decode_entry(entry.header_raw, entry.payload_raw) == entry
    assert decode_entry(entry.header_raw, None).header == entry.header


# --- every byte is covered -------------------------------------------------------------------------


def _changed(data: bytes, i: int, xor: int) -> bytes:
    return data[:i] + bytes([data[i] ^ xor]) + data[i + 1:]


@pytest.mark.parametrize("entry", [GENESIS, E2], ids=["genesis", "seq2"])
def test_every_single_byte_change_of_header_is_refused(entry: Entry) -> None:
    codes = set()
    for i in range(len(entry.header_raw)):
        for xor in XORS:
            changed = _changed(entry.header_raw, i, xor)
            with pytest.raises(InvalidData) as info:
                decode_entry(changed, entry.payload_raw)
            codes.add(info.value.code)
    assert {"bad_signature", "bad_encoding"} <= codes


@pytest.mark.parametrize("entry", [GENESIS, E2], ids=["genesis", "seq2"])
def test_every_single_byte_change_of_payload_is_refused(entry: Entry) -> None:
    assert entry.payload_raw is not None
    for i in range(len(entry.payload_raw)):
        for xor in XORS:
            assert code_of(entry.header_raw, _changed(entry.payload_raw, i, xor)) == "payload_mismatch"


@SIGNING
@given(entries(), st.data())
def test_random_single_byte_change_is_refused(entry: Entry, data: st.DataObject) -> None:
    assert entry.payload_raw is not None
    xor = data.draw(st.integers(min_value=1, max_value=255))
    i = data.draw(st.integers(min_value=0, max_value=len(entry.header_raw) - 1))
    with pytest.raises(InvalidData):
        decode_entry(_changed(entry.header_raw, i, xor), entry.payload_raw)
    j = data.draw(st.integers(min_value=0, max_value=len(entry.payload_raw) - 1))
    assert code_of(entry.header_raw, _changed(entry.payload_raw, j, xor)) == "payload_mismatch"


@pytest.mark.parametrize("entry", [GENESIS, E2], ids=["genesis", "seq2"])
def test_truncated_or_extended_header_is_refused(entry: Entry) -> None:
    for end in range(len(entry.header_raw)):
        with pytest.raises(InvalidData):
            decode_entry(entry.header_raw[:end], entry.payload_raw)
    for extra in (b"\x00", b"\xa0", b"\xff", entry.header_raw):
        assert code_of(entry.header_raw + extra, entry.payload_raw) == "bad_encoding"


@pytest.mark.parametrize("entry", [GENESIS, E2], ids=["genesis", "seq2"])
def test_truncated_or_extended_payload_is_refused(entry: Entry) -> None:
    assert entry.payload_raw is not None
    for end in range(len(entry.payload_raw)):
        assert code_of(entry.header_raw, entry.payload_raw[:end]) == "payload_mismatch"
    for extra in (b"\x00", b"\xa0", entry.payload_raw):
        assert code_of(entry.header_raw, entry.payload_raw + extra) == "payload_mismatch"


# --- one defect at a time ---------------------------------------------------------------------------

DROP = object()  # a field value meaning "remove the field"
RAW_CID = cid_of(b"raw block", CODEC_RAW)


def _defect(base: Entry, **changes: Any) -> bytes:
    fields = header_map(base)
    for name, value in changes.items():
        if value is DROP:
            fields.pop(name)
        else:
            fields[name] = value
    return signed_header(A, fields)


VERSION_DEFECTS = {"2": 2, "0": 0, "-1": -1, "true": True, "text": "1", "null": None, "bytes": b"\x01",
                   "missing": DROP}


@pytest.mark.parametrize("value", VERSION_DEFECTS.values(), ids=VERSION_DEFECTS.keys())
def test_unknown_version(value: Any) -> None:
    assert code_of(_defect(E2, v=value)) == "unknown_version"


@pytest.mark.parametrize("name", ["author", "seq", "prev", "ts", "kind", "payload", "size"])
def test_missing_field(name: str) -> None:
    assert code_of(_defect(E2, **{name: DROP})) == "missing_field"


def test_missing_sig() -> None:
    fields = header_map(E2)
    del fields["sig"]
    assert code_of(dagcbor.encode(fields)) == "missing_field"


@pytest.mark.parametrize(("name", "value"), [("extra", 1), ("Ledger", LINKED), ("sig2", b""), ("", 0),
                                             ("note", "hi")])
def test_unknown_field(name: str, value: Any) -> None:
    assert code_of(_defect(E2, **{name: value})) == "unknown_field"


BAD_FIELDS = {
    "seq-text": ("seq", "2"),
    "seq-true": ("seq", True),
    "seq-false": ("seq", False),
    "seq-bytes": ("seq", b"\x02"),
    "seq-null": ("seq", None),
    "seq-list": ("seq", [2]),
    "seq-0": ("seq", 0),
    "seq-negative": ("seq", -2),
    "seq-over-safe-int": ("seq", MAX_SAFE_INT + 1),
    "ts-text": ("ts", "1001"),
    "ts-true": ("ts", True),
    "ts-null": ("ts", None),
    "ts-negative": ("ts", -1),
    "ts-over-safe-int": ("ts", MAX_SAFE_INT + 1),
    "size-true": ("size", True),
    "size-text": ("size", "5"),
    "size-negative": ("size", -1),
    "author-did-text": ("author", A.did),
    "author-31": ("author", A.public_key[:31]),
    "author-33": ("author", A.public_key + b"\x00"),
    "author-null": ("author", None),
    "author-link": ("author", LINKED),
    "kind-int": ("kind", 5),
    "kind-bytes": ("kind", b"vf.event"),
    "kind-null": ("kind", None),
    "kind-empty": ("kind", ""),
    "kind-no-namespace": ("kind", "vf"),
    "kind-upper-namespace": ("kind", "VF.event"),
    "kind-trailing-dot": ("kind", "vf."),
    "kind-leading-dot": ("kind", ".event"),
    "kind-space": ("kind", "vf.ev ent"),
    "kind-digit-first": ("kind", "1vf.event"),
    "kind-newline": ("kind", "vf.event\n"),
    "kind-too-long": ("kind", "vf." + "a" * (MAX_KIND_CHARS - 2)),
    "payload-bytes": ("payload", cid_of(b"p").raw),
    "payload-text": ("payload", str(cid_of(b"p"))),
    "payload-null": ("payload", None),
    "payload-raw-codec": ("payload", RAW_CID),
    "prev-bytes": ("prev", GENESIS.id.raw),
    "prev-text": ("prev", str(GENESIS.id)),
    "prev-raw-codec": ("prev", RAW_CID),
    "ledger-null": ("ledger", None),
    "ledger-bytes": ("ledger", GENESIS.id.raw),
    "ledger-text": ("ledger", str(GENESIS.id)),
    "ledger-raw-codec": ("ledger", RAW_CID),
}


@pytest.mark.parametrize(("name", "value"), BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
def test_bad_field(name: str, value: Any) -> None:
    assert code_of(_defect(E2, **{name: value})) == "bad_field"


@pytest.mark.parametrize("value", [E2.header.sig[:63], E2.header.sig + b"\x00", b"", "sig", None, 0])
def test_bad_sig_field(value: Any) -> None:
    fields = header_map(E2)
    fields["sig"] = value
    assert code_of(dagcbor.encode(fields)) == "bad_field"


def test_longest_kind_is_accepted() -> None:
    kind = "vf." + "a" * (MAX_KIND_CHARS - 3)
    entry = follow(A, GENESIS, GENESIS.id, kind=kind)
    assert decode_entry(entry.header_raw, entry.payload_raw).kind == kind
    assert decode_entry(signed_header(A, {**header_map(E2), "kind": kind}), None).kind == kind


def test_limits_of_safe_integers_are_accepted() -> None:
    entry = decode_entry(signed_header(A, {**header_map(E2), "seq": MAX_SAFE_INT, "ts": MAX_SAFE_INT}), None)
    assert (entry.seq, entry.header.ts) == (MAX_SAFE_INT, MAX_SAFE_INT)
    assert decode_entry(signed_header(A, {**header_map(E2), "ts": 0}), None).header.ts == 0


def test_header_size_over_payload_limit_is_oversize() -> None:
    assert code_of(_defect(E2, size=MAX_PAYLOAD_BYTES + 1)) == "oversize"


def test_header_block_over_limit_is_oversize() -> None:
    big = dagcbor.encode({"v": 1, "x": "a" * MAX_HEADER_BYTES})
    assert code_of(big) == "oversize"


@pytest.mark.parametrize("value", [[1], "header", 1, None, b"\xa0"])
def test_header_not_a_map(value: Any) -> None:
    assert code_of(dagcbor.encode(value)) == "bad_encoding"


# --- signatures ------------------------------------------------------------------------------------


def test_signature_by_another_key() -> None:
    assert code_of(signed_header(B, header_map(E2))) == "bad_signature"


def test_author_swapped_for_another_key() -> None:
    assert code_of(_defect(E2, author=B.public_key)) == "bad_signature"


def test_author_that_is_not_a_valid_point() -> None:
    assert code_of(_defect(E2, author=b"\x00" * 32)) == "bad_signature"
    assert code_of(_defect(E2, author=b"\xff" * 32)) == "bad_signature"


@pytest.mark.parametrize("prefix", [b"", b"tally-entry-v2\x00", b"tally-entry-v1", SIGNING_PREFIX + b"\x00"])
def test_signature_needs_exactly_the_signing_prefix(prefix: bytes) -> None:
    fields = header_map(E2)
    del fields["sig"]
    fields["sig"] = A.sign(prefix + dagcbor.encode(fields))
    assert code_of(dagcbor.encode(fields)) == "bad_signature"


def test_signature_of_another_entry() -> None:
    other = follow(A, GENESIS, GENESIS.id, ts=1_001, body={"other": 1})
    fields = header_map(E2)
    fields["sig"] = other.header.sig
    assert code_of(dagcbor.encode(fields)) == "bad_signature"


def test_deferred_signature_check() -> None:
    forged = signed_header(B, header_map(E2))
    entry = decode_entry(forged, None, check_signature=False)
    with pytest.raises(InvalidData) as info:
        check_entry_signature(entry)
    assert info.value.code == "bad_signature"
    check_entry_signature(decode_entry(E2.header_raw, None, check_signature=False))


# --- payloads --------------------------------------------------------------------------------------


def test_payload_of_same_size_but_other_content() -> None:
    a = follow(A, GENESIS, GENESIS.id, body={"n": 1})
    b = follow(A, GENESIS, GENESIS.id, body={"n": 2})
    assert a.payload_raw is not None and b.payload_raw is not None
    assert len(a.payload_raw) == len(b.payload_raw)
    assert code_of(a.header_raw, b.payload_raw) == "payload_mismatch"
    assert code_of(a.header_raw, b"") == "payload_mismatch"
    assert code_of(a.header_raw, E2.payload_raw) == "payload_mismatch"


@pytest.mark.parametrize("payload", [[1, 2], "text", 7, None, b"\xa0", LINKED])
def test_payload_that_is_not_a_map(payload: Any) -> None:
    raw = dagcbor.encode(payload)
    header = _defect(E2, payload=CID.for_block(raw), size=len(raw))
    assert code_of(header, raw) == "bad_payload"
    assert decode_entry(header, None).header.size == len(raw)  # the header alone is fine


@pytest.mark.parametrize("raw_hex", ["a161611801", "a2616201616102", "a0ff", "f93c00", "bf ff"])
def test_payload_that_is_not_canonical(raw_hex: str) -> None:
    raw = bytes.fromhex(raw_hex.replace(" ", ""))
    header = _defect(E2, payload=CID.for_block(raw), size=len(raw))
    assert code_of(header, raw) == "bad_encoding"


@pytest.mark.parametrize("body", [[1], "x", None, 5, b"\xa0"])
def test_create_refuses_non_map_body(body: Any) -> None:
    with pytest.raises(InvalidData) as info:
        create_entry(A, ledger=GENESIS.id, seq=2, prev=GENESIS.id, ts=1, kind="vf.event", body=body)
    assert info.value.code == "bad_payload"


def test_payload_limit() -> None:
    overhead = len(dagcbor.encode({"x": ""})) + 2  # a text of 256+ chars has a 2-byte longer head
    largest = {"x": "a" * (MAX_PAYLOAD_BYTES - overhead)}
    entry = create_entry(A, ledger=GENESIS.id, seq=2, prev=GENESIS.id, ts=1, kind="vf.event", body=largest)
    assert entry.header.size == MAX_PAYLOAD_BYTES
    assert decode_entry(entry.header_raw, entry.payload_raw).body == largest
    with pytest.raises(InvalidData) as info:
        create_entry(A, ledger=GENESIS.id, seq=2, prev=GENESIS.id, ts=1, kind="vf.event",
                     body={"x": "a" * (MAX_PAYLOAD_BYTES - overhead + 1)})
    assert info.value.code == "oversize"


@pytest.mark.parametrize("body", [{"f": 1.5}, {"big": 2**64}, {"s": "\ud800"}, {1: "int key"}])
def test_create_refuses_non_dag_body(body: dict[Any, Any]) -> None:
    with pytest.raises(InvalidData) as info:
        create_entry(A, ledger=GENESIS.id, seq=2, prev=GENESIS.id, ts=1, kind="vf.event", body=body)
    assert info.value.code == "bad_encoding"


# --- genesis and prev rules --------------------------------------------------------------------------

CREATE_DEFECTS = {
    "no-ledger-not-genesis-kind": (dict(ledger=None, seq=1, prev=None, kind="vf.event"), "bad_genesis"),
    "genesis-kind-with-ledger": (dict(ledger=LINKED, seq=1, prev=None, kind=GENESIS_KIND), "bad_genesis"),
    "genesis-kind-with-ledger-seq2": (dict(ledger=LINKED, seq=2, prev=LINKED, kind=GENESIS_KIND), "bad_genesis"),
    "genesis-at-seq-2": (dict(ledger=None, seq=2, prev=LINKED, kind=GENESIS_KIND), "bad_genesis"),
    "genesis-with-prev": (dict(ledger=None, seq=1, prev=LINKED, kind=GENESIS_KIND), "bad_prev"),
    "seq-1-with-prev": (dict(ledger=LINKED, seq=1, prev=LINKED, kind="vf.event"), "bad_prev"),
    "seq-2-without-prev": (dict(ledger=LINKED, seq=2, prev=None, kind="vf.event"), "bad_prev"),
    "seq-0": (dict(ledger=LINKED, seq=0, prev=None, kind="vf.event"), "bad_field"),
    "bad-kind": (dict(ledger=LINKED, seq=1, prev=None, kind="Event"), "bad_field"),
    "ledger-raw-codec": (dict(ledger=RAW_CID, seq=1, prev=None, kind="vf.event"), "bad_field"),
}


@pytest.mark.parametrize(("fields", "code"), CREATE_DEFECTS.values(), ids=CREATE_DEFECTS.keys())
def test_create_and_decode_refuse_the_same(fields: dict[str, Any], code: str) -> None:
    with pytest.raises(InvalidData) as info:
        create_entry(A, ts=5, body={}, **fields)
    assert info.value.code == code
    # the same header, signed anyway, is refused on decode with the same code
    header = header_map(E2)
    del header["ledger"]
    header.update({"seq": fields["seq"], "prev": fields["prev"], "kind": fields["kind"]})
    if fields["ledger"] is not None:
        header["ledger"] = fields["ledger"]
    assert code_of(signed_header(A, header)) == code


def test_decode_header_alone_does_not_check_signature() -> None:
    forged = signed_header(B, header_map(E2))
    assert decode_header(forged).seq == 2
    with pytest.raises(InvalidData) as info:
        decode_header(_defect(E2, seq="2"))
    assert info.value.code == "bad_field"


def _lenient_header(fields: dict[str, Any]) -> bytes:
    """Canonical CBOR that need not be DAG-CBOR (floats, undefined …), via cbor2 itself."""

    def link(encoder: cbor2.CBOREncoder, value: Any) -> None:
        encoder.encode(cbor2.CBORTag(42, b"\x00" + value.raw))

    return cbor2.dumps(fields, canonical=True, default=link)


NOT_DAG_CBOR = {
    "v-float": ("v", 1.0),
    "seq-float": ("seq", 2.0),
    "ts-float": ("ts", 1001.0),
    "size-half-float": ("size", 0.5),
    "ts-undefined": ("ts", cbor2.undefined),
    "author-simple": ("author", cbor2.CBORSimpleValue(99)),
    "extra-float": ("x", 1.5),
    "extra-undefined": ("x", cbor2.undefined),
    "extra-bytes-key": ("x", {b"k": 1}),
    "extra-int-key": ("x", {1: 1}),
}


@pytest.mark.parametrize(("name", "value"), NOT_DAG_CBOR.values(), ids=NOT_DAG_CBOR.keys())
def test_header_holding_a_non_dag_cbor_value(name: str, value: Any) -> None:
    """SPEC §5.4 step 1 comes first: not DAG-CBOR is bad_encoding, whichever field holds it."""
    header = _lenient_header({**header_map(E2), name: value})
    assert code_of(header) == "bad_encoding"


@pytest.mark.parametrize("hex_", ["1802", "190002", "1a00000002"])
def test_header_with_non_shortest_integer(hex_: str) -> None:
    stretched = E2.header_raw.replace(b"\x63seq\x02", b"\x63seq" + bytes.fromhex(hex_))
    assert stretched != E2.header_raw
    assert code_of(stretched) == "bad_encoding"


def test_header_with_keys_out_of_order() -> None:
    fields = header_map(E2)
    body = b"".join(dagcbor.encode(k) + dagcbor.encode(fields[k]) for k in sorted(fields))  # plain string order
    assert code_of(bytes([0xA0 + len(fields)]) + body) == "bad_encoding"


# --- nothing but InvalidData ------------------------------------------------------------------------


@FAST
@given(st.binary(max_size=400))
def test_random_bytes_are_refused_with_invalid_data(data: bytes) -> None:
    with pytest.raises(InvalidData):
        decode_entry(data, None)


FIELDS = ["v", "author", "ledger", "seq", "prev", "ts", "kind", "payload", "size", "sig", "other"]


@SIGNING
@given(st.sampled_from(FIELDS), dag_values)
def test_any_value_in_any_field_is_accepted_or_invalid_data(name: str, value: Any) -> None:
    """A validly signed header with one field replaced by any DAG value: no other exception escapes."""
    header = signed_header(A, {**header_map(E2), name: value})
    try:
        entry = decode_entry(header, None)
    except InvalidData as exc:
        assert exc.code in {"unknown_version", "unknown_field", "bad_field", "bad_prev", "bad_genesis",
                            "oversize", "bad_encoding"}
    else:
        assert entry.header_raw == header
        assert entry.id == CID.for_block(header)


# ---- entries read back from a store ---------------------------------------------------------


@SIGNING
@given(entries())
def test_a_stored_entry_decodes_as_it_did_when_stored(entry: Entry) -> None:
    stored = decode_stored_entry(entry.id.raw, entry.header_raw, entry.payload_raw)
    checked = decode_entry(entry.header_raw, entry.payload_raw)
    assert (stored.id, stored.header, stored.body) == (checked.id, checked.header, checked.body)
    assert (stored.header_raw, stored.payload_raw) == (entry.header_raw, entry.payload_raw)
    erased = decode_stored_entry(entry.id.raw, entry.header_raw, None)
    assert (erased.header, erased.body, erased.payload_raw) == (entry.header, None, None)


def test_a_changed_stored_byte_is_store_corrupt() -> None:
    entry = follow(key(1), None, cid_of(b"ledger"), body={"note": "fixed the brakes", "n": 7})
    other = follow(key(1), None, cid_of(b"ledger"), body={"note": "fixed the brakes", "n": 8})

    def refused(entry_id: bytes, header: bytes, payload: bytes | None) -> str:
        with pytest.raises(InvalidData) as info:
            decode_stored_entry(entry_id, header, payload)
        return info.value.code

    assert refused(other.id.raw, entry.header_raw, entry.payload_raw) == "store_corrupt"  # another id
    assert refused(entry.id.raw, entry.header_raw, other.payload_raw) == "store_corrupt"  # another payload
    assert entry.payload_raw is not None
    for i in range(len(entry.payload_raw)):
        flipped = bytearray(entry.payload_raw)
        flipped[i] ^= 0x01
        assert refused(entry.id.raw, entry.header_raw, bytes(flipped)) == "store_corrupt"
    for i in range(len(entry.header_raw)):
        flipped = bytearray(entry.header_raw)
        flipped[i] ^= 0x01
        assert refused(entry.id.raw, bytes(flipped), entry.payload_raw) == "store_corrupt"


def _as_stored(entry_id: bytes, header: bytes, payload: bytes | None) -> tuple[str, Any]:
    """What `decode_stored_entry` makes of a row: ("entry", every field) or ("damaged", its code and message)."""
    try:
        e = decode_stored_entry(entry_id, header, payload)
    except InvalidData as exc:
        return "damaged", (exc.code, exc.message)
    return "entry", (e.id, e.header, e.header.sig, e.header_raw, e.payload_raw, e.body)


@SIGNING
@given(st.lists(st.tuples(entries(), st.sampled_from(["intact", "erased", "header", "payload", "id"]),
                          st.integers(min_value=0)), max_size=6))
def test_stored_rows_decode_in_one_pass_as_each_alone(rows: list[tuple[Entry, str, int]]) -> None:
    """`decode_stored_entries` (a ledger read back for a fold) makes of each row what `decode_stored_entry` makes of
    it, in order: the same entry, field for field, or the same error for a damaged row, left out."""
    stored = []
    for entry, damage, at in rows:
        header, payload, entry_id = entry.header_raw, entry.payload_raw, entry.id.raw
        if damage == "erased":
            payload = None
        elif damage == "header":
            header = _flip(header, at)
        elif damage == "payload" and payload:
            payload = _flip(payload, at)
        elif damage == "id":
            entry_id = _flip(entry_id, at)
        stored.append((entry_id, header, payload))
    decoded, damaged = decode_stored_entries(stored)
    expected = [_as_stored(*row) for row in stored]
    assert [("entry", (e.id, e.header, e.header.sig, e.header_raw, e.payload_raw, e.body)) for e in decoded] == [
        x for x in expected if x[0] == "entry"]
    assert [(rid, (exc.code, exc.message)) for rid, exc in damaged] == [
        (row[0], x[1]) for row, x in zip(stored, expected, strict=True) if x[0] == "damaged"]
    assert all(type(e.header.ts) is int and type(e.header.seq) is int for e in decoded)


def _flip(data: bytes, at: int) -> bytes:
    flipped = bytearray(data)
    flipped[at % len(data)] ^= 0x01
    return bytes(flipped)



# --- a stored endorsement's payload, read off its layout ----------------------------------------------------------

LINKS_36 = st.binary(min_size=32, max_size=32).map(lambda d: CID(bytes([1, 0x71, 0x12, 0x20]) + d))
RAW_LINK = CID(bytes([1, CODEC_RAW, 0x12, 0x20]) + bytes(32))  # another form: 36 bytes, not DAG-CBOR's
NOTES = st.one_of(st.none(), st.text(max_size=30),
                  st.sampled_from(["", "x" * 23, "x" * 24, "é" * 12, "x" * 255, "x" * 256, "é" * 128, "ok ✓"]))


@st.composite
def endorsement_bodies(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {}
    note = draw(NOTES)
    if note is not None:
        body["note"] = note
    body["event"] = draw(st.one_of(LINKS_36, st.just(RAW_LINK)))
    body["member"] = draw(st.one_of(LINKS_36, st.just(RAW_LINK)))
    body["verdict"] = draw(st.sampled_from(["accept", "reject", "maybe", ""]))
    if draw(st.integers(0, 4)) == 0:
        body[draw(st.sampled_from(["extra", "rules", "a"]))] = 1
    return body


@SIGNING
@given(st.lists(endorsement_bodies(), min_size=1, max_size=4))
def test_a_stored_endorsement_reads_as_cbor2_reads_it(bodies: list[dict[str, Any]]) -> None:
    """`decode_stored_entries` reads the usual endorsement's payload off its layout (dagcbor.trusted_endorsement):
    the same map, keys in the same order, as `decode_stored_entry` (cbor2) makes; any other payload by cbor2."""
    made = [follow(A, None, GENESIS.id, kind="vf.endorse", body=body) for body in bodies]
    decoded, damaged = decode_stored_entries([(e.id.raw, e.header_raw, e.payload_raw) for e in made])
    assert not damaged
    for entry, got, body in zip(made, decoded, bodies, strict=True):
        want = decode_stored_entry(entry.id.raw, entry.header_raw, entry.payload_raw)
        assert got == want
        assert got.body is not None and want.body is not None and list(got.body.items()) == list(want.body.items())
        usual = (body.keys() <= {"note", "event", "member", "verdict"} and body["verdict"] in ("accept", "reject")
                 and RAW_LINK not in (body["event"], body["member"]) and len(body.get("note", "").encode()) < 256)
        assert entry.payload_raw is not None
        assert (dagcbor.trusted_endorsement(entry.payload_raw) is not None) == usual  # the layout was read


def test_an_endorsement_layout_with_a_bad_note_is_left_to_cbor2() -> None:
    body = {"note": "ab", "event": LINKED, "member": LINKED, "verdict": "accept"}
    raw = dagcbor.encode(body)
    assert dagcbor.trusted_endorsement(raw) == body
    at = raw.index(b"\x62ab")
    bad_text = raw[:at] + b"\x62\xff\xfe" + raw[at + 3:]  # not UTF-8: cbor2 refuses it
    assert dagcbor.trusted_endorsement(bad_text) is None
    with pytest.raises(cbor2.CBORDecodeError):
        dagcbor.decode_trusted(bad_text)
    too_long = raw[:at] + b"\x63ab" + raw[at + 3:]  # its head says 3 bytes: the layout is not this map's
    assert dagcbor.trusted_endorsement(too_long) is None
