"""Strict DAG-CBOR (protocol/dagcbor.py): RFC 8949 Appendix A and the IPLD DAG-CBOR rules."""

from __future__ import annotations

import random
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st
from protocol_helpers import FAST, cid_of, cids, dag_values, map_keys, scalars, strict_equal

from protocol import dagcbor
from protocol.cid import CID, CODEC_RAW
from protocol.errors import InvalidData

BIG = 1 << 20


def decode(data: bytes) -> Any:
    return dagcbor.decode(data, max_bytes=BIG)


def refused(data: bytes) -> str:
    with pytest.raises(InvalidData) as info:
        decode(data)
    return info.value.code


# --- RFC 8949 Appendix A ---------------------------------------------------------------------------

RFC8949 = [
    (0, "00"),
    (1, "01"),
    (10, "0a"),
    (23, "17"),
    (24, "1818"),
    (25, "1819"),
    (100, "1864"),
    (1000, "1903e8"),
    (1000000, "1a000f4240"),
    (1000000000000, "1b000000e8d4a51000"),
    (18446744073709551615, "1bffffffffffffffff"),
    (-18446744073709551616, "3bffffffffffffffff"),
    (-1, "20"),
    (-10, "29"),
    (-100, "3863"),
    (-1000, "3903e7"),
    (False, "f4"),
    (True, "f5"),
    (None, "f6"),
    (b"", "40"),
    (b"\x01\x02\x03\x04", "4401020304"),
    ("", "60"),
    ("a", "6161"),
    ("IETF", "6449455446"),
    ('"\\', "62225c"),
    ("\u00fc", "62c3bc"),
    ("\u6c34", "63e6b0b4"),
    ("\U00010151", "64f0908591"),
    ([], "80"),
    ([1, 2, 3], "83010203"),
    ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"),
    ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (["a", {"b": "c"}], "826161a161626163"),
    ({"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"}, "a56161614161626142616361436164614461656145"),
]


@pytest.mark.parametrize(("value", "hex_"), RFC8949, ids=[h for _, h in RFC8949])
def test_rfc8949_encode(value: Any, hex_: str) -> None:
    assert dagcbor.encode(value).hex() == hex_


@pytest.mark.parametrize(("value", "hex_"), RFC8949, ids=[h for _, h in RFC8949])
def test_rfc8949_decode(value: Any, hex_: str) -> None:
    assert strict_equal(decode(bytes.fromhex(hex_)), value)


# --- what DAG-CBOR refuses -------------------------------------------------------------------------

FLOATS = [
    "f90000", "f98000", "f93c00", "f93e00", "f97bff", "f90001", "f90400", "f9c400",  # half
    "f97c00", "f97e00", "f9fc00",  # half inf / nan / -inf
    "fa47c35000", "fa7f7fffff", "fa7f800000", "fa7fc00000", "faff800000", "fa3f800000",  # single
    "fb3ff199999999999a", "fb7e37e43c8800759c", "fbc010666666666666",  # double
    "fb7ff0000000000000", "fb7ff8000000000000", "fbfff0000000000000", "fb3ff0000000000000",
    "a16161f93c00", "82f5f93c00",  # inside containers
]


@pytest.mark.parametrize("hex_", FLOATS)
def test_floats_refused(hex_: str) -> None:
    assert refused(bytes.fromhex(hex_)) == "bad_encoding"


NON_SHORTEST = [
    "1800", "1817", "190000", "190017", "190018", "1900ff", "190001", "1a00000000", "1a0000ffff",
    "1b0000000000000000", "1b00000000ffffffff", "3800", "3817", "390000", "3a0000ffff",
    "3b00000000ffffffff",
    # lengths
    "5800", "580161", "59000161", "5a0000000161", "7800", "780161", "79000161", "9800", "980101",
    "99000101", "b800", "b8016161 01", "d82a5900250001711220" + "00" * 32,
]


@pytest.mark.parametrize("hex_", NON_SHORTEST)
def test_non_shortest_forms_refused(hex_: str) -> None:
    assert refused(bytes.fromhex(hex_.replace(" ", ""))) == "bad_encoding"


INDEFINITE = [
    "5f42010243030405ff", "5fff", "7f657374726561646d696e67ff", "7fff", "9fff", "9f018202039f0405ffff",
    "83018202039f0405ff", "bfff", "bf61610161629f0203ffff", "826161bf61626163ff",
]


