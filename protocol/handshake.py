"""Peer links: an authenticated key exchange, then encrypted frames. No I/O.

The exchange is the Noise Protocol Framework (revision 34), pattern XX, exactly
`Noise_XX_25519_ChaChaPoly_SHA256`, with prologue `tally-sync/1`. The static
X25519 keys are fresh per link; what ties a link to an agent is the identity
payload each side sends encrypted inside the handshake (as libp2p's Noise
handshake does): its did:key and an Ed25519 signature over the handshake hash
at that point. The responder's covers both ephemerals, its static key and its
did; the initiator's also covers the responder's payload, so both dids. The
transport keys come from the whole transcript.

    -> e                          (32 bytes, empty payload)
    <- e, ee, s, es  + payload    (responder's identity)
    -> s, se         + payload    (initiator's identity)

The caller hands in the randomness (two 32-byte X25519 private keys per side)
and moves the bytes; every message is one WebSocket binary message.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Final

from nacl.bindings import crypto_scalarmult, crypto_scalarmult_base

from . import dagcbor
from .errors import InvalidData
from .identity import SIGNATURE_BYTES, AgentId, SigningKey, public_key_from_did, verify_signature

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

PROTOCOL_NAME: Final = b"Noise_XX_25519_ChaChaPoly_SHA256"
PROLOGUE: Final = b"tally-sync/1"  # protocol label and version; both sides must agree
#: Domain separation for the identity signature: never a valid target elsewhere.
SIGNATURE_CONTEXT: Final = b"tally-handshake-v1\x00"
PAYLOAD_VERSION: Final = 1
MAX_MESSAGE_BYTES: Final = 65535  # Noise's limit for any message, handshake or transport
TAG_BYTES: Final = 16
MAX_PLAINTEXT_BYTES: Final = MAX_MESSAGE_BYTES - TAG_BYTES
MAX_PAYLOAD_BYTES: Final = 1024  # an identity payload is about 150 bytes
KEY_BYTES: Final = 32  # X25519 keys, ChaCha20 keys and SHA-256 digests alike
NONCE_LIMIT: Final = 2**64 - 1  # Noise reserves this nonce; reaching it ends the link

#: Pattern XX as data (Noise §7.5): the tokens of each message, initiator first.
XX_PATTERN: Final[tuple[tuple[str, ...], ...]] = (("e",), ("e", "ee", "s", "es"), ("s", "se"))


def _hkdf(chaining_key: bytes, ikm: bytes) -> tuple[bytes, bytes]:
    """Noise's HKDF with two outputs (§4.3), over HMAC-SHA256."""
    temp = hmac.digest(chaining_key, ikm, "sha256")
    out1 = hmac.digest(temp, b"\x01", "sha256")
    return out1, hmac.digest(temp, out1 + b"\x02", "sha256")


@dataclass(frozen=True, slots=True)
class _KeyPair:
    """An X25519 key pair. Its arithmetic is libsodium's, which lets other threads run meanwhile, so a node may
    run a handshake's key exchanges beside its event loop (node/sync/links.py)."""

    private: bytes
    public: bytes

    @classmethod
    def of(cls, raw: bytes, name: str) -> _KeyPair:
        if len(raw) != KEY_BYTES:
            raise ValueError(f"the {name} X25519 private key has 32 bytes, not {len(raw)}")
        return cls(raw, crypto_scalarmult_base(raw))  # libsodium clamps the scalar, as RFC 7748 does

    def exchange(self, theirs: bytes) -> bytes:
        """X25519 with the peer's public key; InvalidData for a low-order one (an all-zero result, which
        libsodium refuses)."""
        try:
            return crypto_scalarmult(self.private, theirs)
        except RuntimeError:
            raise InvalidData("handshake_failed", "the peer sent a low-order X25519 key") from None


class _FailOnce:
    """After any error the object refuses every call: a half-read message leaves
    hashes and keys in an unknown state, and a link that failed must close."""

    _failed: bool = False

    @contextmanager
    def _guard(self) -> Iterator[None]:
        if self._failed:
            raise InvalidData("protocol_error", f"this {type(self).__name__} already failed; close the link")
        try:
            yield
        except InvalidData:
            self._failed = True
            raise


