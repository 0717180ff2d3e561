"""Varints, base58btc and base32 (protocol/multiformats.py)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st
from protocol_helpers import FAST

from protocol.multiformats import b32decode, b32encode, b58decode, b58encode, decode_varint, encode_varint


@pytest.mark.parametrize(
    ("value", "hex_"),
    # the multiformats unsigned-varint spec's examples
    [(1, "01"), (127, "7f"), (128, "8001"), (255, "ff01"), (300, "ac02"), (16384, "808001"),
     (0x71, "71"), (0x0129, "a902"), (2**63 - 1, "ffffffffffffffff7f")],
)
def test_varint_vectors(value: int, hex_: str) -> None:
    assert encode_varint(value).hex() == hex_
    assert decode_varint(bytes.fromhex(hex_)) == (value, len(hex_) // 2)


@FAST
@given(st.integers(min_value=0, max_value=2**63 - 1), st.binary(max_size=4), st.binary(max_size=4))
def test_varint_round_trip(value: int, before: bytes, after: bytes) -> None:
    data = before + encode_varint(value) + after
    assert decode_varint(data, len(before)) == (value, len(data) - len(after))


@pytest.mark.parametrize("hex_", ["", "80", "ff", "8000", "ff00", "808000", "ffffffffffffffffff01", "80" * 9 + "01"])
def test_varint_refused(hex_: str) -> None:
    """Truncated, non-minimal (a trailing zero byte) or longer than 9 bytes."""
    with pytest.raises(ValueError):
        decode_varint(bytes.fromhex(hex_))


def test_negative_varint_refused() -> None:
    with pytest.raises(ValueError):
        encode_varint(-1)


@pytest.mark.parametrize(
    ("data", "text"),
    # draft-msporny-base58 examples, then leading zero bytes (each one a "1")
    [(b"Hello World!", "2NEpo7TZRRrLZSi2U"),
     (b"The quick brown fox jumps over the lazy dog.", "USm3fpXnKG5EUBx2ndxBDMPVciP5hGey2Jh4NDv6gmeo1LkMeiKrLJUUBk6Z"),
     (bytes.fromhex("287fb4cd"), "233QC4"),
     (bytes.fromhex("0000287fb4cd"), "11233QC4"),
     (b"\x00\x00\x00", "111"),
     (b"", ""), (b"\x00", "1")],
)
def test_base58_vectors(data: bytes, text: str) -> None:
    assert b58encode(data) == text
    assert b58decode(text) == data


@FAST
@given(st.binary(max_size=40))
def test_base58_round_trip(data: bytes) -> None:
    assert b58decode(b58encode(data)) == data


@pytest.mark.parametrize("text", ["0", "O", "I", "l", "+", "/", " ", "é"])
def test_base58_bad_characters(text: str) -> None:
    with pytest.raises(ValueError):
        b58decode("2NEp" + text)


@pytest.mark.parametrize(
    ("data", "text"),
    # RFC 4648 section 10, lower case without padding
    [(b"", ""), (b"f", "my"), (b"fo", "mzxq"), (b"foo", "mzxw6"), (b"foob", "mzxw6yq"),
     (b"fooba", "mzxw6ytb"), (b"foobar", "mzxw6ytboi")],
)
def test_base32_vectors(data: bytes, text: str) -> None:
    assert b32encode(data) == text
    assert b32decode(text) == data


@FAST
@given(st.binary(max_size=40))
def test_base32_round_trip(data: bytes) -> None:
    text = b32encode(data)
    assert text == base64.b32encode(data).decode().lower().rstrip("=")
    assert b32decode(text) == data


@pytest.mark.parametrize("text", ["MY", "my======", "mz", "m", "mzx", "my1", "my!"])
def test_base32_refused(text: str) -> None:
    """Upper case, padding, non-canonical trailing bits, impossible lengths, foreign characters."""
    with pytest.raises(ValueError):
        b32decode(text)
