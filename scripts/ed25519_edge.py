"""Ed25519 edge-case vectors: which signatures a Tally node accepts (SPEC.md §4).

Writes tests/protocol/vectors/ed25519_edge.json: signatures built to sit on the
edges where Ed25519 implementations disagree ("Taming the many EdDSAs",
Chalkias, Garillot and Nikolaenko, CCS 2020): small-order and mixed-order public
keys, small-order and non-canonical R, non-canonical S, non-canonical key
encodings. Each vector says what SPEC.md §4's rules decide (`accept`), computed
here by an independent pure-Python verifier that follows those rules word for
word, and what a cofactored verifier (RFC 8032 §5.1.7's optional [8] check)
would decide, so another implementation sees where it must not differ.
tests/protocol/test_ed25519_edge.py checks the node agrees and that this script
still writes the committed file byte for byte.

    python scripts/ed25519_edge.py            # rewrite the vectors
    python scripts/ed25519_edge.py --check    # exit 1 if the committed file differs
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, -1, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
OUT = Path(__file__).resolve().parent.parent / "tests" / "protocol" / "vectors" / "ed25519_edge.json"

Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T)
IDENTITY: Point = (0, 1, 1, 0)


def add(p: Point, q: Point) -> Point:
    a = (p[1] - p[0]) * (q[1] - q[0]) % P
    b = (p[1] + p[0]) * (q[1] + q[0]) % P
    c = 2 * p[3] * q[3] * D % P
    d = 2 * p[2] * q[2] % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def mul(k: int, p: Point) -> Point:
    result = IDENTITY
    while k:
        if k & 1:
            result = add(result, p)
        p = add(p, p)
        k >>= 1
    return result


def neg(p: Point) -> Point:
    return (-p[0] % P, p[1], p[2], -p[3] % P)


def x_of(y: int, sign: int) -> int | None:
    """The x with that sign bit on the curve at y, or None (RFC 8032 §5.1.3)."""
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if v * x * x % P != u:
        x = x * SQRT_M1 % P
        if v * x * x % P != u:
            return None
    if x == 0 and sign:
        return None
    return P - x if x & 1 != sign else x


def point(y: int, sign: int = 0) -> Point:
    x = x_of(y, sign)
    assert x is not None
    return (x, y, 1, x * y % P)


def encode(p: Point) -> bytes:
    zi = pow(p[2], -1, P)
    x, y = p[0] * zi % P, p[1] * zi % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def decode(data: bytes) -> Point | None:
    """Strict decoding: y < p, on the curve; None otherwise."""
    value = int.from_bytes(data, "little")
    y, sign = value & (2**255 - 1), value >> 255
    if y >= P:
        return None
    x = x_of(y, sign)
    return None if x is None else (x, y, 1, x * y % P)


def equal(p: Point, q: Point) -> bool:
    return (p[0] * q[2] - q[0] * p[2]) % P == 0 and (p[1] * q[2] - q[1] * p[2]) % P == 0


B = point(4 * pow(5, -1, P) % P)


def _order_8() -> Point:
    """A point of order 8: [L]P for a curve point P whose torsion part has order 8."""
    for y in range(2, 200):
        if x_of(y, 0) is not None:
            torsion = mul(L, point(y))
            if not equal(mul(4, torsion), IDENTITY):
                return torsion
    raise AssertionError("no point of order 8 found")


T8 = _order_8()
assert equal(mul(8, T8), IDENTITY)
#: the y of each of the 8 points of small order (the torsion subgroup T8 generates)
SMALL_ORDER_Y = frozenset(int.from_bytes(encode(mul(k, T8)), "little") & (2**255 - 1) for k in range(8))


def small_order_encoding(data: bytes) -> bool:
    """SPEC.md §4: an encoding whose y (sign bit ignored), reduced mod p, is the y of a point of small order.
    This also catches the non-canonical encodings p and p + 1 of y = 0 and y = 1."""
    return (int.from_bytes(data, "little") & (2**255 - 1)) % P in SMALL_ORDER_Y


def challenge(r: bytes, a: bytes, msg: bytes) -> int:
    return int.from_bytes(hashlib.sha512(r + a + msg).digest(), "little") % L


def accepts(public_key: bytes, sig: bytes, msg: bytes) -> bool:
    """SPEC.md §4's acceptance rules, in their order."""
    if len(public_key) != 32 or len(sig) != 64:
        return False
    r, s = sig[:32], int.from_bytes(sig[32:], "little")
    if s >= L or small_order_encoding(r):
        return False
    if int.from_bytes(public_key, "little") & (2**255 - 1) >= P or small_order_encoding(public_key):
        return False
    a = decode(public_key)
    if a is None:
        return False
    # Cofactorless: the encoding of [S]B − [h]A must be R's bytes.
    return encode(add(mul(s, B), neg(mul(challenge(r, public_key, msg), a)))) == r


