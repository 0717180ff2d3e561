"""A state's entry id -> status map as a snapshot keeps it (`KeptStatus`): the map that grows with the ledger, in
two bytes objects rather than a dict, so that a million-entry state reads back in the time of a copy and a few
passes in C, makes no object per entry, and takes 37 MB instead of ~150 MB (node/store/snapshots.py keeps it). The
next one of a fold's later state is made from the last (`Sorting`): only the ids added since are sorted in."""

from __future__ import annotations

import itertools
import operator
import pickle
import threading
from array import array
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from typing import Any

from protocol.fold import StatusView
from protocol.state import DIGEST_BUCKETS, EMPTY_BUCKET_DIGEST, bucket_digest, bucket_digest_coded


class Abandoned(Exception):
    """A save was given up (the fold is about to change, or the node is stopping)."""


class KeptStatus(Mapping[bytes, str]):
    """A state's entry id -> status map as a snapshot keeps it: every id in one bytes object (`ids`, each `width`
    bytes), grouped by the digest's bucket (an id's last byte, SPEC.md §16.7) and sorted within it (bucket `b`
    holds ids `bounds[b]` to `bounds[b + 1]`), and one byte per id naming its status in `names`. A lookup is a
    bisect within its bucket; nothing is made per entry until asked for."""

    __slots__ = ("bounds", "codes", "ids", "names", "width")

    def __init__(self, width: int, names: tuple[str, ...], bounds: tuple[int, ...], ids: bytes, codes: bytes) -> None:
        self.width, self.names, self.bounds, self.ids, self.codes = width, names, bounds, ids, codes

    @classmethod
    def of(cls, status: Mapping[bytes, str], stop: threading.Event | None = None) -> KeptStatus:
        """`status` kept so; `Abandoned` once `stop` is set (looked at between buckets); ValueError if its ids
        are not all of one width (every entry id Tally makes is 36 bytes) or it has more than 256 statuses."""
        return cls.sorted_of(status, stop)[0]

    @classmethod
    def sorted_of(cls, status: Mapping[bytes, str], stop: threading.Event | None = None,
                  since: Sorting | None = None) -> tuple[KeptStatus, Sorting | None]:
        """`of`, and for a fold's `StatusView` where each id was found in it (`Sorting`); with `since`, made from a
        view of the same fold before this one, only the ids added since are sorted in (a million-entry state's
        save: ~0.1 s, against ~1 s sorting every id again), and every status is read again."""
        if isinstance(status, StatusView):
            names, pairs = status.coded()
            if since is not None and since.continued_by(status, names):
                return since.grown(status, pairs, stop)
            placed = True  # where each id is in the view is kept too
        else:
            names = tuple(sorted(set(status.values())))
            pairs = zip(status, map({name: i for i, name in enumerate(names)}.__getitem__, status.values()),
                        strict=True)
            placed = False
        # Each bucket's ids and codes side by side, not as pairs: a million pairs, sorted, then freed at once,
        # held the interpreter lock for ~2 s (under load) just to free them.
        group_ids: list[list[bytes] | None] = [[] for _ in range(DIGEST_BUCKETS)]
        group_codes = [bytearray() for _ in range(DIGEST_BUCKETS)]
        group_at = [array("i") for _ in range(DIGEST_BUCKETS)]
        add_id = [group.append for group in group_ids if group is not None]
        add_code = [group.append for group in group_codes]
        add_at = [group.append for group in group_at]
        if not placed:
            for raw, code in pairs:  # a Python loop: the interpreter lock changes hands meanwhile
                add_id[raw[-1]](raw)
                add_code[raw[-1]](code)
        else:
            for i, (raw, code) in enumerate(pairs):
                add_id[raw[-1]](raw)
                add_code[raw[-1]](code)
                add_at[raw[-1]](i)
        del add_id, add_code, add_at
        width = len(next(iter(status), b"")) or 36
        bounds, ids, codes, at = [0], [], [], array("i")
        for b in range(DIGEST_BUCKETS):
            if stop is not None and stop.is_set():
                raise Abandoned
            group, group_ids[b] = group_ids[b] or [], None
            if not group:  # most buckets of a small ledger's state
                bounds.append(bounds[-1])
                continue
            order = sorted(range(len(group)), key=group.__getitem__)  # by id: no two alike
            ids.append(b"".join(map(group.__getitem__, order)))
            codes.append(bytes(map(group_codes[b].__getitem__, order)))
            if placed:
                at.extend(map(group_at[b].__getitem__, order))
            bounds.append(bounds[-1] + len(group))
            if len(ids[-1]) != width * len(group) or set(map(len, group)) - {width}:
                raise ValueError("entry ids of more than one width")
        kept = cls(width, names, tuple(bounds), b"".join(ids), b"".join(codes))
        if not placed or not len(kept):
            return kept, None
        return kept, Sorting(kept, at, kept._at(at.index(len(kept) - 1)))

    def _at(self, i: int) -> bytes:
        return self.ids[i * self.width : (i + 1) * self.width]

    def __getitem__(self, raw: bytes) -> str:
        if len(raw) != self.width or not raw:
            raise KeyError(raw)
        lo, hi = self.bounds[raw[-1]], self.bounds[raw[-1] + 1]
        i = bisect_left(range(hi), raw, lo, hi, key=self._at)
        if i == hi or self._at(i) != raw:
            raise KeyError(raw)
        return self.names[self.codes[i]]

    def __len__(self) -> int:
        return len(self.codes)

    def __iter__(self) -> Iterator[bytes]:  # bucket by bucket
        return self._slice(0, len(self.codes))

    def _slice(self, lo: int, hi: int) -> Iterator[bytes]:
        w = self.width
        return map(self.ids.__getitem__, map(slice, range(lo * w, hi * w, w), range((lo + 1) * w, (hi + 1) * w, w)))

    def __repr__(self) -> str:
        return f"KeptStatus({len(self)} entries)"

    def __reduce__(self) -> tuple[Any, ...]:
        return (kept_status, (self.width, self.names, self.bounds, self.ids, self.codes))

    def bucket_digests(self) -> list[bytes] | None:
        """The digest's 256 bucket digests, or None if its parts do not fit together. That the ids are where they
        claim to be (each in the bucket of its last byte, sorted, no two alike: what a lookup needs) is not looked
        at here: the state's digest made from these is compared with the one saved, and no other order hashes
        the same. In C but for a loop per bucket."""
        w, n, bounds = self.width, len(self.codes), self.bounds
        if (w < 1 or len(self.ids) != n * w or len(bounds) != DIGEST_BUCKETS + 1 or bounds[0] != 0 or bounds[-1] != n
                or not all(map(operator.le, bounds, bounds[1:])) or (n and max(self.codes) >= len(self.names))
                or not all(type(s) is str for s in self.names)):
            return None
        digests = [EMPTY_BUCKET_DIGEST] * DIGEST_BUCKETS
        ids, name = self.ids, self.names.__getitem__
        for b in range(DIGEST_BUCKETS):
            lo, hi = bounds[b], bounds[b + 1]
            if lo == hi:
                continue
            group = [ids[i : i + w] for i in range(lo * w, hi * w, w)]
            digests[b] = (bucket_digest_coded(group, self.codes[lo:hi], self.names) if w == 36
                          else bucket_digest(group, list(map(name, self.codes[lo:hi]))))
        return digests


