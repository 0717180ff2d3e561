"""Builders and Hypothesis strategies shared by the protocol tests.

Imported as a top-level module: pytest (default `prepend` import mode, no
`__init__.py` in tests/) puts this directory on sys.path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from protocol import dagcbor
from protocol.cid import CID, CODEC_DAG_CBOR, CODEC_RAW, MULTIHASH_SHA2_256, SHA2_256_BYTES
from protocol.entry import GENESIS_KIND, MAX_HEADER_BYTES, SIGNING_PREFIX, Entry, create_entry
from protocol.identity import SigningKey
from protocol.rules import Rules
from protocol.state import LedgerState, compute_state

#: Hypothesis settings for cheap properties and for ones that sign (slower per example).
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SIGNING = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def key(n: int) -> SigningKey:
    """A deterministic test key; different n, different key."""
    return SigningKey(hashlib.sha256(b"tally-test-key-%d" % n).digest())


def cid_of(data: bytes, codec: int = CODEC_DAG_CBOR) -> CID:
    return CID(bytes([1, codec, MULTIHASH_SHA2_256, SHA2_256_BYTES]) + hashlib.sha256(data).digest())


def header_map(entry: Entry) -> dict[str, Any]:
    """The entry's header as a mutable map (signature included)."""
    value = dagcbor.decode(entry.header_raw, max_bytes=MAX_HEADER_BYTES)
    assert isinstance(value, dict)
    return dict(value)


def signed_header(signer: SigningKey, fields: dict[str, Any]) -> bytes:
    """Encode `fields` (any "sig" dropped) as a header block validly signed by `signer`.

    Lets a test build a header with exactly one defect: the signature still
    verifies, so only the intended rule can refuse it.
    """
    unsigned = {k: v for k, v in fields.items() if k != "sig"}
    sig = signer.sign(SIGNING_PREFIX + dagcbor.encode(unsigned))
    return dagcbor.encode({**unsigned, "sig": sig})


def genesis(founder: SigningKey, *, ts: int = 1_000, body: dict[str, Any] | None = None) -> Entry:
    return create_entry(
        founder, ledger=None, seq=1, prev=None, ts=ts, kind=GENESIS_KIND,
        body={"name": "Coop"} if body is None else body,
    )


def follow(
    author: SigningKey,
    head: Entry | None,
    ledger: CID,
    *,
    ts: int | None = None,
    kind: str = "vf.event",
    body: dict[str, Any] | None = None,
) -> Entry:
    """The entry that validly extends `head` (None: a first entry, seq 1) in `ledger`."""
    return create_entry(
        author,
        ledger=ledger,
        seq=1 if head is None else head.seq + 1,
        prev=None if head is None else head.id,
        ts=(0 if head is None else head.header.ts) if ts is None else ts,
        kind=kind,
        body={"n": 0 if head is None else head.seq} if body is None else body,
    )


def strict_equal(a: object, b: object) -> bool:
    """Equality that also compares types (so True != 1 and b"" != "")."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return a.keys() == b.keys() and all(strict_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


# --- strategies -------------------------------------------------------------------------------

cids = st.builds(
    lambda digest, codec: CID(bytes([1, codec, MULTIHASH_SHA2_256, SHA2_256_BYTES]) + digest),
    st.binary(min_size=32, max_size=32),
    st.sampled_from([CODEC_DAG_CBOR, CODEC_RAW]),
)
ints64 = st.integers(min_value=dagcbor.MIN_INT, max_value=dagcbor.MAX_INT)
# "/" is kept out of keys: a map whose sole key is "/" is a link or bytes in DAG-JSON.
map_keys = st.text(max_size=8).filter(lambda k: k != "/")
scalars = st.none() | st.booleans() | ints64 | st.text(max_size=20) | st.binary(max_size=20) | cids
dag_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(map_keys, children, max_size=5),
    max_leaves=25,
)
bodies = st.dictionaries(map_keys, dag_values, max_size=6)
kinds = st.from_regex(r"[a-z][a-z0-9]{0,6}(\.[a-zA-Z][a-zA-Z0-9_-]{0,6}){1,3}", fullmatch=True).filter(
    lambda k: k != GENESIS_KIND
)
seeds = st.binary(min_size=32, max_size=32)
timestamps = st.integers(min_value=0, max_value=2**53 - 1)


@st.composite
def entries(draw: st.DrawFn) -> Entry:
    """A valid entry: a genesis, a first entry (seq 1) or a later one in some ledger."""
    signer = SigningKey(draw(seeds))
    body = draw(bodies)
    ts = draw(timestamps)
    shape = draw(st.sampled_from(["genesis", "first", "later"]))
    if shape == "genesis":
        return create_entry(signer, ledger=None, seq=1, prev=None, ts=ts, kind=GENESIS_KIND, body=body)
    ledger = draw(cids.filter(lambda c: c.codec == CODEC_DAG_CBOR))
    if shape == "first":
        return create_entry(signer, ledger=ledger, seq=1, prev=None, ts=ts, kind=draw(kinds), body=body)
    prev = draw(cids.filter(lambda c: c.codec == CODEC_DAG_CBOR))
    seq = draw(st.integers(min_value=2, max_value=2**53 - 1))
    return create_entry(signer, ledger=ledger, seq=seq, prev=prev, ts=ts, kind=draw(kinds), body=body)


class LedgerBuilder:
    """A ledger under construction whose founders are its members; signs each key's next entry in its chain."""

    def __init__(self, founders: Sequence[SigningKey], *, name: str = "Coop", **config: Any) -> None:
        config.setdefault("units", ["hour", "euro", "day"])
        rules = Rules.from_config({"founders": [f.did for f in founders], **config}, name=name,
                                  creator=founders[0].did)
        self.genesis = create_entry(founders[0], ledger=None, seq=1, prev=None, ts=1_000, kind=GENESIS_KIND,
                                    body=rules.to_body())
        self.id = self.genesis.id
        self.heads: dict[bytes, Entry] = {founders[0].public_key: self.genesis}
        self.entries: list[Entry] = [self.genesis]
        self.clock = 1_000

    def append(self, author: SigningKey, kind: str, body: dict[str, Any], *, ts: int | None = None) -> Entry:
        head = self.heads.get(author.public_key)
        self.clock += 1
        entry = create_entry(author, ledger=self.id, seq=1 if head is None else head.seq + 1,
                             prev=None if head is None else head.id, ts=self.clock if ts is None else ts, kind=kind,
                             body={"member": self.id, **body})
        self.heads[author.public_key] = entry
        self.entries.append(entry)
        return entry

    def state(self, entries: Iterable[Entry] | None = None) -> LedgerState:
        return compute_state(self.genesis, self.entries if entries is None else entries)
