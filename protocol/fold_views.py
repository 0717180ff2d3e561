"""What a ledger fold (protocol/fold.py) keeps for its states to show: each entry's status as a one-byte code
(`StatusView`), the digest's buckets (`Buckets`) and the contributions by author (`ByAuthor`)."""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from typing import Any, Final

from .fold_ids import Ids
from .state import (
    CONFLICTING,
    CORRECTED,
    DIGEST_BUCKETS,
    EMPTY_BUCKET_DIGEST,
    ERASED,
    FINAL,
    IGNORED,
    INVALID,
    PENDING,
    QUARANTINED,
    REJECTED,
    VALID,
    WAITING,
    Contribution,
    bucket_digest,
)

#: every status an entry can have, by its one-byte code in a fold
STATUSES: Final = (VALID, INVALID, WAITING, QUARANTINED, IGNORED, CONFLICTING, ERASED, FINAL, PENDING, REJECTED,
                    CORRECTED)
CODES: Final = {status: code for code, status in enumerate(STATUSES)}


def _by_author(c: Contribution) -> tuple[str, int, bytes]:
    return c.author, c.seq, c.id.raw


class ByAuthor:
    """The contributions by (author, seq, id), read often and changed a few at a time: changes merge in at the
    next read, so a read after one new entry costs a bisect and a copy of the list, not a sort. The list is its
    own key (`_by_author`): no key kept per contribution."""

    def __init__(self) -> None:
        self._values: list[Contribution] = []
        self._changed: dict[bytes, Contribution] = {}  # by id

    def put(self, c: Contribution) -> None:
        self._changed[c.id.raw] = c

    def values(self) -> list[Contribution]:
        values, changed = self._values, self._changed
        if len(changed) > 64 and len(changed) > len(values) // 64:  # many: one sort beats many inserts
            kept = [c for c in values if c.id.raw not in changed]
            kept += changed.values()
            kept.sort(key=_by_author)
            self._values = kept
        else:
            for c in changed.values():
                key = _by_author(c)
                i = bisect_left(values, key, key=_by_author)
                if i < len(values) and values[i].id.raw == c.id.raw:
                    values[i] = c
                else:
                    values.insert(i, c)
        changed.clear()
        return self._values


class StatusView(Mapping[bytes, str]):
    """A state's entry id -> status map, as the fold had it then: the fold's ids (which only grow) and a copy of
    its one-byte status codes, so a state after one new entry copies a byte per entry, not a dict."""

    __slots__ = ("_codes", "_ids")

    def __init__(self, ids: Ids, codes: bytes) -> None:
        self._ids, self._codes = ids, codes

    def __getitem__(self, raw: bytes) -> str:
        i = self._ids[raw]
        if i >= len(self._codes):  # added to the fold after this state
            raise KeyError(raw)
        return STATUSES[self._codes[i]]

    def __len__(self) -> int:
        return len(self._codes)

    def __iter__(self) -> Iterator[bytes]:
        return self._ids.first(len(self._codes))  # ids the fold only appends to: safe beside it

    def coded(self) -> tuple[tuple[str, ...], Iterator[tuple[bytes, int]]]:
        """The names of the statuses, and each id with its status's number among them, in this view's order:
        what a snapshot saves (node/store/snapshots.py), read in order rather than looked up a million times."""
        return STATUSES, zip(self, self._codes, strict=True)

    def __repr__(self) -> str:
        return f"StatusView({len(self)} entries)"


class Buckets:
    """The digest's buckets (SPEC.md §16.7): each bucket's rows sorted by id, and its digest kept until an entry
    in it is added or changes status; after one new entry one bucket of the 256 is hashed again."""

    def __init__(self) -> None:
        # only the buckets holding ids (a small ledger's are few: the state tests fold thousands of them)
        self._rows: dict[int, array[int]] = {}
        self._new: dict[int, array[int]] = {}
        self._digests: list[bytes] = [EMPTY_BUCKET_DIGEST] * DIGEST_BUCKETS
        self._stale: set[int] = set()  # buckets to hash again

    def add(self, raw: bytes, row: int) -> None:
        new = self._new.get(raw[-1])
        if new is None:
            self._new[raw[-1]] = array("i", (row,))
        else:
            new.append(row)
        self._stale.add(raw[-1])

    def changed(self, raw: bytes) -> None:
        self._stale.add(raw[-1])

    def digests(self, ids: Ids, codes: bytearray) -> list[bytes]:
        """Each bucket's digest: its ids made again from the fold's (a million-entry ledger's bucket holds ~4,000),
        its statuses looked up in C."""
        for b in self._stale:
            rows = self._rows.get(b, array("i"))
            new = self._new.pop(b, None)
            if new:
                rows += new
            raws = ids.raws(rows)
            if new:
                order = sorted(range(len(raws)), key=raws.__getitem__)  # a sorted run and a few more: linear
                raws = list(map(raws.__getitem__, order))
                rows = array("i", map(rows.__getitem__, order))
            self._rows[b] = rows
            self._digests[b] = bucket_digest(raws, list(map(STATUSES.__getitem__, map(codes.__getitem__, rows))))
        self._stale.clear()
        return list(self._digests)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (node/store/snapshots.py) with its rows as bytes: a snapshot names no class but protocol's."""
        return {**vars(self), "_rows": _packed(self._rows), "_new": _packed(self._new)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state)
        self._rows, self._new = _unpacked(state["_rows"]), _unpacked(state["_new"])


def _packed(arrays: dict[int, array[int]]) -> dict[int, bytes]:
    return {b: rows.tobytes() for b, rows in arrays.items()}


def _unpacked(packed: dict[int, bytes]) -> dict[int, array[int]]:
    return {b: array("i", rows) for b, rows in packed.items()}
