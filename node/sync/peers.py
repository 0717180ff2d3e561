"""Peers: what this node knows of each peer, and what counts as a peer misbehaving.

`PeerInfo` is one row of `tally peers` and of `GET /api/v1/peers`; the Replicator
(node/sync/replication.py) keeps one per peer and each sync session (node/sync/session.py)
updates the row of its link.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Final

from protocol import InvalidData, TallyError

MAX_ERRORS_KEPT: Final = 10
# Codes that mean the peer misbehaved (as opposed to going away).
MISBEHAVIOUR: Final = frozenset({
    "bad_encoding", "bad_signature", "bad_message", "unknown_message", "protocol_error", "rate_limited",
    "bad_frame", "frame_too_large", "oversize", "bad_fork_proof", "payload_mismatch", "bad_payload",
    "missing_field", "unknown_field", "bad_field", "unknown_version", "bad_genesis", "bad_cid",
})


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class PeerInfo:
    """What this node knows of one peer (by did:key), for `tally peers` and the API."""

    did: str | None  # None until a handshake told us who is at `address`
    address: str | None  # URL we dial, or the remote address of an inbound link
    found: str  # "flag", "config", "mdns", "inbound" or "invite" (the inviter's node of a ledger joined by invitation)
    connected: bool = False
    last_seen: int | None = None  # ms, wall clock
    last_sync: int | None = None  # ms: when we were last level with it on every shared ledger
    entries_behind: int = 0  # entries it has that we lack, as of its last frontier
    entries_in: int = 0
    entries_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    errors: list[str] = field(default_factory=list)  # most recent last: "<code>: <message>"

    def note_error(self, code: str, message: str) -> None:
        self.errors.append(f"{code}: {message}"[:300])
        del self.errors[:-MAX_ERRORS_KEPT]

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.did,
            "address": self.address,
            "found": self.found,
            "connected": self.connected,
            "last_seen": self.last_seen,
            "last_sync": self.last_sync,
            "entries_behind": self.entries_behind,
            "entries_in": self.entries_in,
            "entries_out": self.entries_out,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "errors": list(self.errors),
        }


class PeerMisbehaved(TallyError):
    """A peer broke the protocol: `error` is what it sent that this node refuses (its code, its message)."""

    def __init__(self, error: InvalidData) -> None:
        super().__init__(error.code, error.message)
        self.error = error

