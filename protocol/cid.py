"""Content identifiers (CIDv1) for DAG-CBOR blocks.

Tally names every block by CIDv1 with multihash sha2-256. Blocks Tally makes are
DAG-CBOR (codec 0x71); links to raw blocks (0x55) parse too, so payloads may
cite other IPLD data.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from .errors import InvalidData
from .multiformats import b32decode, b32encode, decode_varint

CID_VERSION: Final = 1
CODEC_DAG_CBOR: Final = 0x71
CODEC_RAW: Final = 0x55
MULTIHASH_SHA2_256: Final = 0x12
SHA2_256_BYTES: Final = 32
KNOWN_CODECS: Final = frozenset({CODEC_DAG_CBOR, CODEC_RAW})
DAG_CBOR_PREFIX: Final = bytes([CID_VERSION, CODEC_DAG_CBOR, MULTIHASH_SHA2_256, SHA2_256_BYTES])


@dataclass(frozen=True, slots=True)
class CID:
    """A CIDv1 with a sha2-256 multihash. `raw` is its binary form."""

    raw: bytes

    def __post_init__(self) -> None:
        # Fast path for the one form Tally writes; the general path checks varints.
        if len(self.raw) == 36 and self.raw[:4] == DAG_CBOR_PREFIX:
            return
        try:
            version, off = decode_varint(self.raw, 0)
            codec, off = decode_varint(self.raw, off)
            mh_code, off = decode_varint(self.raw, off)
            mh_len, off = decode_varint(self.raw, off)
        except ValueError as exc:
            raise InvalidData("bad_cid", f"malformed CID: {exc}") from None
        if version != CID_VERSION:
            raise InvalidData("bad_cid", f"CID version {version} is not supported (only 1)")
        if codec not in KNOWN_CODECS:
            raise InvalidData("bad_cid", f"CID codec 0x{codec:x} is not supported")
        if mh_code != MULTIHASH_SHA2_256 or mh_len != SHA2_256_BYTES:
            raise InvalidData("bad_cid", "CID multihash must be sha2-256 of 32 bytes")
        if len(self.raw) - off != SHA2_256_BYTES:
            raise InvalidData("bad_cid", "CID digest length does not match its multihash")

    @classmethod
    def for_block(cls, block: bytes) -> CID:
        """The CID of a DAG-CBOR block."""
        # Made in the one form __post_init__ lets through at once: no check to run (two per entry made or read).
        cid = object.__new__(cls)
        object.__setattr__(cid, "raw", DAG_CBOR_PREFIX + hashlib.sha256(block).digest())
        return cid

    @classmethod
    def parse(cls, text: str) -> CID:
        """Parse the multibase base32 string form (`bafyrei…`)."""
        if not isinstance(text, str) or not text.startswith("b"):
            raise InvalidData("bad_cid", f"not a base32 CIDv1 string: {text!r:.80}")
        try:
            raw = b32decode(text[1:])
        except ValueError as exc:
            raise InvalidData("bad_cid", f"bad base32 in CID: {exc}") from None
        return cls(raw)

    @property
    def codec(self) -> int:
        first = self.raw[1]
        return first if first < 0x80 else decode_varint(self.raw, 1)[0]

    @property
    def digest(self) -> bytes:
        return self.raw[-SHA2_256_BYTES:]

    def __str__(self) -> str:
        return _text(bytes(self.raw))

    def __repr__(self) -> str:
        return f"CID({self})"


@lru_cache(maxsize=1024)
def _text(raw: bytes) -> str:
    """The base32 string form. Remembered: a ledger's own id is compared as text with every agent
    named in its payloads (`provider`, `receiver` may be the coop), and base32 costs ~6 µs."""
    return "b" + b32encode(raw)
