"""Peer links: the Noise XX layer against published vectors, the identity binding
against a relay that tampers, splices and replays, and the encrypted transport."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import dagcbor
from protocol.errors import CODES, InvalidData
from protocol.handshake import (
    MAX_MESSAGE_BYTES,
    MAX_PLAINTEXT_BYTES,
    PROLOGUE,
    CipherState,
    Handshake,
    IdentityPayload,
    NoiseXX,
    Transport,
    _KeyPair,
    signature_input,
)
from protocol.identity import AgentId, SigningKey

VECTORS = json.loads((Path(__file__).parent / "vectors" / "noise_xx_25519_chachapoly_sha256.json").read_text())

ALICE = SigningKey(bytes([1]) * 32)
BOB = SigningKey(bytes([2]) * 32)
MALLORY = SigningKey(bytes([3]) * 32)

Tamper = Callable[[int, bytes], bytes]


def keys(tag: str) -> tuple[bytes, bytes]:
    """Deterministic (ephemeral, static) X25519 private keys for one side of one link."""
    return hashlib.sha256(b"e " + tag.encode()).digest(), hashlib.sha256(b"s " + tag.encode()).digest()


def initiator(tag: str = "alice", identity: SigningKey = ALICE, expected: str | None = None) -> Handshake:
    return Handshake.initiator(identity, *keys(tag), expected_remote=expected)


def responder(tag: str = "bob", identity: SigningKey = BOB) -> Handshake:
    return Handshake.responder(identity, *keys(tag))


def constant(payload: bytes) -> Callable[[bytes], bytes]:
    """A payload that does not depend on the handshake hash."""
    return lambda _h: payload


def untouched(_n: int, message: bytes) -> bytes:
    return message


def run(i: Handshake, r: Handshake, tamper: Tamper = untouched) -> list[bytes]:
    """Drive both sides over an in-memory link; `tamper(n, message)` is the relay. Returns what was sent."""
    sent = []
    for n in range(3):
        writer, reader = (i, r) if n % 2 == 0 else (r, i)
        assert writer.wants_write and not reader.wants_write
        sent.append(writer.write_message())
        reader.read_message(tamper(n, sent[-1]))
    return sent


def expect(code: str) -> Any:
    return pytest.raises(InvalidData, match=f"^{code}: ")


def forged(initiator_side: bool, tag: str = "forger") -> NoiseXX:
    """A peer that speaks correct Noise but writes any identity payload it likes."""
    return NoiseXX(initiator=initiator_side, prologue=PROLOGUE, ephemeral=keys(tag)[0], static=keys(tag)[1])


# --- the generic Noise layer --------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_noise_xx_matches_the_cacophony_vectors(vector: dict[str, Any]) -> None:
    h = bytes.fromhex
    init = NoiseXX(initiator=True, prologue=h(vector["init_prologue"]),
                   ephemeral=h(vector["init_ephemeral"]), static=h(vector["init_static"]))
    resp = NoiseXX(initiator=False, prologue=h(vector["resp_prologue"]),
                   ephemeral=h(vector["resp_ephemeral"]), static=h(vector["resp_static"]))
    messages = vector["messages"]
    for n, message in enumerate(messages[:3]):
        writer, reader = (init, resp) if n % 2 == 0 else (resp, init)
        payload = h(message["payload"])
        ciphertext = writer.write_message(constant(payload))
        assert ciphertext.hex() == message["ciphertext"]
        assert reader.read_message(ciphertext)[1] == payload
    assert init.complete and resp.complete
    assert init.handshake_hash == resp.handshake_hash
    (i_send, i_recv), (r_send, r_recv) = init.split(), resp.split()
    for n, message in enumerate(messages[3:], start=3):  # transport messages keep alternating
        send, recv = (i_send, r_recv) if n % 2 == 0 else (r_send, i_recv)
        ciphertext = send.encrypt_with_ad(b"", h(message["payload"]))
        assert ciphertext.hex() == message["ciphertext"]
        assert recv.decrypt_with_ad(b"", ciphertext) == h(message["payload"])


def test_split_comes_once_and_only_after_the_handshake() -> None:
    # A second split would hand out the same keys with the nonces reset.
    init, resp = forged(True, "i"), forged(False, "r")
    with expect("protocol_error"):
        forged(True, "x").split()
    for n in range(3):
        writer, reader = (init, resp) if n % 2 == 0 else (resp, init)
        reader.read_message(writer.write_message(constant(b"")))
    init.split()
    with expect("protocol_error"):
        init.split()


# --- a good handshake ----------------------------------------------------------


def test_handshake_binds_dids_and_yields_matching_transports() -> None:
    i, r = initiator(expected=BOB.did), responder()
    sent = run(i, r)
    assert i.complete and r.complete
    assert (i.remote_did, r.remote_did) == (BOB.did, ALICE.did)
    ti, tr = i.transport(), r.transport()
    assert (ti.remote_did, tr.remote_did) == (BOB.did, ALICE.did)
    assert ti.handshake_hash == tr.handshake_hash
    for n in range(3):
        assert tr.decrypt(ti.encrypt(b"to bob %d" % n)) == b"to bob %d" % n
        assert ti.decrypt(tr.encrypt(b"to alice %d" % n)) == b"to alice %d" % n
    assert len(sent[0]) == 32  # message 1 is a bare ephemeral key
    for message in sent:  # a relay learns neither did
        assert ALICE.did.encode() not in message and BOB.did.encode() not in message


def test_every_link_gets_fresh_keys() -> None:
    i1, r1 = initiator("a1"), responder("b1")
    i2, r2 = initiator("a2"), responder("b2")
    run(i1, r1)
    run(i2, r2)
    assert i1.transport().handshake_hash != i2.transport().handshake_hash
    assert i1.transport().encrypt(b"same") != i2.transport().encrypt(b"same")


# --- a relay that tampers, substitutes, splices, replays -----------------------


def _sizes() -> list[int]:
    return [len(m) for m in run(initiator(), responder())]


@pytest.mark.parametrize("n", [0, 1, 2])
def test_any_changed_byte_fails_the_handshake(n: int) -> None:
    for pos in range(_sizes()[n]):
        def flip(k: int, message: bytes, pos: int = pos) -> bytes:
            return message[:pos] + bytes([message[pos] ^ 0x01]) + message[pos + 1:] if k == n else message

        with expect("handshake_failed"):
            run(initiator(), responder(), flip)


@pytest.mark.parametrize("n", [0, 1, 2])
@pytest.mark.parametrize(
    "change", [lambda m: m[:-1], lambda m: m + b"\0", lambda m: b""], ids=["cut", "grow", "empty"]
)
def test_a_message_of_another_length_fails(n: int, change: Callable[[bytes], bytes]) -> None:
    with expect("handshake_failed"):
        run(initiator(), responder(), lambda k, m: change(m) if k == n else m)


def test_substituted_ephemeral_fails() -> None:
    mallory_e = Handshake.initiator(MALLORY, *keys("mallory")).write_message()
    with expect("handshake_failed"):
        run(initiator(), responder(), lambda k, m: mallory_e if k == 0 else m)


def test_relay_cannot_reuse_the_responders_signature() -> None:
    # Mallory runs her own handshake with Bob, learns his payload, and offers it to Alice.
    to_bob = forged(True, "m1")
    bob = responder()
    bob.read_message(to_bob.write_message(constant(b"")))
    _h, bobs_payload = to_bob.read_message(bob.write_message())
    alice = initiator()
    to_alice = forged(False)
    to_alice.read_message(alice.write_message())
    with expect("handshake_failed") as err:
        alice.read_message(to_alice.write_message(constant(bobs_payload)))
    assert "does not verify" in str(err.value)


def test_relay_cannot_reuse_the_initiators_signature() -> None:
    # Mallory answers Alice as herself, takes Alice's payload, and offers it to Bob.
    alice, to_alice = initiator(), forged(False)
    to_alice.read_message(alice.write_message())
    alice.read_message(to_alice.write_message(lambda h: IdentityPayload.create(MALLORY, h).encode()))
    assert alice.remote_did == MALLORY.did  # she cannot pass for Bob
    _h, alices_payload = to_alice.read_message(alice.write_message())
    bob, to_bob = responder(), forged(True, "m2")
    bob.read_message(to_bob.write_message(constant(b"")))
    to_bob.read_message(bob.write_message())
    with expect("handshake_failed") as err:
        bob.read_message(to_bob.write_message(constant(alices_payload)))
    assert "does not verify" in str(err.value)


def test_expected_remote_refuses_anyone_else_before_revealing_itself() -> None:
    i, m = initiator(expected=BOB.did), responder("m", MALLORY)
    m.read_message(i.write_message())
    with expect("handshake_failed") as err:
        i.read_message(m.write_message())
    assert MALLORY.did in str(err.value) and BOB.did in str(err.value)
    assert not i.wants_write
    with expect("protocol_error"):
        i.write_message()


@pytest.mark.parametrize("step", [1, 2])
def test_splicing_two_handshakes_fails(step: int) -> None:
    ia, ra, ib, rb = initiator("a"), responder("ra"), initiator("b"), responder("rb")
    other = run(ib, rb)
    with expect("handshake_failed"):
        run(ia, ra, lambda k, m: other[k] if k == step else m)


def test_replayed_handshake_fails_against_a_fresh_responder() -> None:
    recorded = run(initiator(), responder())
    fresh = responder("bob again")
    fresh.read_message(recorded[0])  # message 1 carries no proof; anyone may send it
    assert fresh.write_message() != recorded[1]
    with expect("handshake_failed"):
        fresh.read_message(recorded[2])


def test_replayed_responder_message_fails_against_a_fresh_initiator() -> None:
    recorded = run(initiator(), responder())
    fresh = initiator("alice again")
    fresh.write_message()
    with expect("handshake_failed"):
        fresh.read_message(recorded[1])


# --- identity payloads ---------------------------------------------------------


def _signed(did: str, sig: bytes) -> bytes:
    return IdentityPayload(did, sig).encode()


def _cbor(value: Any) -> Callable[[bytes], bytes]:
    return lambda _h: dagcbor.encode(value)


PAYLOADS: dict[str, Callable[[bytes], bytes]] = {
    "signed by another key": lambda h: _signed(BOB.did, MALLORY.sign(signature_input(h, BOB.did))),
    "signed for another did": lambda h: _signed(BOB.did, BOB.sign(signature_input(h, ALICE.did))),
    "signed over another hash": lambda _h: IdentityPayload.create(BOB, bytes(32)).encode(),
    "signed without context": lambda h: _signed(BOB.did, BOB.sign(h + BOB.did.encode())),
    "not cbor": lambda _h: b"\xff\x00",
    "not canonical": lambda _h: dagcbor.encode({"did": BOB.did, "sig": bytes(64), "v": 1}) + b"\0",
    "empty": constant(b""),
    "not a map": _cbor([BOB.did, bytes(64), 1]),
    "missing sig": _cbor({"did": BOB.did, "v": 1}),
    "extra key": _cbor({"did": BOB.did, "sig": bytes(64), "v": 1, "x": 0}),
    "version 2": _cbor({"did": BOB.did, "sig": bytes(64), "v": 2}),
    "version true": _cbor({"did": BOB.did, "sig": bytes(64), "v": True}),
    "short sig": _cbor({"did": BOB.did, "sig": bytes(63), "v": 1}),
    "did not text": _cbor({"did": 7, "sig": bytes(64), "v": 1}),
    "not a did:key": _cbor({"did": "did:web:example.org", "sig": bytes(64), "v": 1}),
    "oversize": _cbor({"did": BOB.did, "sig": bytes(2000), "v": 1}),
}


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_initiator_refuses_a_bad_responder_payload(payload: Callable[[bytes], bytes]) -> None:
    alice, bob = initiator(), forged(False)
    bob.read_message(alice.write_message())
    with expect("handshake_failed"):
        alice.read_message(bob.write_message(payload))
    assert alice.remote_did is None


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_responder_refuses_a_bad_initiator_payload(payload: Callable[[bytes], bytes]) -> None:
    alice, bob = forged(True), responder()
    bob.read_message(alice.write_message(constant(b"")))
    alice.read_message(bob.write_message())
    with expect("handshake_failed"):
        bob.read_message(alice.write_message(payload))
    assert bob.remote_did is None


def test_a_correct_forged_peer_is_accepted() -> None:
    # The forging helper itself is sound: with an honest payload the handshake completes.
    alice, bob = initiator(), forged(False)
    bob.read_message(alice.write_message())
    alice.read_message(bob.write_message(lambda h: IdentityPayload.create(BOB, h).encode()))
    assert alice.remote_did == BOB.did


# --- misuse and edge cases -----------------------------------------------------


def test_calls_out_of_order_fail() -> None:
    with expect("protocol_error"):
        responder().write_message()
    with expect("protocol_error"):
        initiator().read_message(bytes(32))
    with expect("protocol_error"):
        initiator().transport()
    i, r = initiator(), responder()
    run(i, r)
    with expect("protocol_error"):
        i.write_message()
    with expect("protocol_error"):
        r.read_message(b"")


def test_a_failed_handshake_stays_failed() -> None:
    i, r = initiator(), responder()
    r.read_message(i.write_message())
    with expect("handshake_failed"):
        i.read_message(b"\0" * 100)
    for call in (i.write_message, lambda: i.read_message(r.write_message()), i.transport):
        with expect("protocol_error"):
            call()
    assert not i.wants_write and not i.complete


@pytest.mark.parametrize("size", [0, 31, 33, 80])
def test_message_1_is_exactly_one_key(size: int) -> None:
    with expect("handshake_failed"):
        responder().read_message(bytes(range(size)))


def test_a_low_order_ephemeral_fails() -> None:
    r = responder()
    r.read_message(bytes(32))
    with expect("handshake_failed"):
        r.write_message()


def test_bad_arguments() -> None:
    e, s = keys("x")
    with pytest.raises(ValueError):
        Handshake.initiator(ALICE, e[:31], s)
    with pytest.raises(ValueError):
        Handshake.responder(BOB, e, e)
    with expect("bad_did"):
        Handshake.initiator(ALICE, e, s, expected_remote="did:key:nope")


def test_peer_link_codes_are_registered() -> None:
    assert {"handshake_failed", "bad_frame", "frame_too_large", "protocol_error"} <= CODES.keys()


# --- transport -----------------------------------------------------------------


def link() -> tuple[Transport, Transport]:
    i, r = initiator(), responder()
    run(i, r)
    return i.transport(), r.transport()


def test_a_tampered_frame_is_refused_and_the_link_stays_failed() -> None:
    ti, tr = link()
    frame = ti.encrypt(b"hello")
    with expect("bad_frame"):
        tr.decrypt(frame[:-1] + bytes([frame[-1] ^ 1]))
    with expect("protocol_error"):
        tr.decrypt(frame)
    with expect("protocol_error"):
        tr.encrypt(b"x")


def test_reordered_replayed_and_reflected_frames_are_refused() -> None:
    ti, tr = link()
    first, second = ti.encrypt(b"1"), ti.encrypt(b"2")
    with expect("bad_frame"):
        tr.decrypt(second)
    ti, tr = link()
    first = ti.encrypt(b"1")
    assert tr.decrypt(first) == b"1"
    with expect("bad_frame"):
        tr.decrypt(first)
    ti, tr = link()
    with expect("bad_frame"):
        ti.decrypt(ti.encrypt(b"echo"))  # each direction has its own key


def test_frame_sizes() -> None:
    ti, tr = link()
    big = bytes(MAX_PLAINTEXT_BYTES)
    frame = ti.encrypt(big)
    assert len(frame) == MAX_MESSAGE_BYTES
    assert tr.decrypt(frame) == big
    assert tr.decrypt(ti.encrypt(b"")) == b""
    with expect("frame_too_large"):
        ti.encrypt(bytes(MAX_PLAINTEXT_BYTES + 1))
    with expect("frame_too_large"):
        link()[1].decrypt(bytes(MAX_MESSAGE_BYTES + 1))
    with expect("bad_frame"):
        link()[1].decrypt(bytes(15))


def test_the_last_nonce_is_never_used() -> None:
    key = bytes(range(32))
    send = Transport(CipherState(key, 2**64 - 2), CipherState(), remote_did=AgentId(BOB.did), handshake_hash=b"")
    receive = Transport(CipherState(), CipherState(key, 2**64 - 2), remote_did=AgentId(ALICE.did),
                        handshake_hash=b"")
    assert receive.decrypt(send.encrypt(b"last")) == b"last"
    with expect("protocol_error"):
        send.encrypt(b"one too many")
    with expect("protocol_error"):
        receive.decrypt(bytes(16))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=2048)), max_size=20))
def test_random_frames_round_trip_both_ways(frames: list[tuple[bool, bytes]]) -> None:
    ti, tr = link()
    for to_responder, plaintext in frames:
        sender, receiver = (ti, tr) if to_responder else (tr, ti)
        frame = sender.encrypt(plaintext)
        assert len(frame) == len(plaintext) + 16
        assert receiver.decrypt(frame) == plaintext


# The u-coordinates of Curve25519's points of small order (each DH with one is all zeros), as listed by libsodium,
# and their non-canonical encodings (plus p, or the top bit set, which X25519 ignores).
_SMALL_ORDER = [bytes.fromhex(h) for h in (
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
)]
_SMALL_ORDER += [u[:31] + bytes([u[31] | 0x80]) for u in _SMALL_ORDER]


def test_every_small_order_key_is_refused() -> None:
    pair = _KeyPair.of(bytes(range(32)), "test")
    for u in _SMALL_ORDER:
        with expect("handshake_failed"):
            pair.exchange(u)


def _openssl_x25519(private: bytes, public: bytes) -> bytes | None:
    """X25519 as OpenSSL computes it (the implementation the handshake used before libsodium's), None for a
    low-order public key."""
    try:
        return X25519PrivateKey.from_private_bytes(private).exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        return None


@settings(max_examples=300)
@given(private=st.binary(min_size=32, max_size=32),
       public=st.one_of(st.binary(min_size=32, max_size=32), st.sampled_from(_SMALL_ORDER)))
def test_the_key_exchange_refuses_and_computes_exactly_what_openssl_does(private: bytes, public: bytes) -> None:
    """The handshake's X25519 is libsodium's (it lets other threads run meanwhile); it accepts the same keys, gives the
    same shared secrets and public keys, and refuses the same low-order keys as the OpenSSL one it replaced."""
    pair = _KeyPair.of(private, "test")
    assert pair.public == X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()
    expected = _openssl_x25519(private, public)
    if expected is None:
        with expect("handshake_failed"):
            pair.exchange(public)
    else:
        assert pair.exchange(public) == expected
