"""Rejection notes reach their author at a cost that does not grow with the rejecters' chains.

The notes are kept with the ledger's state (protocol/state.py, `Contribution.reject_notes`), so the history and
the validation queue read no chain to show them: the same store reads whether the rejecter wrote 10 entries or
2,000. Real store (SQLite), the dashboard over a loopback socket, the node's own key as the author.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from loopback_api import KEY, Api, owner_dashboard, page_text

from node.store.store import Store
from protocol import GENESIS_KIND, Entry, SigningKey
from protocol.entry import create_entry
from protocol.rules import Rules

BOB = SigningKey(hashlib.sha256(b"rejection-notes-bob").digest())
CAROL = SigningKey(hashlib.sha256(b"rejection-notes-carol").digest())
MINE = 40  # the owner's contributions, each rejected by Bob with a note


class Chains:
    """Signs each author's next entry of one ledger."""

    def __init__(self) -> None:
        rules = Rules.from_config({"founders": [KEY.did, BOB.did, CAROL.did], "validation": {"accept": 2,
                                                                                           "reject": 2}},
                                  name="Notes coop", creator=KEY.did)
        self.genesis = create_entry(KEY, ledger=None, seq=1, prev=None, ts=1_000, kind=GENESIS_KIND,
                                    body=rules.to_body())
        self.heads: dict[bytes, Entry] = {KEY.public_key: self.genesis}
        self.entries = [self.genesis]
        self.ts = 1_000

    def add(self, author: SigningKey, kind: str, body: dict[str, Any]) -> Entry:
        head = self.heads.get(author.public_key)
        self.ts += 1
        entry = create_entry(author, ledger=self.genesis.id, seq=1 if head is None else head.seq + 1,
                             prev=None if head is None else head.id, ts=self.ts, kind=kind,
                             body={**body, "member": self.genesis.id})
        self.heads[author.public_key] = entry
        self.entries.append(entry)
        return entry

    def work(self, author: SigningKey, note: str) -> Entry:
        return self.add(author, "vf.event", {"action": "work", "note": note,
                                             "effortQuantity": {"hasNumericalValue": "1", "hasUnit": "hour"}})

    def verdict(self, author: SigningKey, event: Entry, verdict: str, note: str | None = None) -> Entry:
        return self.add(author, "vf.endorse", {"event": event.id, "verdict": verdict,
                                               **({"note": note} if note else {})})


def ledger(bob_extra: int) -> Chains:
    """The owner's MINE contributions, each rejected by Bob with a note, after `bob_extra` entries of his own;
    one Bob rejected then accepted (no note shown), one Carol rejected without a note."""
    chains = Chains()
    for i in range(bob_extra):
        chains.work(BOB, f"bob's own {i}")
    mine = [chains.work(KEY, f"mine {i}") for i in range(MINE)]
    for i, event in enumerate(mine):
        chains.verdict(BOB, event, "reject", f"why not {i}")
    chains.verdict(BOB, mine[0], "accept")  # his latest verdict on it accepts: its old note no longer shows
    chains.verdict(CAROL, mine[1], "reject")  # a rejection without a note
    chains.verdict(CAROL, mine[2], "reject", "me neither")
    return chains


class CountingStore(Store):
    """The real store, counting the calls of its reading methods."""

    reads: Counter[str]

    def count(self) -> None:
        self.reads = Counter()
        for name in ("log", "log_page", "get", "raw_range", "head", "frontier", "heads_of", "id_at", "genesis",
                     "ledgers", "ledger_size", "replicated", "forks"):
            method = getattr(self, name)

            def counted(*args: Any, _method: Any = method, _name: str = name, **kwargs: Any) -> Any:
                self.reads[_name] += 1
                return _method(*args, **kwargs)
            setattr(self, name, counted)


@asynccontextmanager
async def dashboard(tmp_path: Path, chains: Chains) -> AsyncIterator[tuple[Api, CountingStore]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    store = await CountingStore.open(tmp_path / "tally.sqlite3", key=KEY)
    try:
        result = await store.ingest(chains.entries)
        assert len(result.stored) == len(chains.entries)
        async with owner_dashboard(store) as api:
            yield api, store
    finally:
        await store.close()


async def reads_of_pages(tmp_path: Path, bob_extra: int) -> tuple[Counter[str], list[str]]:
    chains = ledger(bob_extra)
    base = f"/ledgers/{chains.genesis.id}"
    async with dashboard(tmp_path, chains) as (api, store):
        await page_text(api, f"{base}/history")  # the state is folded once, then kept current
        store.count()
        paths = [f"{base}/history?page=1", f"{base}/history?page=2", f"{base}/queue"]
        shown = [await page_text(api, path) for path in paths]
        return store.reads, shown


async def test_notes_show_without_reading_the_rejecters_chains(tmp_path: Path) -> None:
    short, pages = await reads_of_pages(tmp_path / "short", 10)
    history = pages[0] + pages[1]
    for i in range(1, MINE):
        assert f"rejects it: “why not {i}”" in history, i
    assert "why not 0" not in history  # Bob's latest verdict on it accepts
    assert history.count("rejects it: “me neither”") == 1
    queue = pages[2]
    # mine 1 and 2 are rejected (two rejects); 38 wait (mine 0 with one accept, the others each with Bob's note):
    # the queue shows the newest 25 of them and links to the history for all
    assert queue.count("rejects it: “why not") == 25 and "All 38 of yours that wait, in the history" in queue
    long, long_pages = await reads_of_pages(tmp_path / "long", 2_000)
    # Bob's 2,000 contributions wait for the owner's verdict: the queue lists 25 a page, not 2,000 forms
    assert long_pages[2].count('class="verdict"') == 25 and "page 1 of 80 · 2,000 contribution(s)" in long_pages[2]
    assert "log" not in short and "log_page" not in short  # no chain is read for the notes
    assert long == short, (short, long)  # 2,000 more entries in Bob's chain: not one more read
    assert sum(short.values()) <= 3 * 3, short  # two reads a page (the ledger and its genesis), whatever the notes


async def test_the_notes_are_the_owners_only(tmp_path: Path) -> None:
    """A note on someone else's contribution is not shown on the owner's pages (it is its author's)."""
    chains = ledger(0)
    bobs = chains.work(BOB, "bob's work")
    chains.verdict(CAROL, bobs, "reject", "not this week")
    async with dashboard(tmp_path, chains) as (api, _):
        history = await page_text(api, f"/ledgers/{chains.genesis.id}/history")
    assert "bob&#x27;s work" in history or "bob's work" in history
    assert "not this week" not in history

