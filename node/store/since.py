"""The entries stored after a ledger's last state while it catches up (node/store/states.py `LedgerStates`).

A write built against that state reads every one of them (node/store/writes.py `unread_by`), so they are kept whole
while they are few; past that bound a write waits for the current state, but a page still shows the last state
(`LedgerStates.shown`), naming the newest few and counting the rest: so only how many there are and the newest
NEWEST are kept, and what a ledger catching up holds stays bounded however many entries arrive meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from protocol import Entry

#: The newest entries kept once there are more than a write reads (a page names a few of them: node/web/behind.py).
NEWEST: Final = 16


class Since:
    """The entries stored after a last state: all of them while at most `limit`, then their count and the newest."""

    __slots__ = ("_entries", "_limit", "count")

    def __init__(self, limit: int) -> None:
        self._entries: list[Entry] = []  # oldest first: all of them, or (past `limit`) the newest
        self._limit = limit
        self.count = 0

    def add(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            self._entries.append(entry)
            self.count += 1
        if self.count > self._limit and len(self._entries) > 2 * NEWEST:  # cut now and then, not per entry
            del self._entries[:-NEWEST]

    def every(self) -> list[Entry] | None:
        """Every entry stored since, oldest first, or None when there are more than `limit` (a write waits then)."""
        return self._entries if self.count <= self._limit else None

    def held(self) -> int:
        """How many entries it holds: at most `limit` or 2 * NEWEST (whichever is more), plus the last batch added."""
        return len(self._entries)

    def newest(self) -> tuple[Entry, ...]:
        """The newest of them (up to NEWEST), oldest first."""
        return tuple(self._entries[-NEWEST:])