class Sorting:
    """Where a KeptStatus made from a fold's `StatusView` found each of its ids in that view (`at`: the view's
    index of each id, in the kept order). A fold's view only grows at its end (protocol/fold.py: its ids are a list
    the fold only appends to), so a later view of the same fold holds these ids where they were, and the ids
    after them are the ones added since: the caller keeps a Sorting with the fold it came from, and `continued_by`
    checks the count and the last id's place besides."""

    __slots__ = ("at", "kept", "last")

    def __init__(self, kept: KeptStatus, at: array[int], last: bytes) -> None:
        self.kept, self.at, self.last = kept, at, last  # last: the view's id at index len(kept) - 1

    def continued_by(self, view: StatusView, names: tuple[str, ...]) -> bool:
        n = len(self.kept)
        return (names == self.kept.names and len(view) >= n
                and next(itertools.islice(iter(view), n - 1, n), None) == self.last)

    def grown(self, view: StatusView, pairs: Iterator[tuple[bytes, int]], stop: threading.Event | None
              ) -> tuple[KeptStatus, Sorting]:
        """The KeptStatus of `view` (which continues this one's): the ids added since sorted into their buckets,
        the others where they were, every status read again from the view."""
        kept, w, n = self.kept, self.kept.width, len(self.kept)
        coded = bytes(map(operator.itemgetter(1), pairs))  # every status, by view index
        added: dict[int, list[tuple[bytes, int]]] = {}
        for i, raw in enumerate(itertools.islice(iter(view), n, None), n):
            if len(raw) != w:
                raise ValueError("entry ids of more than one width")
            added.setdefault(raw[-1], []).append((raw, i))
        bounds, ids, at = [0], [], array("i")
        for b in range(DIGEST_BUCKETS):
            if stop is not None and stop.is_set():
                raise Abandoned
            lo, hi = kept.bounds[b], kept.bounds[b + 1]
            more = added.get(b)
            if more is None:
                ids.append(kept.ids[lo * w : hi * w])
                at.extend(self.at[lo:hi])
            else:
                group = [*kept._slice(lo, hi), *(raw for raw, _ in more)]
                where = [*self.at[lo:hi], *(i for _, i in more)]
                order = sorted(range(len(group)), key=group.__getitem__)
                ids.append(b"".join(map(group.__getitem__, order)))
                at.extend(map(where.__getitem__, order))
            bounds.append(bounds[-1] + len(ids[-1]) // w)
        grown = KeptStatus(w, kept.names, tuple(bounds), b"".join(ids), bytes(map(coded.__getitem__, at)))
        return grown, Sorting(grown, at, grown._at(at.index(len(grown) - 1)))


def kept_status(width: int, names: tuple[str, ...], bounds: tuple[int, ...], ids: bytes, codes: bytes) -> KeptStatus:
    """A KeptStatus from its parts (unpickling): its checks are `bucket_digests`."""
    if not (type(width) is int and type(names) is tuple and type(bounds) is tuple and type(ids) is bytes
            and type(codes) is bytes):
        raise pickle.UnpicklingError("not a kept status")
    return KeptStatus(width, names, bounds, ids, codes)
