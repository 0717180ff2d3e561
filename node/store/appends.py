"""Local appends: group-committed and pipelined, for the store (node/store/store.py hands them over).

Appends that arrive while others are being written are written together, at most GROUP_MAX to a transaction,
one fsync for each group. While the writer thread commits one group, a signer thread makes the next (payloads,
headers, signatures, rows) on the chain heads the one before will leave (`sign_ahead`). Each group's transaction
(`commit_group`) reads its chains' heads under the write lock and builds again what was signed on a head that
turned out otherwise, so no other process can take a seq meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from node.store.rows import BY_ID, entry_row, idh
from node.store.schema import Transaction
from node.store.transactions import head_in, insert_entries
from protocol import (
    CID,
    GENESIS_KIND,
    ChainHead,
    Entry,
    LocalError,
    Payload,
    SigningKey,
    TallyError,
    create_entry,
    create_entry_with,
)
from protocol.writes import AppendRequest

log = logging.getLogger(__name__)

GROUP_MAX: Final = 1000  # appends per transaction
#: A group this small with nothing in flight goes to the writer in one hop (a lone append: no hops to add to its
#: fsync); a larger one starts the pipeline, so the group after it is signed while it commits.
DIRECT_MAX: Final = 64


# ---- on the threads: payloads, signing ahead, the group's transaction ------------------------------------


@dataclass(frozen=True, slots=True)
class Signed:
    """A group of local appends as signed ahead of its transaction (`sign_ahead`), one item per request: its entry
    (or the error its request raised) built on the chain head the store expected, or None where no head was known
    (the transaction builds it), and each entry's row. `expected` is the head each pre-signed chain was built on,
    `after` its head once the group's entries follow it."""

    items: list[Entry | TallyError | None]
    expected: dict[bytes, ChainHead]
    after: dict[bytes, ChainHead]
    rows: list[tuple[Any, ...] | None]


@dataclass(frozen=True, slots=True)
class Committed:
    """What a group's transaction made: a result per request, each chain's head after it (by ledger), and the
    chains whose expected head was not the stored one (their entries were built again under the lock)."""

    results: list[Entry | TallyError]
    heads: dict[bytes, ChainHead]
    stale: frozenset[bytes]


def sign_ahead(key: SigningKey, requests: list[AppendRequest], heads: dict[bytes, ChainHead], now: int) -> Signed:
    """Build and sign `requests` on `heads` (each ledger's expected head of `key`'s chain), with their rows (stored
    at `now`), outside any transaction: the signer thread does this while the writer commits the group before.
    Nothing here is stored or shown until `commit_group` finds the stored heads are the expected ones.

    All of an entry's making is here, payload included, on one thread: the writer's thread holds the interpreter
    lock only to hand SQLite a row, so this thread gets it back as soon as libsodium returns (a third thread running
    Python, as payloads were made before, keeps the signer waiting for it)."""
    items: list[Entry | TallyError | None] = []
    rows: list[tuple[Any, ...] | None] = []
    expected: dict[bytes, ChainHead] = {}
    last: dict[bytes, tuple[int, CID, int]] = {}  # seq, id and ts of each chain's latest entry so far
    for req in requests:
        ledger = req.ledger
        head = None if ledger is None else heads.get(ledger.raw)
        if ledger is None or head is None:
            items.append(None)  # a genesis, or a chain whose head only the transaction can read
            rows.append(None)
            continue
        lk = ledger.raw
        at = last.get(lk)
        if at is None:
            expected[lk] = head
            at = (head.seq, head.id, head.ts)
        try:
            # ts never goes below prev's: a clock stepped back must not make an invalid entry.
            entry = create_entry_with(key, ledger=ledger, seq=at[0] + 1, prev=at[1], ts=max(req.ts, at[2]),
                                      kind=req.kind, payload=Payload.of(req.body))
        except TallyError as exc:
            last[lk] = at
            items.append(exc)
            rows.append(None)
            continue
        last[lk] = (at[0] + 1, entry.id, entry.header.ts)
        items.append(entry)
        rows.append(entry_row(entry, now))
    after = {lk: ChainHead(key.public_key, CID(lk), *at) for lk, at in last.items()}
    return Signed(items, expected, after, rows)