@pytest.mark.parametrize("hex_", INDEFINITE)
def test_indefinite_lengths_refused(hex_: str) -> None:
    assert refused(bytes.fromhex(hex_)) == "bad_encoding"


def test_map_keys_sort_length_first_then_bytewise() -> None:
    expected = bytes.fromhex("a2616201626161 02".replace(" ", ""))
    assert dagcbor.encode({"b": 1, "aa": 2}) == expected
    assert dagcbor.encode({"aa": 2, "b": 1}) == expected
    assert strict_equal(decode(expected), {"b": 1, "aa": 2})
    # length is the UTF-8 byte length, not the number of characters
    assert list(decode(dagcbor.encode({"\u00e9a": 1, "bbb": 2, "zz": 3}))) == ["zz", "bbb", "\u00e9a"]
    assert dagcbor.encode({"\u00e9a": 1, "bbb": 2}).hex() == "a2636262620263c3a96101"


UNSORTED = [
    "a2616201616102",  # {"b":1, "a":2}
    "a2626161016162 02",  # {"aa":1, "b":2}: plain string order, not length-first
    "a263c3a9610163626262 02",  # {"éa":1, "bbb":2}: order by number of characters
]


@pytest.mark.parametrize("hex_", UNSORTED)
def test_unsorted_map_keys_refused(hex_: str) -> None:
    assert refused(bytes.fromhex(hex_.replace(" ", ""))) == "bad_encoding"


@pytest.mark.parametrize("hex_", ["a2616101616102", "a3616101616202616103"])
def test_duplicate_map_keys_refused(hex_: str) -> None:
    assert refused(bytes.fromhex(hex_)) == "bad_encoding"


NON_STRING_KEYS = [
    "a10101",  # int
    "a12001",  # negative int
    "a1416101",  # bytes
    "a1f501",  # bool
    "a1f601",  # null
    "a18001",  # array
    "a1a001",  # map
    "a1d82a58250001711220" + "11" * 32 + "01",  # link
]


@pytest.mark.parametrize("hex_", NON_STRING_KEYS)
def test_non_string_map_keys_refused(hex_: str) -> None:
    assert refused(bytes.fromhex(hex_)) == "bad_encoding"


TAGS = {
    "0-datetime": "c074323031332d30332d32315432303a30343a30305a",
    "1-epoch": "c11a514b67b0",
    "1-epoch-float": "c1fb41d452d9ec200000",
    "2-bignum": "c249010000000000000000",
    "3-negbignum": "c349010000000000000000",
    "2-small-bignum": "c24101",
    "4-decimal": "c48221196ab3",
    "5-bigfloat": "c5822003",
    "21-base64url": "d54101",
    "24-embedded": "d818456449455446",
    "28-shareable": "d81c01",
    "29-sharedref": "d81d00",
    "32-uri": "d82076687474703a2f2f7777772e6578616d706c652e636f6d",
    "43": "d82b4100",
    "99": "d86301",
    "258-set": "d9010280",
    "55799-self-describe": "d9d9f7a0",
    "55799-on-link": "d9d9f7d82a58250001711220" + "11" * 32,
    "42-on-42": "d82ad82a58250001711220" + "11" * 32,
}


@pytest.mark.parametrize("hex_", TAGS.values(), ids=TAGS.keys())
def test_tags_other_than_42_refused(hex_: str) -> None:
    assert refused(bytes.fromhex(hex_)) == "bad_encoding"


CID_RAW = cid_of(b"x").raw
BAD_LINKS = {
    "no-prefix": "d82a5824" + CID_RAW.hex(),
    "prefix-01": "d82a5825" + "01" + CID_RAW.hex(),
    "text": "d82a7825" + ("00" + CID_RAW.hex()),  # tag 42 on a text string (invalid UTF-8 too)
    "text-ascii": "d82a6161",
    "int": "d82a01",
    "array": "d82a80",
    "empty-bytes": "d82a40",
    "only-prefix": "d82a4100",
    "truncated-cid": "d82a5824" + "00" + CID_RAW[:-1].hex(),
    "cid-v0-multihash": "d82a5823" + "00" + "1220" + "11" * 32,
    "unknown-codec": "d82a5825" + "00" + "01701220" + "11" * 32,
}


