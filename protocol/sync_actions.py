"""The vocabulary between a sync engine (protocol/sync_engine.py) and the loop that drives it (SPEC §13).

What the driver tells the engine (a ledger's facts, what storing did) and what the engine asks of the driver
(the actions: send, read, verify, store, report, close). They carry no decision: the engine makes those.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .cid import CID
from .entry import Entry
from .fork import ForkProof
from .sync import Ents, Head, Message, Want

# ---- what the driver tells the engine ----------------------------------------------


@dataclass(frozen=True, slots=True)
class LedgerFacts:
    """What the node's store says of one ledger, as the engine needs it."""

    ledger: CID
    replicated: bool  # the node follows it or founded it
    genesis: bool  # the node holds its genesis
    visible: bool  # the peer may see it (SPEC §13.4); meaningful only with the genesis
    heads: Mapping[bytes, Head] = field(default_factory=dict)  # the node's frontier of it


@dataclass(frozen=True, slots=True)
class StoreResult:
    """What storing one `ents` message did to its chain."""

    head: Head | None  # the chain's head afterwards
    stored: int = 0
    gap_last: int | None = None  # the last seq left waiting beyond a gap
    bad_prev: tuple[int, ...] = ()  # seqs refused because their prev is another history


# ---- what the engine asks of the driver ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    message: Message


@dataclass(frozen=True, slots=True)
class Serve:
    """Read the run of `want` (consecutive entries from `want.start`, at most `want.limit`)."""

    want: Want


@dataclass(frozen=True, slots=True)
class Tail:
    """Read consecutive entries of a chain from `start` (at most WANT_MAX) to push them."""

    ledger: CID
    author: bytes
    start: int


@dataclass(frozen=True, slots=True)
class Verify:
    """Decode and verify the entries of an `ents` message (job numbers grow by one)."""

    job: int
    ents: Ents


@dataclass(frozen=True, slots=True)
class Store:
    """Offer verified entries to the store, in this order; answer with `stored(job, …)`."""

    job: int
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class CheckIds:
    """Which of these (author, seq, their id) differ from the node's entry at that seq?"""

    ledger: CID
    suspects: tuple[tuple[bytes, int, CID], ...]


@dataclass(frozen=True, slots=True)
class AnswerOwn:
    """The peer asks for the heads of its own chains: answer with `own_heads`."""


@dataclass(frozen=True, slots=True)
class KeepFork:
    """A checked fork proof of a ledger the node replicates: keep it if its author is known there."""

    proof: ForkProof


@dataclass(frozen=True, slots=True)
class Report:
    """Something for the node's peer table or log: `synced`, `behind`, `restored`, `done`, `peer_err`."""

    what: str
    value: int = 0
    text: str = ""


@dataclass(frozen=True, slots=True)
class Close:
    """End the link: `code` None for a normal end, else the peer's violation."""

    code: str | None
    message: str


Rows = Sequence[tuple[int, bytes, bytes | None]]  # (seq, header, payload) read from the store
Action = Send | Serve | Tail | Verify | Store | CheckIds | AnswerOwn | KeepFork | Report | Close