def commit_group(
    db: sqlite3.Connection, key: SigningKey, requests: list[AppendRequest], signed: Signed, now: int
) -> Committed:
    """Store a group of local appends in one transaction. Each chain's head is read under the write lock (no
    other process can take a seq meanwhile): where it is the head `signed` was built on, its entries stand;
    where not (another process appended, an earlier group failed), the chain's requests are built again here."""
    results: list[Entry | TallyError] = []
    rows = []
    heads: dict[bytes, ChainHead | None] = {}
    trusted: dict[bytes, bool] = {}
    ledgers: dict[bytes, bool] = {}  # the ledger check, once per ledger in the group
    with Transaction(db):
        for req, item, row in zip(requests, signed.items, signed.rows, strict=True):
            if row is not None and req.ledger is not None and trusted.get(req.ledger.raw):
                assert isinstance(item, Entry)  # a row is made for an entry only
                rows.append(row)  # as signed, its chain checked at its first entry here (below): the usual case
                results.append(item)
                continue
            try:
                if req.ledger is None:
                    entry = _next_entry(key, req, None)
                    ledgers[entry.id.raw] = True  # appends later in this group may write to it
                else:
                    lk = req.ledger.raw
                    if lk not in ledgers:
                        found = db.execute(f"SELECT kind FROM entries WHERE {BY_ID}",
                                           (idh(req.ledger), lk)).fetchone()
                        ledgers[lk] = found is not None and found[0] == GENESIS_KIND
                    if not ledgers[lk]:
                        raise LocalError("unknown_ledger", f"no ledger {req.ledger} is stored here")
                    if lk not in heads:
                        heads[lk] = head_in(db, req.ledger, key.public_key)
                        trusted[lk] = lk in signed.expected and heads[lk] == signed.expected[lk]
                    if trusted[lk] and item is not None:  # as signed: its chain's head is `signed.after` below
                        if isinstance(item, TallyError):
                            raise item
                        rows.append(entry_row(item, now) if row is None else row)
                        results.append(item)
                        continue
                    entry = _next_entry(key, req, heads[lk])
            except TallyError as exc:
                results.append(exc)
                continue
            heads[entry.ledger_id.raw] = ChainHead.of(entry)
            rows.append(entry_row(entry, now))
            results.append(entry)
        insert_entries(db, rows)
    heads.update({lk: signed.after[lk] for lk, ok in trusted.items() if ok and lk in signed.after})
    stale = frozenset(lk for lk in signed.expected if not trusted.get(lk, True))
    return Committed(results, {lk: h for lk, h in heads.items() if h is not None}, stale)


def _next_entry(key: SigningKey, req: AppendRequest, head: ChainHead | None) -> Entry:
    if head is None:
        return create_entry(key, ledger=req.ledger, seq=1, prev=None, ts=req.ts, kind=req.kind, body=req.body)
    # ts never goes below prev's: a clock stepped back must not make an invalid entry.
    return create_entry(
        key, ledger=req.ledger, seq=head.seq + 1, prev=head.id, ts=max(req.ts, head.ts), kind=req.kind, body=req.body
    )


# ---- on the event loop: the queue and the pipeline -----------------------------------------------------


@dataclass(slots=True)
class _Pending:
    """One caller's batch of appends (at most GROUP_MAX): its results come together, each an entry or an error."""

    requests: list[AppendRequest]
    future: asyncio.Future[list[Entry | TallyError]] = field(repr=False)


class _Signing(NamedTuple):
    """A group on the signer thread."""

    number: int
    group: list[_Pending]
    requests: list[AppendRequest]
    future: asyncio.Future[Signed]


@dataclass(slots=True)
class _Commit:
    """A signed group in (or queued for) its transaction on the writer thread."""

    number: int
    group: list[_Pending]
    requests: list[AppendRequest]
    future: asyncio.Future[Committed] = field(repr=False)
    direct: bool = False  # built and signed in its transaction: the heads it leaves are known once it commits


def _fail(p: _Pending, exc: Exception) -> None:
    if not p.future.done():
        log.error("append failed: %s", exc)
        p.future.set_exception(exc)