@pytest.mark.parametrize("hex_", BAD_LINKS.values(), ids=BAD_LINKS.keys())
def test_bad_links_refused(hex_: str) -> None:
    assert refused(bytes.fromhex(hex_)) == "bad_encoding"


@pytest.mark.parametrize("hex_", ["a000", "0000", "f6f6", "8000", "6161ff", "01ff"])
def test_trailing_bytes_refused(hex_: str) -> None:
    assert refused(bytes.fromhex(hex_)) == "bad_encoding"


@pytest.mark.parametrize("hex_", ["f7", "e0", "f0", "f3", "f814", "f815", "f816", "f820", "f8ff", "81f7"])
def test_undefined_and_simple_values_refused(hex_: str) -> None:
    assert refused(bytes.fromhex(hex_)) == "bad_encoding"


@pytest.mark.parametrize(
    "hex_",
    ["", "ff", "18", "1903", "4201", "6261", "82 01", "a16161", "5bffffffffffffffff", "9bffffffffffffffff00",
     "1c", "3f", "5c", "fc", "61ff", "62c328", "63eda080", "64f8888080"],
)
def test_malformed_refused(hex_: str) -> None:
    """Truncated items, reserved additional info, huge lengths, invalid UTF-8 and surrogates."""
    assert refused(bytes.fromhex(hex_.replace(" ", ""))) == "bad_encoding"


def _nested(containers: int, leaf: Any = 0) -> Any:
    """`containers` nested maps and lists (alternating) around `leaf`."""
    value = leaf
    for i in range(containers):
        value = [value] if i % 2 else {"k": value}
    return value


def _list_nest(containers: int, leaf: Any = 0) -> Any:
    value = leaf
    for _ in range(containers):
        value = [value]
    return value


@pytest.mark.parametrize("leaf", [0, [], {}, "text", None], ids=["int", "empty-list", "empty-map", "text", "null"])
def test_depth_limit_is_64_containers(leaf: Any) -> None:
    """SPEC §2: nesting depth at most MAX_DEPTH = 64 containers, the same for encode and decode."""
    leaf_containers = int(isinstance(leaf, (list, dict)))
    fits = dagcbor.MAX_DEPTH - leaf_containers
    for build in (_nested, _list_nest):
        deepest = build(fits, leaf)
        data = dagcbor.encode(deepest)
        assert strict_equal(decode(data), deepest)
        with pytest.raises(InvalidData) as info:
            dagcbor.encode(build(fits + 1, leaf))
        assert info.value.code == "bad_encoding"
        too_deep = b"\x81" + data  # one more array around it: 65 containers
        assert refused(too_deep) == "bad_encoding"


def test_depth_limit_by_hand() -> None:
    assert strict_equal(decode(b"\x81" * 64 + b"\x00"), _list_nest(64))
    assert strict_equal(decode(b"\x81" * 63 + b"\x80"), _list_nest(63, []))
    assert refused(b"\x81" * 65 + b"\x00") == "bad_encoding"
    assert refused(b"\x81" * 64 + b"\x80") == "bad_encoding"
    assert refused(b"\x81" * 64 + b"\xa0") == "bad_encoding"


def test_very_deep_input_refused_without_recursion_error() -> None:
    assert refused(b"\x81" * 100_000 + b"\x00") == "bad_encoding"
    assert refused(b"\xa1\x61k" * 100_000 + b"\x00") == "bad_encoding"
    with pytest.raises(InvalidData) as info:
        dagcbor.encode(_list_nest(50_000))
    assert info.value.code == "bad_encoding"


def test_oversize() -> None:
    block = dagcbor.encode(b"\x00" * 100)
    assert dagcbor.decode(block, max_bytes=len(block)) == b"\x00" * 100
    with pytest.raises(InvalidData) as info:
        dagcbor.decode(block, max_bytes=len(block) - 1)
    assert info.value.code == "oversize"


# --- what encode refuses ---------------------------------------------------------------------------

UNENCODABLE = {
    "float": 1.5,
    "float-int-valued": 1.0,
    "nan": float("nan"),
    "inf": float("inf"),
    "float-in-list": [1, 2.0],
    "float-in-map": {"a": 0.5},
    "too-big": 2**64,
    "too-small": -(2**64) - 1,
    "big-in-map": {"a": [2**70]},
    "tuple": (1, 2),
    "set": {1},
    "frozenset": frozenset(),
    "bytearray": bytearray(b"x"),
    "memoryview": memoryview(b"x"),
    "object": object(),
    "int-key": {1: 2},
    "bytes-key": {b"a": 1},
    "none-key": {None: 1},
    "lone-surrogate": "\ud800",
    "lone-surrogate-key": {"\udfff": 1},
    "surrogate-in-list": ["ok", "a\ud83d"],
}


