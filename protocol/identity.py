"""Agent identities: Ed25519 keys and their did:key ids.

Signing and verification use libsodium (PyNaCl): it is about twice as fast as
OpenSSL here, and every node must accept exactly the same signatures, so one
implementation's rules (RFC 8032 plus libsodium's refusal of non-canonical and
small-order points) are the rules; SPEC.md says so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final, NewType

from nacl._sodium import ffi as _ffi  # libsodium itself, for verify_many
from nacl._sodium import lib as _lib
from nacl.bindings import crypto_sign_open, crypto_sign_seed_keypair
from nacl.exceptions import BadSignatureError

from .errors import InvalidData
from .multiformats import b58decode, b58encode

AgentId = NewType("AgentId", str)

DID_KEY_PREFIX: Final = "did:key:"
ED25519_MULTICODEC: Final = b"\xed\x01"
PUBLIC_KEY_BYTES: Final = 32
SEED_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64
_HEX_SEED: Final = re.compile(r"[0-9a-fA-F]{64}")


#: did:key ids made and parsed lately are remembered: base58 costs ~30 µs a key, and a ledger's
#: state names the same few hundred agents over and over (`Entry.author`, every payload's agents).
_DID_CACHE_SIZE: Final = 4096


def did_from_public_key(public_key: bytes) -> AgentId:
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise InvalidData("bad_did", f"an Ed25519 public key has 32 bytes, not {len(public_key)}")
    return _did_of(bytes(public_key))


@lru_cache(maxsize=_DID_CACHE_SIZE)
def _did_of(public_key: bytes) -> AgentId:
    return AgentId(DID_KEY_PREFIX + "z" + b58encode(ED25519_MULTICODEC + public_key))


def public_key_from_did(did: str) -> bytes:
    """The 32-byte Ed25519 key of a `did:key:z6Mk…` id."""
    if not isinstance(did, str) or not did.startswith(DID_KEY_PREFIX):
        raise InvalidData("bad_did", f"not a did:key: {did!r:.80}")
    return _key_of(str(did))


@lru_cache(maxsize=_DID_CACHE_SIZE)
def _key_of(did: str) -> bytes:
    mb = did[len(DID_KEY_PREFIX):]
    if not mb.startswith("z"):
        raise InvalidData("bad_did", "a did:key must use multibase base58btc ('z')")
    try:
        raw = b58decode(mb[1:])
    except ValueError as exc:
        raise InvalidData("bad_did", f"bad base58btc in did:key: {exc}") from None
    if not raw.startswith(ED25519_MULTICODEC):
        raise InvalidData("bad_did", "did:key is not an Ed25519 key (multicodec 0xed01)")
    key = raw[len(ED25519_MULTICODEC):]
    if len(key) != PUBLIC_KEY_BYTES:
        raise InvalidData("bad_did", f"did:key holds {len(key)} key bytes, not 32")
    return key


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    if len(signature) != SIGNATURE_BYTES or len(public_key) != PUBLIC_KEY_BYTES:
        return False
    try:
        crypto_sign_open(signature + message, public_key)
    except (BadSignatureError, ValueError):
        return False
    return True


def verify_many(items: list[tuple[bytes, bytes, bytes]]) -> list[bool]:
    """Verify (public key, signature, message) triples; True where valid."""
    return verify_signed_many([
        (public_key, sig + msg if len(sig) == SIGNATURE_BYTES else b"") for public_key, sig, msg in items
    ])


def verify_signed_many(items: Sequence[tuple[bytes, bytes]]) -> list[bool]:
    """Verify (public key, signature followed by the message) pairs, as libsodium takes them; True where valid.

    Calls libsodium once per item with one reused output buffer, since the
    per-call wrapper's allocations cost as much as a third of a verification
    here. libsodium releases the GIL, so callers may run this on worker threads.
    A blob shorter than a signature never verifies.
    """
    if not items:
        return []
    out = _ffi.new("unsigned char[]", max(len(signed) for _, signed in items))
    out_len = _ffi.new("unsigned long long *")
    results = []
    for public_key, signed in items:
        if len(signed) < SIGNATURE_BYTES or len(public_key) != PUBLIC_KEY_BYTES:
            results.append(False)
            continue
        results.append(_lib.crypto_sign_open(out, out_len, signed, len(signed), public_key) == 0)
    return results


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An agent's Ed25519 secret key. `repr` never shows the seed."""

    seed: bytes = field(repr=False)
    public_key: bytes = field(init=False)
    _secret: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.seed) != SEED_BYTES:
            raise ValueError("an Ed25519 seed has 32 bytes")
        public, secret = crypto_sign_seed_keypair(self.seed)
        object.__setattr__(self, "public_key", public)
        object.__setattr__(self, "_secret", secret)

    @property
    def did(self) -> AgentId:
        return did_from_public_key(self.public_key)

    def sign(self, message: bytes) -> bytes:
        # libsodium itself, as verify_signed_many: PyNaCl's wrapper checks types, allocates twice and copies the
        # whole signed message back, where only the signature is wanted (a local append signs each entry).
        out = _ffi.new("unsigned char[]", len(message) + SIGNATURE_BYTES)
        if _lib.crypto_sign(out, _ffi.NULL, message, len(message), self._secret) != 0:
            raise ValueError("libsodium failed to sign")
        signature: bytes = _ffi.buffer(out, SIGNATURE_BYTES)[:]
        return signature

    def to_pem(self) -> bytes:
        """The key as unencrypted PKCS#8 PEM (for backups)."""
        # cryptography (~7 MB of RSS) only for PEM key files, which a node does not read at start (its keys are hex)
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = Ed25519PrivateKey.from_private_bytes(self.seed)
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def from_key_file(cls, data: bytes) -> SigningKey:
        """Parse a key file: a 32-byte seed as 64 hex characters, or a PKCS#8 PEM Ed25519 key."""
        text = data.strip()
        if _HEX_SEED.fullmatch(text.decode("ascii", "replace")):
            return cls(bytes.fromhex(text.decode("ascii")))
        if text.startswith(b"-----BEGIN"):
            from cryptography.hazmat.primitives import serialization  # only for PEM: see to_pem
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

            try:
                key = serialization.load_pem_private_key(text, password=None)
            except (ValueError, TypeError) as exc:
                raise InvalidData("bad_key_file", f"unreadable PEM key: {exc}") from None
            if not isinstance(key, Ed25519PrivateKey):
                raise InvalidData("bad_key_file", "the PEM key is not an Ed25519 key")
            seed = key.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
            return cls(seed)
        raise InvalidData(
            "bad_key_file", "expected a 32-byte seed as 64 hex characters or a PKCS#8 PEM key"
        )
