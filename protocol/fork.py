"""Fork proofs: two validly signed headers by one author at one seq in one ledger.

A proof carries only the two header blocks: each verifies alone (the header
commits to its payload by hash), so anyone can check a proof without the
payloads or the rest of the chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from . import dagcbor
from .entry import Entry, decode_entry
from .errors import InvalidData

FORK_PROOF_VERSION: Final = 1
MAX_FORK_PROOF_BYTES: Final = 4096


@dataclass(frozen=True, slots=True)
class ForkProof:
    """Two conflicting entries, ordered by id so the encoding is unique."""

    a: Entry = field(repr=False)
    b: Entry = field(repr=False)

    def __post_init__(self) -> None:
        if self.a.id == self.b.id:
            raise InvalidData("bad_fork_proof", "both headers are the same entry")
        if self.a.header.author != self.b.header.author:
            raise InvalidData("bad_fork_proof", "the headers have different authors")
        if self.a.seq != self.b.seq:
            raise InvalidData("bad_fork_proof", "the headers have different seqs")
        if self.a.ledger_id != self.b.ledger_id:
            raise InvalidData("bad_fork_proof", "the headers are in different ledgers")
        if self.a.id.raw > self.b.id.raw:
            raise InvalidData("bad_fork_proof", "headers must be ordered by id")

    @classmethod
    def of(cls, one: Entry, other: Entry) -> ForkProof:
        """The proof that `one` and `other` fork (both must already be verified)."""
        a, b = sorted((one, other), key=lambda e: e.id.raw)
        return cls(a, b)

    @property
    def author(self) -> str:
        return self.a.author

    @property
    def seq(self) -> int:
        return self.a.seq

    def encode(self) -> bytes:
        return dagcbor.encode({"v": FORK_PROOF_VERSION, "a": self.a.header_raw, "b": self.b.header_raw})

    @classmethod
    def decode(cls, data: bytes) -> ForkProof:
        """Decode and verify a proof: both signatures, same author, ledger and seq."""
        value = dagcbor.decode(data, max_bytes=MAX_FORK_PROOF_BYTES)
        if not isinstance(value, dict) or set(value) != {"v", "a", "b"}:
            raise InvalidData("bad_fork_proof", "a fork proof is a map of v, a and b")
        # type(): True == 1 in Python but is another DAG-CBOR value (and another encoding).
        if type(value["v"]) is not int or value["v"] != FORK_PROOF_VERSION:
            raise InvalidData("unknown_version", f"fork proof version {value['v']!r:.20}")
        if not isinstance(value["a"], bytes) or not isinstance(value["b"], bytes):
            raise InvalidData("bad_fork_proof", "a and b must be header bytes")
        return cls(decode_entry(value["a"], None), decode_entry(value["b"], None))
