"""The canonical order of a group of a ledger fold's entries (protocol/fold.py): the (ts, id)-greedy topological
order, by each entry's (ts, id) (`key`) and the ids it depends on (`deps`)."""

from __future__ import annotations

import heapq
from collections.abc import Callable

Key = Callable[[bytes], tuple[int, bytes]]
Deps = Callable[[bytes], list[bytes]]


def greedy(group: list[bytes], key: Key, deps: Deps) -> list[bytes]:
    """The (ts, id)-greedy topological order of `group`, whose outside dependencies are placed."""
    ordered = sorted(map(key, group))
    # When the (ts, id) order is a topological order (every dependency in the group before what names it:
    # entries written in time order, the usual case), the greedy order is that order: the smallest entry
    # left is always ready.
    inside = set(group)
    for k in ordered:
        for dep in deps(k[1]):
            if dep in inside and key(dep) > k:
                return kahn(group, inside, key, deps)
    return [raw for _, raw in ordered]


def kahn(group: list[bytes], inside: set[bytes], key: Key, deps: Deps) -> list[bytes]:
    """Kahn's algorithm with a (ts, id) heap over `group` (`inside`: its entries)."""
    count: dict[bytes, int] = {}
    dependents: dict[bytes, list[bytes]] = {}
    heap: list[tuple[int, bytes]] = []
    for raw in group:
        n = 0
        for dep in deps(raw):
            if dep in inside:
                dependents.setdefault(dep, []).append(raw)
                n += 1
        count[raw] = n
        if not n:
            heap.append(key(raw))
    heapq.heapify(heap)
    out: list[bytes] = []
    while heap:
        _, raw = heapq.heappop(heap)
        out.append(raw)
        for child in dependents.get(raw, ()):
            count[child] -= 1
            if not count[child]:
                heapq.heappush(heap, key(child))
    return out
