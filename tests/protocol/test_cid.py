"""CIDv1 sha2-256 (protocol/cid.py)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from protocol_helpers import FAST, cids

from protocol import dagcbor
from protocol.cid import CID, CODEC_DAG_CBOR, CODEC_RAW
from protocol.errors import InvalidData
from protocol.multiformats import b32encode

#: The CID of the DAG-CBOR empty map `a0`, recomputed in test_empty_map_vector_by_hand.
EMPTY_MAP_CID = "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua"


def test_empty_map_vector_by_hand() -> None:
    """sha2-256 of a0, framed as CIDv1 dag-cbor, in RFC 4648 base32 lower without padding."""
    raw = bytes([0x01, 0x71, 0x12, 0x20]) + hashlib.sha256(b"\xa0").digest()
    by_hand = "b" + base64.b32encode(raw).decode().lower().rstrip("=")
    assert by_hand == EMPTY_MAP_CID


def test_empty_map_vector() -> None:
    assert dagcbor.encode({}) == b"\xa0"
    cid = CID.for_block(b"\xa0")
    assert str(cid) == EMPTY_MAP_CID
    assert CID.parse(EMPTY_MAP_CID) == cid
    assert cid.codec == CODEC_DAG_CBOR
    assert cid.digest == hashlib.sha256(b"\xa0").digest()
    assert repr(cid) == f"CID({EMPTY_MAP_CID})"


@FAST
@given(st.binary(max_size=200))
def test_for_block(block: bytes) -> None:
    cid = CID.for_block(block)
    text = str(cid)
    assert text.startswith("bafyrei")
    assert len(text) == 59
    assert CID.parse(text) == cid
    assert cid.digest == hashlib.sha256(block).digest()
    assert cid.codec == CODEC_DAG_CBOR
    assert cid.raw == b"\x01\x71\x12\x20" + cid.digest


@FAST
@given(cids)
def test_parse_round_trip(cid: CID) -> None:
    text = str(cid)
    assert text.startswith("bafyrei" if cid.codec == CODEC_DAG_CBOR else "bafkrei")
    parsed = CID.parse(text)
    assert parsed == cid
    assert hash(parsed) == hash(cid)
    assert CID(cid.raw) == cid


def test_raw_codec_link() -> None:
    raw = bytes([0x01, 0x55, 0x12, 0x20]) + hashlib.sha256(b"hello").digest()
    cid = CID(raw)
    assert cid.codec == CODEC_RAW
    assert str(cid).startswith("bafkrei")
    assert CID.parse(str(cid)) == cid


def test_equality_is_by_bytes() -> None:
    a, b = CID.for_block(b"a"), CID.for_block(b"b")
    assert a != b
    assert a == CID.for_block(b"a")
    assert len({a, b, CID.for_block(b"a")}) == 2


def _text(raw: bytes) -> str:
    return "b" + b32encode(raw)


DIGEST = hashlib.sha256(b"x").digest()
GOOD = str(CID.for_block(b"x"))

BAD_STRINGS = {
    "uppercase-multibase": "B" + GOOD[1:].upper(),
    "uppercase-body": "b" + GOOD[1:].upper(),
    "one-upper-char": GOOD[:10] + GOOD[10].upper() + GOOD[11:],
    "cidv0": "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
    "base58-cidv1": "zdj7WhuEjrB52m1BisYCtmjH1hSKa7yZ3jEZ9JcXaFRD51wVz",
    "base16": "f01711220" + DIGEST.hex(),
    "empty": "",
    "only-prefix": "b",
    "truncated-1": GOOD[:-1],
    "truncated-8": GOOD[:-8],
    "truncated-half": GOOD[:30],
    "extended": GOOD + "a",
    "extended-8": GOOD + "aaaaaaaa",
    "padded": GOOD + "=",
    "bad-char-0": GOOD[:-1] + "0",
    "bad-char-1": GOOD[:-1] + "1",
    "bad-char-8": GOOD[:-1] + "8",
    "non-canonical-last-char": GOOD[:-1] + chr(ord(GOOD[-1]) + 1),
    "space": GOOD + " ",
    "newline": GOOD + "\n",
    "version-0": _text(bytes([0x00, 0x71, 0x12, 0x20]) + DIGEST),
    "version-2": _text(bytes([0x02, 0x71, 0x12, 0x20]) + DIGEST),
    "codec-dag-pb": _text(bytes([0x01, 0x70, 0x12, 0x20]) + DIGEST),
    "codec-dag-json": _text(bytes([0x01, 0xA9, 0x02, 0x12, 0x20]) + DIGEST),
    "codec-json": _text(bytes([0x01, 0x80, 0x04, 0x12, 0x20]) + DIGEST),
    "codec-non-minimal-varint": _text(bytes([0x01, 0xF1, 0x00, 0x12, 0x20]) + DIGEST),
    "multihash-sha2-512": _text(bytes([0x01, 0x71, 0x13, 0x40]) + hashlib.sha512(b"x").digest()),
    "multihash-identity": _text(bytes([0x01, 0x71, 0x00, 0x01]) + b"x"),
    "multihash-blake2b-256": _text(bytes([0x01, 0x71, 0xA0, 0xE4, 0x02, 0x20]) + DIGEST),
    "multihash-sha3-256": _text(bytes([0x01, 0x71, 0x16, 0x20]) + DIGEST),
    "digest-length-31": _text(bytes([0x01, 0x71, 0x12, 0x1F]) + DIGEST[:31]),
    "digest-length-mismatch": _text(bytes([0x01, 0x71, 0x12, 0x20]) + DIGEST[:31]),
    "digest-too-long": _text(bytes([0x01, 0x71, 0x12, 0x20]) + DIGEST + b"\x00"),
    "unterminated-varint": _text(bytes([0x01, 0xF1])),
    "varint-too-long": _text(b"\xff" * 10),
}


@pytest.mark.parametrize("text", BAD_STRINGS.values(), ids=BAD_STRINGS.keys())
def test_bad_cid_strings(text: str) -> None:
    with pytest.raises(InvalidData) as info:
        CID.parse(text)
    assert info.value.code == "bad_cid"


@pytest.mark.parametrize("value", [None, 1, GOOD.encode(), ["b"]])
def test_parse_non_string(value: object) -> None:
    with pytest.raises(InvalidData) as info:
        CID.parse(value)  # type: ignore[arg-type]
    assert info.value.code == "bad_cid"


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x01", b"\x01\x71\x12\x20", b"\x01\x71\x12\x20" + DIGEST[:-1], b"\x01\x71\x12\x20" + DIGEST + b"\x00",
     b"\x00\x71\x12\x20" + DIGEST, b"\x01\x70\x12\x20" + DIGEST, b"\x01\x71\x13\x20" + DIGEST],
)
def test_bad_binary_cid(raw: bytes) -> None:
    with pytest.raises(InvalidData) as info:
        CID(raw)
    assert info.value.code == "bad_cid"


@FAST
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz234567ABZ=Qm", max_size=70))
def test_parse_refuses_or_round_trips(text: str) -> None:
    try:
        cid = CID.parse(text)
    except InvalidData as exc:
        assert exc.code == "bad_cid"
    else:
        assert str(cid) == text


@FAST
@given(cids, st.data())
def test_changed_cid_string_is_another_cid_or_refused(cid: CID, data: st.DataObject) -> None:
    text = str(cid)
    i = data.draw(st.integers(min_value=0, max_value=len(text) - 1))
    char = data.draw(st.sampled_from("abcdefghijklmnopqrstuvwxyz234567"))
    changed = text[:i] + char + text[i + 1:]
    try:
        other = CID.parse(changed)
    except InvalidData as exc:
        assert exc.code == "bad_cid"
    else:
        assert str(other) == changed
        assert (other == cid) == (changed == text)