def cofactored(public_key: bytes, sig: bytes, msg: bytes) -> bool:
    """RFC 8032's cofactored check, [8][S]B = [8]R + [8][h]A, on leniently decoded points (y mod p)."""
    if len(sig) != 64:
        return False
    s = int.from_bytes(sig[32:], "little")

    def lenient(data: bytes) -> Point | None:
        value = int.from_bytes(data, "little")
        return decode((((value & (2**255 - 1)) % P) | (value >> 255) << 255).to_bytes(32, "little"))

    a, r = lenient(public_key), lenient(sig[:32])
    if a is None or r is None or s >= L:
        return False
    h = challenge(sig[:32], public_key, msg)
    return equal(mul(8, mul(s, B)), mul(8, add(r, mul(h, a))))


def secret(n: int) -> int:
    return int.from_bytes(hashlib.sha512(b"tally-ed25519-edge-%d" % n).digest(), "little") % L


def sign_with(a_secret: int, public_key: bytes, msg: bytes, nonce: int) -> bytes:
    r = encode(mul(nonce, B))
    return r + ((nonce + challenge(r, public_key, msg) * a_secret) % L).to_bytes(32, "little")


def rfc8032_sign(seed: bytes, msg: bytes) -> tuple[bytes, bytes]:
    """RFC 8032 §5.1.6 from a seed: (public key, signature)."""
    digest = hashlib.sha512(seed).digest()
    a = int.from_bytes(digest[:32], "little")
    a = (a & ((1 << 254) - 8)) | (1 << 254)
    public_key = encode(mul(a, B))
    nonce = int.from_bytes(hashlib.sha512(digest[32:] + msg).digest(), "little") % L
    return public_key, sign_with(a, public_key, msg, nonce)


def message_where(public_key: bytes, r: bytes, want_zero: bool) -> bytes:
    """The first message m-0, m-1 … whose challenge h is (or is not) ≡ 0 mod 8."""
    for i in range(10_000):
        msg = b"m-%d" % i
        if (challenge(r, public_key, msg) % 8 == 0) == want_zero:
            return msg
    raise AssertionError("no such message")


