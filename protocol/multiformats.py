"""The multiformats pieces Tally uses: unsigned varints, base58btc and base32 (lower, no padding)."""

from __future__ import annotations

import base64
from typing import Final

B58_ALPHABET: Final = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX: Final = {c: i for i, c in enumerate(B58_ALPHABET)}
MAX_VARINT_BYTES: Final = 9  # the multiformats spec caps varints at 9 bytes (63 bits)


def encode_varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("varint must be unsigned")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes, offset: int = 0) -> tuple[int, int]:
    """Return (value, next offset). Refuses non-minimal and over-long forms."""
    value = 0
    shift = 0
    for i in range(MAX_VARINT_BYTES):
        if offset + i >= len(data):
            raise ValueError("truncated varint")
        byte = data[offset + i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise ValueError("non-minimal varint")
            return value, offset + i + 1
        shift += 7
    raise ValueError("varint too long")


def b58encode(data: bytes) -> str:
    zeros = len(data) - len(data.lstrip(b"\0"))
    num = int.from_bytes(data, "big")
    chars = []
    while num:
        num, rem = divmod(num, 58)
        chars.append(B58_ALPHABET[rem])
    return "1" * zeros + "".join(reversed(chars))


def b58decode(text: str) -> bytes:
    num = 0
    for c in text:
        try:
            num = num * 58 + _B58_INDEX[c]
        except KeyError:
            raise ValueError(f"invalid base58btc character {c!r}") from None
    zeros = len(text) - len(text.lstrip("1"))
    body = num.to_bytes((num.bit_length() + 7) // 8, "big") if num else b""
    return b"\0" * zeros + body


def b32encode(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").lower().rstrip("=")


def b32decode(text: str) -> bytes:
    if text != text.lower() or "=" in text:
        raise ValueError("base32 must be lower case without padding")
    padded = text.upper() + "=" * (-len(text) % 8)
    try:
        data = base64.b32decode(padded)
    except (ValueError, base64.binascii.Error) as exc:  # type: ignore[attr-defined]
        raise ValueError(f"invalid base32: {exc}") from None
    if b32encode(data) != text:
        raise ValueError("non-canonical base32")
    return data
