"""What the store's tables hold, as values: the records the store answers with, and an entry's row (its exact
bytes and the index columns derived from them), with the statements the reading and the writing side share."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Final

from protocol import CID, GENESIS_KIND, Entry, ForkProof, InvalidData
from protocol.keys import founding_identity

INSERT_SQL: Final = (
    "INSERT INTO entries (idh, id, ledger, author, seq, ts, kind, header, payload, received)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# A chain's head counts a quarantined entry (its id and ts are kept): the next local entry links it, never forks it.
HEAD_SQL: Final = (
    "SELECT seq, id, ts FROM (SELECT seq, id, ts FROM entries WHERE ledger = ?1 AND author = ?2"
    " UNION ALL SELECT seq, id, ts FROM quarantine WHERE ledger = ?1 AND author = ?2) ORDER BY seq DESC LIMIT 1"
)
COLUMNS: Final = "idh, id, ledger, author, seq, ts, kind, header, payload, received"
#: `entries` rows of one id, bound as (idh(id), id.raw, …): found through the id index, its settled and its recent
#: part (schema.py); the full id is compared, as idh may collide. Parameters after these two are numbered from 3.
BY_ID: Final = (
    "rowid IN (SELECT rid FROM entry_ids WHERE idh = ?1 UNION ALL SELECT rid FROM recent_ids WHERE idh = ?1)"
    " AND id = ?2"
)
#: where a page starts: the (author, seq) of the entry `after`, in its ledger (and chain). `+ledger`, `+author`:
#: compared, not searched by; offered the (ledger, …) index, the planner walked the whole ledger to find one id (a
#: history page 28 ms at 100,000 entries, not 7.5 ms).
AFTER_IN_LEDGER_SQL: Final = f"SELECT author, seq FROM entries WHERE {BY_ID} AND +ledger = ?3"
AFTER_IN_CHAIN_SQL: Final = f"SELECT author, seq FROM entries WHERE {BY_ID} AND +ledger = ?3 AND +author = ?4"
#: genesis entries, as the partial index entries_genesis holds them (the kind spelled out, so the planner uses it)
GENESIS_WHERE: Final = f"kind = '{GENESIS_KIND}'"
COVERAGE_SQL: Final = "SELECT count(*), coalesce(sum(rowid), 0) FROM entries WHERE ledger = ?"
#: the ledger's rows up to a rowid, as a fold kept in a snapshot covers them
COVERAGE_UPTO_SQL: Final = "SELECT count(*), coalesce(sum(rowid), 0) FROM entries WHERE ledger = ? AND rowid <= ?"
FORK_POINTS_SQL: Final = "SELECT author, min(seq) FROM forks WHERE ledger = ? GROUP BY author"


@dataclass(frozen=True, slots=True)
class Invitation:
    """An invitation this node issued: its secret's hash, the ledger, redemptions left, when it expires (ms)."""

    hash: bytes
    ledger: CID
    uses: int
    expires: int
    created: int
    revoked: int | None = None



@dataclass(frozen=True, slots=True)
class LedgerInfo:
    id: CID
    name: str
    visibility: str
    founder: str
    created: int
    entries: int

    @classmethod
    def of(cls, genesis: Entry, entries: int) -> LedgerInfo:
        """A ledger as its genesis describes it, holding `entries` entries here."""
        body = genesis.body or {}
        return cls(id=genesis.id, name=str(body.get("name", "")), visibility=str(body.get("visibility", "members")),
                   # the identity a later key of it founded the ledger as (SPEC.md §19.9), else the genesis's author
                   founder=founding_identity(body, genesis.header.author) or genesis.author,
                   created=genesis.header.ts, entries=entries)


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What became of a batch of verified entries offered to the store."""

    stored: tuple[Entry, ...] = ()
    duplicates: int = 0
    forks: tuple[ForkProof, ...] = ()
    gaps: tuple[Entry, ...] = ()  # later than the chain's next seq: wait for the gap
    refused: tuple[tuple[Entry, InvalidData], ...] = ()


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding of `Store.verify`."""

    entry_id: str
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A stored entry whose bytes were found damaged, moved out of its ledger until a good copy comes."""

    id: CID
    ledger: CID
    author: bytes
    seq: int
    found: int


@dataclass(frozen=True, slots=True)
class Coverage:
    """What of a ledger's stored rows a snapshot covers. Rows are only ever added (a repair drops the
    ledger's snapshot), so any addition changes their count and rowid sum; fork points change what counts."""

    entries: int
    rowids: int
    forks: bytes  # each forked author's key and lowest forked seq (`fork_points`)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A row of the snapshots table (node/store/snapshots.py makes and checks them)."""

    format: str
    coverage: Coverage
    ids: bytes
    digest: bytes
    checksum: bytes
    state: bytes = field(repr=False)
    #: the fold kept with the state (node/store/snapshots.py); None when saving: keep the one kept before, if any
    fold: FoldRef | None = None


@dataclass(frozen=True, slots=True)
class FoldRef:
    """Where a snapshot's fold is: its format ("whole": a ledger folded whole, so no fold is kept), the save that
    wrote its parts (`token`), how many there are, sha2-256 of their bytes in order, and what it covers: the
    ledger's rows up to rowid `last` (their count and rowid sum: the store fills these in when it keeps it) and
    its state's digest. It may be older than the snapshot's state: the rows after `last` are folded in."""

    format: str
    token: bytes = b""
    parts: int = 0
    checksum: bytes = b""
    entries: int = 0
    digest: bytes = b""
    rowids: int = 0
    last: int = 0


def fork_points(forks: dict[bytes, int]) -> bytes:
    return b"".join(author + seq.to_bytes(8, "big") for author, seq in sorted(forks.items()))



def idh(cid: CID) -> int:
    # A short integer key indexes far cheaper than the 36-byte id: random 8-byte
    # keys dirty fewer index pages per commit. Lookups compare the full id too (BY_ID).
    return int.from_bytes(cid.digest[:8], "big", signed=True)


def entry_row(entry: Entry, now: int) -> tuple[Any, ...]:
    h = entry.header
    rid = entry.id.raw
    return (idh(entry.id), rid, rid if h.ledger is None else h.ledger.raw, h.author, h.seq, h.ts, h.kind,
            entry.header_raw, entry.payload_raw, now)


def label(rid: Any) -> str:
    try:
        return str(CID(rid))
    except (InvalidData, TypeError):
        return f"row-id:{rid!r:.80}"


_DAG_CBOR_SHA256: Final = bytes([0x01, 0x71, 0x12, 0x20])  # CIDv1, dag-cbor, sha2-256, 32 bytes (SPEC.md §3)


def sound(rid: bytes, header: bytes, payload: bytes | None) -> bool:
    """The scrub's cheap check: the header hashes to the id, and the payload's digest is among the header's bytes
    (the header holds the payload's CID, and no other 32 bytes of an intact header can equal the digest of other
    bytes than the payload's). False may still be sound (another CID form): `decode_stored_entry` decides."""
    return (rid == _DAG_CBOR_SHA256 + hashlib.sha256(header).digest()
            and (payload is None or hashlib.sha256(payload).digest() in header))