@cache
def _chacha() -> tuple[type[ChaCha20Poly1305], type[Exception]]:
    """cryptography's ChaCha20-Poly1305 and its failure: loaded by a node's first link, not at its start (~7 MB)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    return ChaCha20Poly1305, InvalidTag


class CipherState:
    """A ChaCha20-Poly1305 key and its 64-bit nonce counter (Noise §5.1)."""

    def __init__(self, key: bytes | None = None, nonce: int = 0) -> None:
        if key is not None and len(key) != KEY_BYTES:
            raise ValueError("a ChaCha20-Poly1305 key has 32 bytes")
        if not 0 <= nonce <= NONCE_LIMIT:
            raise ValueError("a Noise nonce is an unsigned 64-bit integer")
        self._aead = _chacha()[0](key) if key is not None else None
        self._nonce = nonce

    def _next_nonce(self) -> bytes:
        if self._nonce >= NONCE_LIMIT:
            raise InvalidData("protocol_error", "every nonce of this cipher is used; open a new link")
        return bytes(4) + self._nonce.to_bytes(8, "little")

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        if self._aead is None:
            return plaintext
        ciphertext = self._aead.encrypt(self._next_nonce(), plaintext, ad)
        self._nonce += 1
        return ciphertext

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        if self._aead is None:
            return ciphertext
        try:
            plaintext = self._aead.decrypt(self._next_nonce(), ciphertext, ad)
        except _chacha()[1]:
            raise InvalidData("bad_frame", f"frame {self._nonce} fails authentication "
                              "(tampered, reordered, replayed or from another link)") from None
        self._nonce += 1
        return plaintext


class _SymmetricState:
    """Noise §5.2: the chaining key, the handshake hash and the current cipher."""

    def __init__(self, prologue: bytes) -> None:
        # The name has exactly HASHLEN (32) bytes, so it is the initial hash as is, unhashed.
        self.h = self.ck = PROTOCOL_NAME
        self.cipher = CipherState()
        self.mix_hash(prologue)

    def mix_key(self, ikm: bytes) -> None:
        self.ck, key = _hkdf(self.ck, ikm)
        self.cipher = CipherState(key)

    def mix_hash(self, data: bytes) -> None:
        self.h = hashlib.sha256(self.h + data).digest()

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self.cipher.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext


class NoiseXX(_FailOnce):
    """A Noise HandshakeState (§5.3) for `Noise_XX_25519_ChaChaPoly_SHA256`.

    The generic layer: any payloads, any prologue. `Handshake` builds Tally's
    identity binding on it; tests drive it with the published test vectors.
    """

    def __init__(self, *, initiator: bool, prologue: bytes, ephemeral: bytes, static: bytes) -> None:
        if ephemeral == static:
            raise ValueError("the ephemeral and static keys must be drawn separately")
        self.initiator = initiator
        self._e = _KeyPair.of(ephemeral, "ephemeral")
        self._s = _KeyPair.of(static, "static")
        self._re: bytes | None = None
        self._rs: bytes | None = None
        self._state = _SymmetricState(prologue)
        self._done = 0  # messages written or read so far
        self._split = False

    @property
    def messages_done(self) -> int:
        return self._done

    @property
    def complete(self) -> bool:
        return self._done == len(XX_PATTERN)

    @property
    def wants_write(self) -> bool:
        """True when the next call is `write_message` (messages alternate, initiator first)."""
        return not self.complete and (self._done % 2 == 0) == self.initiator

    @property
    def handshake_hash(self) -> bytes:
        return self._state.h

    def _check_turn(self, writing: bool) -> None:
        if self.complete:
            raise InvalidData("protocol_error", "the handshake is already complete")
        if writing != self.wants_write:
            verb = "write" if writing else "read"
            raise InvalidData("protocol_error", f"message {self._done + 1} is the peer's to {verb}")

    def _dh(self, token: str) -> bytes:
        # "es" is always the initiator's ephemeral with the responder's static; each side
        # uses its own half of that pair, and likewise for "se".
        mine, theirs = {
            "ee": (self._e, self._re),
            "es": (self._e, self._rs) if self.initiator else (self._s, self._re),
            "se": (self._s, self._re) if self.initiator else (self._e, self._rs),
        }[token]
        assert theirs is not None  # XX sends each remote key before any DH that needs it
        return mine.exchange(theirs)

    def write_message(self, payload: Callable[[bytes], bytes]) -> bytes:
        """The next handshake message. `payload(h)` gets the handshake hash just
        before the payload is encrypted and returns the payload."""
        with self._guard():
            self._check_turn(writing=True)
            out = bytearray()
            for token in XX_PATTERN[self._done]:
                if token == "e":
                    public = self._e.public
                    out += public
                    self._state.mix_hash(public)
                elif token == "s":
                    out += self._state.encrypt_and_hash(self._s.public)
                else:
                    self._state.mix_key(self._dh(token))
            out += self._state.encrypt_and_hash(payload(self._state.h))
            if len(out) > MAX_MESSAGE_BYTES:
                raise InvalidData("frame_too_large", f"handshake message of {len(out)} bytes")
            self._done += 1
            return bytes(out)

    def read_message(self, message: bytes) -> tuple[bytes, bytes]:
        """Read the peer's next message: (handshake hash just before its payload, payload)."""
        with self._guard():
            self._check_turn(writing=False)
            number = self._done + 1
            if len(message) > MAX_MESSAGE_BYTES:
                raise InvalidData("handshake_failed", f"message {number} has {len(message)} bytes")
            rest = message

            def take(size: int) -> bytes:
                nonlocal rest
                if len(rest) < size:
                    raise InvalidData("handshake_failed", f"message {number} is too short")
                chunk, rest = rest[:size], rest[size:]
                return chunk

            try:
                for token in XX_PATTERN[self._done]:
                    if token == "e":
                        self._re = take(KEY_BYTES)
                        self._state.mix_hash(self._re)
                    elif token == "s":  # XX mixes a key in before any s, so s is encrypted
                        self._rs = self._state.decrypt_and_hash(take(KEY_BYTES + TAG_BYTES))
                    else:
                        self._state.mix_key(self._dh(token))
                h = self._state.h
                payload = self._state.decrypt_and_hash(rest)
            except InvalidData as exc:
                if exc.code != "bad_frame":
                    raise
                raise InvalidData("handshake_failed", f"message {number} fails authentication "
                                  "(tampered, spliced or replayed)") from None
            self._done += 1
            return h, payload

    def split(self) -> tuple[CipherState, CipherState]:
        """The transport ciphers (Noise §5.2 Split), as (send, receive) for this side. Once only:
        a second pair would reuse every nonce of the first."""
        with self._guard():
            if not self.complete:
                raise InvalidData("protocol_error", "split before the handshake is complete")
            if self._split:
                raise InvalidData("protocol_error", "split called twice")
            self._split = True
            k1, k2 = _hkdf(self._state.ck, b"")
            c1, c2 = CipherState(k1), CipherState(k2)
            return (c1, c2) if self.initiator else (c2, c1)


