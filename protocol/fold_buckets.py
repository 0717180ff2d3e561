"""A ledger fold's digest buckets (protocol/fold.py; SPEC.md §16.7)."""

from __future__ import annotations

from array import array
from typing import Any

from .fold_ids import Ids
from .fold_views import STATUSES
from .state import DIGEST_BUCKETS, EMPTY_BUCKET_DIGEST, bucket_digest


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