class AppendPipeline:
    """The store's local appends: queued, grouped, signed ahead and committed in order. See the module docstring."""

    def __init__(
        self, writer: sqlite3.Connection, key: SigningKey | None, clock_ms: Callable[[], int],
        write_thread: ThreadPoolExecutor, sign_thread: ThreadPoolExecutor,
        announce: Callable[[Sequence[Entry]], None],
    ) -> None:
        self._wdb = writer  # used only on write_thread
        self._wx = write_thread
        self._key = key
        self._clock_ms = clock_ms
        self._sx = sign_thread
        self._announce = announce  # the committed entries, in commit order
        self._queue: deque[_Pending] = deque()
        self._writer: asyncio.Task[None] | None = None
        #: The head each of this key's chains (by ledger) will have once every group signed so far commits: the
        #: next group is signed on it, ahead of its transaction (which checks it). Absent: read under the lock.
        self._heads: dict[bytes, ChainHead] = {}
        self._signed_by: dict[bytes, int] = {}  # the latest group signed on each chain, by number
        self._number = 0  # groups signed so far

    async def append(self, requests: Sequence[AppendRequest]) -> list[Entry]:
        """Append local entries in order; returns once all are durably committed (see Store.append_batch)."""
        loop = asyncio.get_running_loop()
        # One future per GROUP_MAX requests, not one per request: a bulk import makes few.
        pendings = [_Pending(list(requests[i : i + GROUP_MAX]), loop.create_future())
                    for i in range(0, len(requests), GROUP_MAX)]
        self._queue.extend(pendings)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        made: list[Entry] = []
        for p in pendings:
            for result in await p.future:
                if not isinstance(result, Entry):
                    raise result
                made.append(result)
        return made

    async def finish(self) -> None:
        """Wait for the appends in flight to commit (before the store closes)."""
        if self._writer is not None:
            await asyncio.shield(self._writer)

    def _take_group(self) -> list[_Pending]:
        """Queued appends for one transaction: whole batches, at most GROUP_MAX requests (at least one batch)."""
        group: list[_Pending] = []
        size = 0
        while self._queue and (not group or size + len(self._queue[0].requests) <= GROUP_MAX):
            p = self._queue.popleft()
            if not p.future.done():  # its caller left before it was signed: nothing of it is made
                group.append(p)
                size += len(p.requests)
        return group

    async def _drain(self) -> None:
        """Commit queued appends, up to GROUP_MAX per transaction, until none are left.

        A pipeline of two threads: while the writer commits group N, the signer makes group N+1 (payloads, headers,
        signatures, rows) on the chain heads group N will leave (libsodium, hashing and SQLite release the GIL, so
        they overlap). Each group's transaction reads its chains' heads under the write lock and builds again what
        was signed on a head that turned out otherwise, so no other process can take a seq meanwhile. A small group
        that finds nothing in flight to overlap with (a lone append) is built, signed and committed in one hop to
        the writer, under the write lock, and the groups after it are signed once it has committed. A group's
        callers hear of it only once it is committed (one future per batch); the event loop stays free throughout.
        """
        loop = asyncio.get_running_loop()
        commits: deque[_Commit] = deque()
        signing: _Signing | None = None  # the group on the signer thread
        while True:
            if signing is not None and signing.future.done():
                number, group, requests, future = signing
                signing = None
                try:
                    signed = future.result()
                except Exception as exc:  # not a TallyError (those are per request): a bug, or memory
                    for p in group:
                        _fail(p, exc)
                else:
                    assert self._key is not None
                    self._heads.update(signed.after)  # what the next group is built on
                    commits.append(_Commit(number, group, requests, loop.run_in_executor(
                        self._wx, commit_group, self._wdb, self._key, requests, signed, self._clock_ms())))
            # sign the next group while at most one commits (at once: the signer is what the pipeline waits on)
            if signing is None and self._queue and len(commits) < 2 and not any(c.direct for c in commits):
                group = self._take_group()
                if not group:
                    continue
                if self._key is None:
                    for p in group:
                        _fail(p, LocalError("no_identity", "this store was opened without a signing key"))
                    continue
                requests = [r for p in group for r in p.requests]
                if not commits and len(requests) <= DIRECT_MAX:
                    number = self._signing(requests)
                    unsigned = Signed([None] * len(requests), {}, {}, [None] * len(requests))
                    commits.append(_Commit(number, group, requests, loop.run_in_executor(
                        self._wx, commit_group, self._wdb, self._key, requests, unsigned, self._clock_ms()), True))
                    continue
                # numbered now: a group that commits meanwhile leaves the heads this one is signed on to it
                signing = _Signing(self._signing(requests), group, requests, loop.run_in_executor(
                    self._sx, sign_ahead, self._key, requests, dict(self._heads), self._clock_ms()))
            while commits and commits[0].future.done():
                self._settle(commits.popleft())
            waiting: list[asyncio.Future[Any]] = [] if signing is None else [signing.future]
            if commits:
                waiting.append(commits[0].future)
            if not waiting:
                if self._queue:
                    continue
                return
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)

    def _signing(self, requests: list[AppendRequest]) -> int:
        """Number the next group to be signed, as the latest signed on each chain it writes to."""
        self._number += 1
        for lk in {r.ledger.raw for r in requests if r.ledger is not None}:
            self._signed_by[lk] = self._number
        return self._number

    def _settle(self, commit: _Commit) -> None:
        """Hand a committed (or failed) group's results to its callers, and learn its chains' heads."""
        touched = {r.ledger.raw for r in commit.requests if r.ledger is not None}
        try:
            done: Committed = commit.future.result()
        except Exception as exc:
            for lk in touched:  # what was signed on this group's heads is built again under the lock
                self._heads.pop(lk, None)
            for p in commit.group:
                _fail(p, exc)
            return
        for lk in touched | done.heads.keys():
            if lk in done.stale:
                self._heads.pop(lk, None)
            if self._signed_by.get(lk, commit.number) == commit.number:  # no later group signed on it yet
                head = done.heads.get(lk)
                if head is None:
                    self._heads.pop(lk, None)
                else:
                    self._heads[lk] = head
        at = 0
        for p in commit.group:
            results = done.results[at : at + len(p.requests)]
            at += len(p.requests)
            if not p.future.done():  # else its caller was cancelled while the group committed: the entries stand
                p.future.set_result(results)
        self._announce([r for r in done.results if isinstance(r, Entry)])


__all__ = [
    "DIRECT_MAX", "GROUP_MAX", "AppendPipeline", "Committed", "Signed", "commit_group", "sign_ahead",
]