@pytest.mark.parametrize("value", UNENCODABLE.values(), ids=UNENCODABLE.keys())
def test_encode_refuses_non_dag_values(value: Any) -> None:
    with pytest.raises(InvalidData) as info:
        dagcbor.encode(value)
    assert info.value.code == "bad_encoding"


def test_integer_range_edges() -> None:
    assert dagcbor.encode(dagcbor.MAX_INT).hex() == "1bffffffffffffffff"
    assert dagcbor.encode(dagcbor.MIN_INT).hex() == "3bffffffffffffffff"
    assert refused(bytes.fromhex("c249010000000000000000")) == "bad_encoding"  # 2**64 as bignum


# --- links -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", [0x71, CODEC_RAW])
def test_link_is_tag_42_with_identity_multibase_prefix(codec: int) -> None:
    cid = cid_of(b"block", codec)
    data = dagcbor.encode(cid)
    assert data == bytes.fromhex("d82a5825") + b"\x00" + cid.raw
    back = decode(data)
    assert isinstance(back, CID)
    assert back == cid
    nested = {"link": cid, "links": [cid, {"x": cid}]}
    assert strict_equal(decode(dagcbor.encode(nested)), nested)


# --- properties ------------------------------------------------------------------------------------


@FAST
@given(dag_values)
def test_round_trip(value: Any) -> None:
    data = dagcbor.encode(value)
    back = decode(data)
    assert strict_equal(back, value)
    assert dagcbor.encode(back) == data


@FAST
@given(dag_values)
def test_a_trusted_decode_reads_what_the_strict_one_does(value: Any) -> None:
    data = dagcbor.encode(value)  # bytes `decode` accepts, as a stored payload was accepted once
    assert strict_equal(dagcbor.decode_trusted(data), decode(data))


def _reordered(value: Any, rng: random.Random) -> Any:
    """The same value with every map built in another insertion order."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _reordered(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_reordered(v, rng) for v in value]
    return value


@FAST
@given(dag_values, st.integers(min_value=0, max_value=2**32))
def test_encode_is_deterministic(value: Any, seed: int) -> None:
    data = dagcbor.encode(value)
    assert dagcbor.encode(value) == data
    assert dagcbor.encode(_reordered(value, random.Random(seed))) == data


@FAST
@given(st.binary(max_size=64))
def test_decode_accepts_only_canonical_bytes(data: bytes) -> None:
    """Any input either decodes to a value whose encoding is exactly the input, or is refused."""
    try:
        value = decode(data)
    except InvalidData as exc:
        assert exc.code == "bad_encoding"
    else:
        assert dagcbor.encode(value) == data


@FAST
@given(dag_values, st.data())
def test_single_byte_changes_never_decode_to_a_second_encoding(value: Any, data: st.DataObject) -> None:
    block = dagcbor.encode(value)
    i = data.draw(st.integers(min_value=0, max_value=len(block) - 1))
    changed = block[:i] + bytes([block[i] ^ data.draw(st.integers(1, 255))]) + block[i + 1:]
    try:
        other = decode(changed)
    except InvalidData as exc:
        assert exc.code == "bad_encoding"
    else:
        assert dagcbor.encode(other) == changed
        assert not strict_equal(other, value)


@FAST
@given(cids)
def test_cid_round_trip_in_block(cid: CID) -> None:
    assert decode(dagcbor.encode([cid])) == [cid]


@FAST
@given(st.dictionaries(map_keys, scalars, max_size=8), st.randoms(use_true_random=False))
def test_flat_maps_encode_as_a_key_sorting_encoder_does(body: dict[str, Any], rng: random.Random) -> None:
    # encode() orders a flat map's keys itself (by shape, remembered); cbor2's canonical mode is the reference.
    expected = cbor2.dumps(body, canonical=True, default=dagcbor._encode_link)
    assert dagcbor.encode(body) == expected
    items = list(body.items())
    rng.shuffle(items)
    assert dagcbor.encode(dict(items)) == expected
