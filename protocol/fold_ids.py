"""A ledger fold's entry ids (protocol/fold.py): each row's id and each id's row, off the Python heap.

The ids are packed in one bytearray, WIDTH bytes a row, and found by an open-addressing table of row numbers
(an array of C ints at most half full), instead of a bytes object per id, a list of them and a dict of them
(~160 B per entry at 100,000 entries; this keeps ~45). The table's probe sequence comes from the id's last 8
bytes, a sha2-256 digest's (double hashing: ids alike in a few bits, which anyone can grind, still take different
steps), so it is the same in every process and is pickled as it is: a few buffers, read back in the time of a
copy. An id of another width (not one Tally makes) is kept in a dict beside it.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from itertools import repeat
from operator import add, mul
from struct import Struct
from typing import Any, Final

WIDTH: Final = 36  # a CIDv1 sha2-256's binary form: every entry id
_EMPTY: Final = -1
_FIRST_SLOTS: Final = 16
_TAILS: Final = Struct(f"<{WIDTH - 8}xQ")  # a row's id's last 8 bytes, as a little-endian number


class Ids:
    """Row numbers 0, 1, 2... by id, in the order ids were added; only grows. The ids added since `settled` are
    in a dict too: a batch's own ids are most of what its fold looks up (~20 times per entry)."""

    __slots__ = ("_count", "_mask", "_odd", "_odd_rows", "_packed", "_recent", "_table")

    def __init__(self) -> None:
        self._packed = bytearray()  # row i's id at [i * WIDTH, (i + 1) * WIDTH) (zeros: an id of another width)
        self._table = array("i", [_EMPTY]) * _FIRST_SLOTS
        self._mask = _FIRST_SLOTS - 1
        self._count = 0
        self._odd: dict[bytes, int] = {}  # ids of another width -> row
        self._odd_rows: dict[int, bytes] = {}
        self._recent: dict[bytes, int] = {}

    def __len__(self) -> int:
        return self._count

    def find(self, raw: bytes) -> int:
        """Row of `raw`, or -1."""
        i = self._recent.get(raw)
        if i is not None:
            return i
        if len(raw) != WIDTH:
            return self._odd.get(raw, _EMPTY)
        # The slot and the (odd) step from the id's last 8 bytes, a sha2-256 digest's: double hashing
        x = int.from_bytes(raw[-8:], "little")
        mask, table, packed = self._mask, self._table, self._packed
        slot, step = x & mask, (x >> 40) | 1
        while True:
            i = table[slot]
            if i < 0 or packed.startswith(raw, i * WIDTH):  # compared in place: no bytes made
                return i
            slot = (slot + step) & mask

    def get(self, raw: bytes, default: int | None = None) -> int | None:
        i = self.find(raw)
        return default if i < 0 else i

    def __getitem__(self, raw: bytes) -> int:
        i = self.find(raw)
        if i < 0:
            raise KeyError(raw)
        return i

    def __contains__(self, raw: object) -> bool:
        return isinstance(raw, bytes) and self.find(raw) >= 0

    def id(self, i: int) -> bytes:
        """Row `i`'s id (a new bytes object each time: kept by no one here)."""
        if not 0 <= i < self._count:
            raise IndexError(i)
        odd = self._odd_rows.get(i) if self._odd_rows else None
        return bytes(self._packed[i * WIDTH : (i + 1) * WIDTH]) if odd is None else odd

    def first(self, n: int) -> Iterator[bytes]:
        """The ids of rows 0 to n - 1, sliced in C from a copy of the packed ids (a state's view's)."""
        if self._odd_rows:
            return map(self.id, range(n))
        with memoryview(self._packed) as packed:  # released at once: the bytearray may grow after
            data = bytes(packed[: n * WIDTH])
        return map(data.__getitem__, map(slice, range(0, n * WIDTH, WIDTH), range(WIDTH, (n + 1) * WIDTH, WIDTH)))

    def raws(self, rows: array[int]) -> list[bytes]:
        """The ids of `rows` (`id` of each, in C)."""
        if self._odd_rows:
            return list(map(self.id, rows))
        starts = list(map(mul, rows, repeat(WIDTH)))
        return list(map(bytes, map(self._packed.__getitem__, map(slice, starts, map(add, starts, repeat(WIDTH))))))

    def add(self, raw: bytes) -> int:
        """The next row, for an id not held (the caller checks)."""
        i = self._count
        if len(raw) == WIDTH:
            self._packed += raw  # before the table names it: a reader in another thread finds it whole
            if 2 * (i + 1) > len(self._table):
                self._grow()
            self._insert(self._table, self._mask, raw, i)
        else:
            self._packed += bytes(WIDTH)
            self._odd[raw] = i
            self._odd_rows[i] = raw
        self._recent[raw] = i
        self._count = i + 1
        return i

    def add_new(self, raw: bytes) -> int:
        """The next row for `raw`, or -1 if it is held: one probe finds it or the slot it takes (`add` after
        `find` probes twice)."""
        if len(raw) != WIDTH:
            return -1 if raw in self._odd else self.add(raw)
        i = self._count
        if 2 * (i + 1) > len(self._table):
            self._grow()
        x = int.from_bytes(raw[-8:], "little")
        mask, table, packed = self._mask, self._table, self._packed
        slot, step = x & mask, (x >> 40) | 1
        while True:
            j = table[slot]
            if j < 0:
                break
            if packed.startswith(raw, j * WIDTH):
                return -1
            slot = (slot + step) & mask
        packed += raw  # before the table names it: a reader in another thread finds it whole
        table[slot] = i
        self._recent[raw] = i
        self._count = i + 1
        return i

    def recent(self) -> dict[bytes, int]:
        """The ids added since `settled`, by row (read only: `find` looks there first)."""
        return self._recent

    def settled(self) -> None:
        """The ids added so far are looked up in the table alone from now on (the dict's bytes freed)."""
        self._recent = {}

    @staticmethod
    def _insert(table: array[int], mask: int, raw: bytes | bytearray, i: int) -> None:
        x = int.from_bytes(raw[-8:], "little")
        slot, step = x & mask, (x >> 40) | 1
        while table[slot] >= 0:
            slot = (slot + step) & mask
        table[slot] = i

    def reserve(self, n: int) -> None:
        """Room for `n` more ids: the table grown once, not once per doubling as they are added."""
        size = len(self._table)
        while 2 * (self._count + n) > size:
            size *= 2
        if size > len(self._table):
            self._grow(size)

    def _grow(self, size: int = 0) -> None:
        """A table twice the size (or `size`), every row put in it again; then it replaces the old one at once."""
        size = size or 2 * len(self._table)
        table, mask, odd = array("i", [_EMPTY]) * size, size - 1, self._odd_rows
        # Each id's last 8 bytes (what `_insert` reads) unpacked in C, not sliced out one at a time.
        for i, (x,) in enumerate(_TAILS.iter_unpack(bytes(self._packed[: self._count * WIDTH]))):
            if odd and i in odd:
                continue
            slot, step = x & mask, (x >> 40) | 1
            while table[slot] >= 0:
                slot = (slot + step) & mask
            table[slot] = i
        self._table, self._mask = table, mask

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (node/store/snapshots.py) as bytes: a snapshot names no class but protocol's."""
        return {"packed": bytes(self._packed), "table": self._table.tobytes(), "count": self._count,
                "odd": self._odd}  # `recent` left out: those ids are in the table too

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._packed = bytearray(state["packed"])
        self._table = array("i", state["table"])
        self._mask = len(self._table) - 1
        self._count = state["count"]
        self._odd = state["odd"]
        self._odd_rows = {i: raw for raw, i in self._odd.items()}
        self._recent = {}
