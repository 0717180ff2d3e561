"""Ed25519 acceptance on the edges where implementations disagree (SPEC.md §4).

The vectors (tests/protocol/vectors/ed25519_edge.json) come from scripts/ed25519_edge.py, whose
pure-Python verifier follows SPEC.md §4's rules; here the node's own verification (libsodium) must
decide every vector the same way, and the script must still write the committed file byte for byte.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from protocol.identity import SigningKey, verify_many, verify_signature

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "protocol" / "vectors" / "ed25519_edge.json"


def vectors() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(VECTORS.read_text(encoding="utf-8"))["vectors"]
    return data


def triple(v: dict[str, Any]) -> tuple[bytes, bytes, bytes]:
    return bytes.fromhex(v["public_key"]), bytes.fromhex(v["signature"]), bytes.fromhex(v["message"])


@pytest.mark.parametrize("vector", vectors(), ids=lambda v: v["name"])
def test_the_node_decides_each_edge_case_as_spec_says(vector: dict[str, Any]) -> None:
    assert verify_signature(*triple(vector)) is vector["accept"], vector["description"]


def test_batch_verification_decides_the_same() -> None:
    cases = vectors()
    assert verify_many([triple(v) for v in cases]) == [v["accept"] for v in cases]


def test_the_vectors_cover_both_sides_of_the_cofactor_question() -> None:
    cases = {v["name"]: v for v in vectors()}
    # Verification is cofactorless: accepted by a cofactored verifier, refused here.
    assert cases["a_mixed_order_h_not_0_mod_8"]["cofactored"] and not cases["a_mixed_order_h_not_0_mod_8"]["accept"]
    # A mixed-order key is not refused as such: with h ≡ 0 mod 8 both equations hold.
    assert cases["a_mixed_order_h_0_mod_8"]["accept"]
    refused = {"s_plus_l", "s_high_bit", "a_identity", "a_identity_noncanonical", "a_order_8", "r_identity",
               "r_identity_noncanonical", "r_order_8", "a_not_on_curve", "zero_signature", "wrong_message"}
    assert refused <= set(cases) and not any(cases[name]["accept"] for name in refused)


def test_the_script_writes_the_committed_vectors_and_signs_as_the_node_does(
    script: Callable[[str], ModuleType],
) -> None:
    edge = script("ed25519_edge")
    assert edge.render() == VECTORS.read_text(encoding="utf-8")
    seed = hashlib.sha256(b"tally-ed25519-edge-seed").digest()
    public_key, signature = edge.rfc8032_sign(seed, b"any message")
    key = SigningKey(seed)
    assert (public_key, signature) == (key.public_key, key.sign(b"any message"))
