"""did:key ids and Ed25519 keys (protocol/identity.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from protocol_helpers import FAST, SIGNING, key

from protocol.errors import InvalidData
from protocol.identity import (
    SigningKey,
    did_from_public_key,
    public_key_from_did,
    verify_signature,
)
from protocol.multiformats import b58decode, b58encode

VECTORS = json.loads((Path(__file__).parent / "vectors" / "did_key_ed25519.json").read_text())
SEED_VECTORS = VECTORS["seed_vectors"]
DID_VECTORS = SEED_VECTORS + VECTORS["did_vectors"]
ED25519 = b"\xed\x01"


@pytest.mark.parametrize("vector", SEED_VECTORS, ids=lambda v: v["seed"][-2:])
def test_seed_gives_the_vector_did(vector: dict[str, str]) -> None:
    signer = SigningKey(bytes.fromhex(vector["seed"]))
    assert b58encode(signer.public_key) == vector["publicKeyBase58"]
    assert signer.did == vector["did"]


@pytest.mark.parametrize("vector", DID_VECTORS, ids=lambda v: v["did"][-6:])
def test_did_gives_the_vector_public_key(vector: dict[str, str]) -> None:
    public_key = public_key_from_did(vector["did"])
    assert public_key == b58decode(vector["publicKeyBase58"])
    assert len(public_key) == 32
    assert did_from_public_key(public_key) == vector["did"]


@FAST
@given(st.binary(min_size=32, max_size=32))
def test_did_round_trips_any_public_key(public_key: bytes) -> None:
    did = did_from_public_key(public_key)
    assert did.startswith("did:key:z6Mk")
    assert public_key_from_did(did) == public_key


def _did_of(raw: bytes) -> str:
    return "did:key:z" + b58encode(raw)


GOOD = SEED_VECTORS[0]["did"]
GOOD_KEY = b58decode(SEED_VECTORS[0]["publicKeyBase58"])

BAD_DIDS = {
    **{f"vector-{d[-6:]}": d for d in VECTORS["invalid"]},
    "x25519-built": _did_of(b"\xec\x01" + GOOD_KEY),
    "secp256k1-built": _did_of(b"\xe7\x01" + b"\x02" + GOOD_KEY),
    "p256-built": _did_of(b"\x80\x24" + b"\x02" + GOOD_KEY),
    "no-multicodec": _did_of(GOOD_KEY),
    "base16": "did:key:f" + (ED25519 + GOOD_KEY).hex(),
    "base32": "did:key:b" + "aaaa",
    "uppercase-z": "did:key:Z" + GOOD[len("did:key:z"):],
    "no-multibase": "did:key:" + GOOD[len("did:key:z"):],
    "char-0": GOOD[:20] + "0" + GOOD[21:],
    "char-O": GOOD[:20] + "O" + GOOD[21:],
    "char-I": GOOD[:20] + "I" + GOOD[21:],
    "char-l": GOOD[:20] + "l" + GOOD[21:],
    "char-plus": GOOD[:20] + "+" + GOOD[21:],
    "fragment": GOOD + "#" + GOOD[len("did:key:"):],
    "trailing-space": GOOD + " ",
    "short-31": _did_of(ED25519 + GOOD_KEY[:31]),
    "long-33": _did_of(ED25519 + GOOD_KEY + b"\x00"),
    "dropped-char": GOOD[:-1],
    "extra-char": GOOD + "z",
    "empty-key": "did:key:z",
    "empty": "did:key:",
    "other-method": "did:web:" + GOOD[len("did:key:"):],
    "no-scheme": GOOD[len("did:key:"):],
    "upper-method": "DID:KEY:" + GOOD[len("did:key:"):],
    "blank": "",
}


@pytest.mark.parametrize("did", BAD_DIDS.values(), ids=BAD_DIDS.keys())
def test_bad_did_is_refused(did: str) -> None:
    with pytest.raises(InvalidData) as info:
        public_key_from_did(did)
    assert info.value.code == "bad_did"


@pytest.mark.parametrize("value", [None, 42, GOOD.encode()])
def test_non_string_did_is_refused(value: object) -> None:
    with pytest.raises(InvalidData) as info:
        public_key_from_did(value)  # type: ignore[arg-type]
    assert info.value.code == "bad_did"


@FAST
@given(st.text(max_size=60))
def test_did_parse_refuses_or_round_trips(text: str) -> None:
    try:
        public_key = public_key_from_did(text)
    except InvalidData as exc:
        assert exc.code == "bad_did"
    else:
        assert did_from_public_key(public_key) == text


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_did_from_public_key_wrong_length(size: int) -> None:
    with pytest.raises(InvalidData) as info:
        did_from_public_key(b"\x01" * size)
    assert info.value.code == "bad_did"


# --- Ed25519 (RFC 8032 section 7.1, tests 1-3) ---------------------------------------------------

RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]


@pytest.mark.parametrize(("seed", "public", "message", "signature"), RFC8032)
def test_rfc8032_vectors(seed: str, public: str, message: str, signature: str) -> None:
    signer = SigningKey(bytes.fromhex(seed))
    assert signer.public_key.hex() == public
    assert signer.sign(bytes.fromhex(message)).hex() == signature
    assert verify_signature(bytes.fromhex(public), bytes.fromhex(signature), bytes.fromhex(message))


@SIGNING
@given(seed=st.binary(min_size=32, max_size=32), message=st.binary(max_size=64), flip=st.data())
def test_signature_verifies_only_unchanged(seed: bytes, message: bytes, flip: st.DataObject) -> None:
    signer = SigningKey(seed)
    sig = signer.sign(message)
    assert verify_signature(signer.public_key, sig, message)
    i = flip.draw(st.integers(min_value=0, max_value=63))
    bad_sig = sig[:i] + bytes([sig[i] ^ flip.draw(st.integers(1, 255))]) + sig[i + 1:]
    assert not verify_signature(signer.public_key, bad_sig, message)
    assert not verify_signature(signer.public_key, sig, message + b"\x00")
    other = SigningKey(bytes(b ^ 0xFF for b in seed))
    assert not verify_signature(other.public_key, sig, message)


def test_verify_signature_wrong_lengths_are_false() -> None:
    signer = key(0)
    sig = signer.sign(b"m")
    assert not verify_signature(signer.public_key, sig[:63], b"m")
    assert not verify_signature(signer.public_key, sig + b"\x00", b"m")
    assert not verify_signature(signer.public_key[:31], sig, b"m")
    assert not verify_signature(b"", b"", b"m")


# --- SigningKey -------------------------------------------------------------------------------------


def test_signing_key_repr_hides_seed() -> None:
    seed = bytes(range(32))
    text = repr(SigningKey(seed))
    assert seed.hex() not in text
    assert repr(seed) not in text


@pytest.mark.parametrize("size", [0, 31, 33])
def test_signing_key_needs_32_byte_seed(size: int) -> None:
    with pytest.raises(ValueError):
        SigningKey(b"\x00" * size)


def test_key_file_hex_and_pem_round_trip() -> None:
    signer = key(3)
    assert SigningKey.from_key_file(signer.seed.hex().encode() + b"\n").seed == signer.seed
    assert SigningKey.from_key_file(signer.seed.hex().upper().encode()).seed == signer.seed
    pem = signer.to_pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert SigningKey.from_key_file(pem).did == signer.did


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"00" * 31,
        b"00" * 33,
        b"zz" * 32,
        b"-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n",
    ],
)
def test_bad_key_file(data: bytes) -> None:
    with pytest.raises(InvalidData) as info:
        SigningKey.from_key_file(data)
    assert info.value.code == "bad_key_file"


def test_non_ed25519_pem_key_file() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    pem = X25519PrivateKey.from_private_bytes(b"\x01" * 32).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(InvalidData) as info:
        SigningKey.from_key_file(pem)
    assert info.value.code == "bad_key_file"