def signature_input(handshake_hash: bytes, did: str) -> bytes:
    """The bytes an identity payload's signature covers."""
    return SIGNATURE_CONTEXT + handshake_hash + did.encode("utf-8")


@dataclass(frozen=True, slots=True)
class IdentityPayload:
    """`{"did", "sig", "v"}`: who sends this handshake message, proven over the transcript."""

    did: str
    sig: bytes
    v: int = PAYLOAD_VERSION

    def __post_init__(self) -> None:
        if type(self.v) is not int or self.v != PAYLOAD_VERSION:
            raise InvalidData("handshake_failed", f"identity payload version {self.v!r} is not {PAYLOAD_VERSION}")
        if not isinstance(self.did, str):
            raise InvalidData("handshake_failed", "identity payload did is not a string")
        if not isinstance(self.sig, bytes) or len(self.sig) != SIGNATURE_BYTES:
            raise InvalidData("handshake_failed", "identity payload sig is not 64 bytes")

    @classmethod
    def create(cls, identity: SigningKey, handshake_hash: bytes) -> IdentityPayload:
        return cls(identity.did, identity.sign(signature_input(handshake_hash, identity.did)))

    def encode(self) -> bytes:
        return dagcbor.encode({"did": self.did, "sig": self.sig, "v": self.v})

    @classmethod
    def decode(cls, data: bytes) -> IdentityPayload:
        try:
            value = dagcbor.decode(data, max_bytes=MAX_PAYLOAD_BYTES)
        except InvalidData as exc:
            raise InvalidData("handshake_failed", f"identity payload: {exc.message}") from None
        if not isinstance(value, dict) or set(value) != {"did", "sig", "v"}:
            raise InvalidData("handshake_failed", "identity payload is not a map of exactly did, sig and v")
        return cls(value["did"], value["sig"], value["v"])

    def verify(self, handshake_hash: bytes) -> None:
        try:
            key = public_key_from_did(self.did)
        except InvalidData as exc:
            raise InvalidData("handshake_failed", f"identity payload: {exc.message}") from None
        if not verify_signature(key, self.sig, signature_input(handshake_hash, self.did)):
            raise InvalidData("handshake_failed", f"the handshake signature of {self.did} does not verify")


