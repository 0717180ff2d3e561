"""Chain rules: how an entry links to the one before it in its author's chain.

A chain is one author's entries in one ledger, seq 1, 2, 3 … each linking the
previous header by CID. The genesis entry is seq 1 of its founder's chain in
the ledger it founds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .cid import CID
from .entry import Entry
from .errors import InvalidData


@dataclass(frozen=True, slots=True)
class ChainHead:
    """What the next entry of a chain is checked against: its latest entry, summarized."""

    author: bytes
    ledger: CID
    seq: int
    id: CID
    ts: int

    @classmethod
    def of(cls, entry: Entry) -> ChainHead:
        return cls(entry.header.author, entry.ledger_id, entry.seq, entry.id, entry.header.ts)


def check_next(head: ChainHead | None, entry: Entry) -> None:
    """Raise unless `entry` may follow `head` (None: the chain is empty)."""
    if head is None:
        if entry.seq != 1:
            raise InvalidData("seq_gap", f"entry {entry.id} has seq {entry.seq} but the chain is empty")
        return
    if entry.header.author != head.author:
        raise InvalidData("wrong_author", f"entry {entry.id} is by another author than its chain")
    if entry.ledger_id != head.ledger:
        raise InvalidData(
            "wrong_ledger", f"entry {entry.id} is in ledger {entry.ledger_id}, its chain in {head.ledger}"
        )
    if entry.seq != head.seq + 1:
        raise InvalidData("seq_gap", f"entry {entry.id} has seq {entry.seq}, expected {head.seq + 1}")
    if entry.header.prev != head.id:
        raise InvalidData("bad_prev", f"entry {entry.id} links prev {entry.header.prev}, expected {head.id}")
    if entry.header.ts < head.ts:
        raise InvalidData("ts_regression", f"entry {entry.id} has ts {entry.header.ts} < {head.ts}")


def verify_chain(entries: Iterable[Entry], head: ChainHead | None = None) -> ChainHead | None:
    """Check that `entries` extend `head` link by link; return the new head."""
    for entry in entries:
        check_next(head, entry)
        head = ChainHead.of(entry)
    return head
