"""A state's digest (SPEC.md §16.7): two nodes holding the same set of entries compute the same digest."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from itertools import repeat
from typing import Any, Final

from . import dagcbor
from .cid import CID
from .ledger_state import LedgerState

#: 2: the digest's entries are 256 bucket digests (SPEC.md §16.7), so a node updates it after one new entry
#: by hashing one bucket again, not every entry
STATE_VERSION: Final = 2
DIGEST_BUCKETS: Final = 256  # an entry's bucket is the last byte of its binary CID (of its sha2-256 digest)


def with_digest(state: LedgerState) -> LedgerState:
    return replace(state, digest=state_digest(state))


def state_digest(state: LedgerState, *, in_order: bool = False) -> bytes:
    """The digest of a state from its fields (SPEC.md §16.7). `in_order`: its status map is in id order
    already (else it is sorted here)."""
    buckets: dict[int, list[bytes]] = {}  # only those holding ids: most of a small ledger's 256 are empty
    for raw in state.status if in_order else sorted(state.status):
        ids = buckets.get(raw[-1])
        if ids is None:
            buckets[raw[-1]] = [raw]
        else:
            ids.append(raw)
    get = state.status.__getitem__
    digests = [EMPTY_BUCKET_DIGEST] * DIGEST_BUCKETS
    for i, ids in buckets.items():
        digests[i] = bucket_digest(ids, list(map(get, ids)))
    return digest_of(state, digests)


def digest_of(state: LedgerState, buckets: list[bytes]) -> bytes:
    """sha2-256 of the DAG-CBOR map {v, ledger, members, left, …, entries: [bucket digest × 256]}."""
    summary = digest_summary(state)
    summary["entries"] = buckets
    return hashlib.sha256(dagcbor.encode(summary)).digest()


def bucket_digest(ids: Sequence[bytes], statuses: Sequence[str]) -> bytes:
    """sha2-256 of one bucket's DAG-CBOR array [[id, status], …] (`ids` sorted bytewise)."""
    if not ids:
        return EMPTY_BUCKET_DIGEST
    digest = hashlib.sha256(dagcbor.head(4, len(ids)))
    if set(map(len, ids)) <= {36}:  # every sha2-256 CID: each id put between two prefixes, in C
        tails = {status: dagcbor.text_string(status) for status in set(statuses)}
        pairs = zip(repeat(_PAIR_36), ids, map(tails.__getitem__, statuses), strict=False)  # repeat: endless
        digest.update(b"".join(map(b"".join, pairs)))
    else:
        digest.update(b"".join(_PAIR_HEAD + dagcbor.link(CID(raw)) + dagcbor.text_string(status)
                               for raw, status in zip(ids, statuses, strict=True)))
    return digest.digest()


def bucket_digest_coded(ids: Sequence[bytes], codes: bytes, names: Sequence[str]) -> bytes:
    """`bucket_digest` of 36-byte ids whose statuses are `names[code]` for each of `codes` (a snapshot's kept status,
    node/store/snapshots.py, checked as it is read back): no status string looked up per id."""
    if not ids:
        return EMPTY_BUCKET_DIGEST
    tails = [dagcbor.text_string(name) for name in names]
    digest = hashlib.sha256(dagcbor.head(4, len(ids)))
    digest.update(b"".join(map(b"".join, zip(repeat(_PAIR_36), ids, map(tails.__getitem__, codes), strict=False))))
    return digest.digest()


_PAIR_HEAD: Final = dagcbor.head(4, 2)  # [id, status]
#: An empty bucket's digest (most of a small ledger's 256): hashed once, not once per state.
EMPTY_BUCKET_DIGEST: Final = hashlib.sha256(dagcbor.head(4, 0)).digest()
_PAIR_36: Final = _PAIR_HEAD + dagcbor.link(CID.for_block(b""))[:-36]  # a pair's bytes before a 36-byte id


def digest_summary(state: LedgerState) -> dict[str, Any]:
    """What the digest summarizes, but `entries` (its bucket digests: `state_digest`, and protocol/fold.py's cache)."""
    summary: dict[str, Any] = {
        "v": STATE_VERSION,
        "ledger": state.ledger,
        "members": list(state.members),
        "left": list(state.left),
    }
    if state.amendments:  # governance (§18): only when there is some, so other digests stay as they were
        summary["rules"] = state.rules.to_body()
    if state.motions:
        summary["motions"] = [
            [m.id, m.closing, m.winner, [m.tally.totals[o] for o in m.motion.options]] for m in state.motions
        ]
    if state.identities:  # keys (§19): only when some identity has key events
        summary["keys"] = [[i.identity, i.key, sorted(i.writers()[1:])] for i in state.identities.values()]
    if state.pledges:
        summary["pledges"] = [[p.id, [pay.id for pay in p.payments]] for p in state.pledges]
    return summary