class Transport(_FailOnce):
    """The encrypted link after a handshake: one Noise transport message per frame.

    Frames must be decrypted in the order they were encrypted: a dropped,
    reordered or replayed frame fails authentication (`bad_frame`).
    """

    def __init__(self, send: CipherState, receive: CipherState, *, remote_did: AgentId,
                 handshake_hash: bytes) -> None:
        self._send = send
        self._receive = receive
        self.remote_did = remote_did
        self.handshake_hash = handshake_hash  # unique per link; usable for channel binding

    def encrypt(self, plaintext: bytes) -> bytes:
        with self._guard():
            if len(plaintext) > MAX_PLAINTEXT_BYTES:
                raise InvalidData("frame_too_large",
                                  f"plaintext of {len(plaintext)} bytes exceeds {MAX_PLAINTEXT_BYTES}")
            return self._send.encrypt_with_ad(b"", plaintext)

    def decrypt(self, frame: bytes) -> bytes:
        with self._guard():
            if len(frame) > MAX_MESSAGE_BYTES:
                raise InvalidData("frame_too_large", f"frame of {len(frame)} bytes exceeds {MAX_MESSAGE_BYTES}")
            if len(frame) < TAG_BYTES:
                raise InvalidData("bad_frame", f"frame of {len(frame)} bytes is shorter than its tag")
            return self._receive.decrypt_with_ad(b"", frame)


class Handshake(_FailOnce):
    """Tally's peer-link handshake: Noise XX plus signed identity payloads.

    Call `write_message` when `wants_write`, else `read_message`, until
    `complete`; then `transport()`. Any `InvalidData` means: close the link
    with that code and message.
    """

    def __init__(self, noise: NoiseXX, identity: SigningKey, expected_remote: str | None) -> None:
        self._noise = noise
        self._identity = identity
        self._expected = expected_remote
        self._remote_did: AgentId | None = None
        self._transport: Transport | None = None

    @classmethod
    def initiator(cls, identity: SigningKey, ephemeral: bytes, static: bytes,
                  expected_remote: str | None = None) -> Handshake:
        """`expected_remote`: the did:key the initiator means to reach (e.g. from mDNS);
        any other responder fails the handshake before the initiator reveals its own did."""
        if expected_remote is not None:
            public_key_from_did(expected_remote)  # a malformed one is the caller's bad_did
        return cls(NoiseXX(initiator=True, prologue=PROLOGUE, ephemeral=ephemeral, static=static),
                   identity, expected_remote)

    @classmethod
    def responder(cls, identity: SigningKey, ephemeral: bytes, static: bytes) -> Handshake:
        return cls(NoiseXX(initiator=False, prologue=PROLOGUE, ephemeral=ephemeral, static=static), identity, None)

    @property
    def complete(self) -> bool:
        return self._transport is not None

    @property
    def wants_write(self) -> bool:
        return not self._failed and self._noise.wants_write

    @property
    def remote_did(self) -> AgentId | None:
        """The peer's verified did, once its identity payload is read."""
        return self._remote_did

    def write_message(self) -> bytes:
        with self._guard():
            if self._noise.messages_done == 0:
                message = self._noise.write_message(lambda _h: b"")
            else:
                message = self._noise.write_message(lambda h: IdentityPayload.create(self._identity, h).encode())
            self._finish_if_complete()
            return message

    def read_message(self, data: bytes) -> None:
        with self._guard():
            first = self._noise.messages_done == 0
            if first and not self._noise.initiator and len(data) != KEY_BYTES:
                # Message 1 is a bare ephemeral key: a payload there would travel in clear.
                raise InvalidData("handshake_failed", f"message 1 has {len(data)} bytes, not 32")
            h, payload = self._noise.read_message(data)
            if not first:
                remote = IdentityPayload.decode(payload)
                remote.verify(h)
                if self._expected is not None and remote.did != self._expected:
                    raise InvalidData("handshake_failed", f"reached {remote.did}, expected {self._expected}")
                self._remote_did = AgentId(remote.did)
            self._finish_if_complete()

    def _finish_if_complete(self) -> None:
        if self._noise.complete:
            assert self._remote_did is not None  # each side has read one identity payload by now
            send, receive = self._noise.split()
            self._transport = Transport(send, receive, remote_did=self._remote_did,
                                        handshake_hash=self._noise.handshake_hash)

    def transport(self) -> Transport:
        with self._guard():
            if self._transport is None:
                raise InvalidData("protocol_error", "the handshake is not complete")
            return self._transport