def vectors() -> list[dict[str, Any]]:
    cases: list[tuple[str, str, bytes, bytes, bytes]] = []
    seed = hashlib.sha256(b"tally-ed25519-edge-seed").digest()
    msg = b"tally-entry-v1\x00edge"
    pk, sig = rfc8032_sign(seed, msg)
    cases.append(("valid", "an ordinary RFC 8032 signature", pk, sig, msg))
    cases.append(("wrong_message", "the same signature over another message", pk, sig, msg + b"!"))
    s = int.from_bytes(sig[32:], "little")
    cases.append(("s_plus_l", "S + L: the same S mod L, not canonical (malleability)", pk,
                  sig[:32] + (s + L).to_bytes(32, "little"), msg))
    cases.append(("s_high_bit", "S with its top bit set", pk, sig[:32] + (s | 1 << 255).to_bytes(32, "little"), msg))
    cases.append(("zero_signature", "64 zero bytes", pk, bytes(64), msg))

    # A public key of small order: the identity, canonical and as y = p + 1 (non-canonical); and a point of
    # order 8. With A of small order [h]A is small, so R = [r]B, S = r verifies cofactored for any message.
    nonce = secret(1)
    r_bytes = encode(mul(nonce, B))
    plain_s = nonce.to_bytes(32, "little")
    for name, key, what in [
        ("a_identity", encode(IDENTITY), "A is the identity (order 1)"),
        ("a_identity_noncanonical", (P + 1).to_bytes(32, "little"), "A is y = p + 1, a non-canonical identity"),
        ("a_order_8", encode(T8), "A has order 8"),
    ]:
        cases.append((name, f"{what}; R = [r]B, S = r", key, r_bytes + plain_s,
                      message_where(key, r_bytes, want_zero=True)))

    # A mixed-order key: A = [a]B + T8. [S]B = R + [h]A holds cofactorless only when [h]T8 is the identity,
    # i.e. h ≡ 0 mod 8; cofactored always.
    a = secret(2)
    mixed = encode(add(mul(a, B), T8))
    for want_zero, name in [(False, "a_mixed_order_h_not_0_mod_8"), (True, "a_mixed_order_h_0_mod_8")]:
        nonce = secret(3)
        r = encode(mul(nonce, B))
        m = message_where(mixed, r, want_zero)
        h = challenge(r, mixed, m)
        cases.append((name, f"A = [a]B + T (T of order 8), h mod 8 = {h % 8}", mixed,
                      sign_with(a, mixed, m, nonce), m))

    # R of small order with an honest key: R = identity, S = h·a verifies under either equation.
    a = secret(4)
    honest = encode(mul(a, B))
    r = encode(IDENTITY)
    m = b"small R"
    cases.append(("r_identity", "R is the identity; S = h·a", honest,
                  r + (challenge(r, honest, m) * a % L).to_bytes(32, "little"), m))
    r = (P + 1).to_bytes(32, "little")
    cases.append(("r_identity_noncanonical", "R is y = p + 1 (a non-canonical identity); S = h·a", honest,
                  r + (challenge(r, honest, m) * a % L).to_bytes(32, "little"), m))
    r = encode(T8)
    m = message_where(honest, r, want_zero=True)
    cases.append(("r_order_8", "R has order 8, h ≡ 0 mod 8; S = h·a", honest,
                  r + (challenge(r, honest, m) * a % L).to_bytes(32, "little"), m))
    # A key that is not on the curve.
    off = next(y for y in range(2, 100) if x_of(y, 0) is None)
    cases.append(("a_not_on_curve", f"A has y = {off}, not on the curve", off.to_bytes(32, "little"), sig, msg))
    return [
        {"name": name, "description": what, "public_key": k.hex(), "signature": sg.hex(), "message": m.hex(),
         "accept": accepts(k, sg, m), "cofactored": cofactored(k, sg, m)}
        for name, what, k, sg, m in cases
    ]


def render() -> str:
    doc = {
        "about": "Ed25519 acceptance edge cases (SPEC.md §4), written by scripts/ed25519_edge.py. `accept`: "
                 "what a Tally node decides; `cofactored`: what a cofactored verifier would.",
        "vectors": vectors(),
    }
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        same = OUT.read_text(encoding="utf-8") == text
        print("ed25519 vectors up to date" if same else f"{OUT} differs from what this script writes")
        return 0 if same else 1
    OUT.write_text(text, encoding="utf-8")
    doc = json.loads(text)
    print(f"wrote {len(doc['vectors'])} vectors to {OUT}")
    for v in doc["vectors"]:
        print(f"  {v['name']:32} accept={v['accept']!s:5} cofactored={v['cofactored']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
