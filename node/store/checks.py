"""The store's checks of its own bytes: the scrub a running node makes once at start (every entry's bytes
against its id, SPEC.md §10), `tally verify`'s full re-verification (encoding, signature, payload hash, derived
columns, chain links, fork proofs) and the list of quarantined entries. Damage found on an ordinary read is
reported by the reading side itself (node/store/reads.py, `on_damaged`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Any, Final

from node.store.reads import LOG_CHUNK_ROWS, StoreReader
from node.store.rows import Problem, Quarantined, idh, label, sound
from protocol import CID, ChainHead, Entry, ForkProof, InvalidData, check_next, decode_entry, decode_stored_entry
from protocol.identity import did_from_public_key

log = logging.getLogger(__name__)

_UNINDEXED_SQL: Final = (
    "SELECT id FROM entries e WHERE NOT EXISTS (SELECT 1 FROM entry_ids i WHERE i.idh = e.idh AND i.rid = e.rowid)"
    " AND NOT EXISTS (SELECT 1 FROM recent_ids r WHERE r.idh = e.idh AND r.rid = e.rowid)"
)
_STRAY_IDS_SQL: Final = (
    "SELECT count(*) FROM (SELECT idh, rid FROM entry_ids UNION ALL SELECT idh, rid FROM recent_ids) x"
    " WHERE NOT EXISTS (SELECT 1 FROM entries e WHERE e.rowid = x.rid AND e.idh = x.idh)"
)

_DAMAGE_FUNCTION: Final = "tally_scrub_damage"
_SCRUB_SQL: Final = (
    f"SELECT rowid, id, {_DAMAGE_FUNCTION}(id, header, payload) FROM entries WHERE rowid > ? ORDER BY rowid LIMIT ?"
)


def _damage(rid: Any, header: Any, payload: Any) -> str | None:
    """What is wrong with one stored entry's bytes (None: nothing); the scrub's check, which SQLite calls on the
    reader thread for each row it reads."""
    try:
        if sound(rid, header, payload):
            return None
        decode_stored_entry(rid, header, payload)
        return None  # sound after all (an id of another hash, should one ever be stored)
    except InvalidData as exc:
        return exc.message
    except Exception:  # a bug, not damage: SQLite would pass on only "user-defined function raised exception"
        log.exception("scrub check failed on a stored entry", extra={"entry": label(rid)})
        raise


class StoreChecks(StoreReader):
    """The reading side with the checks of the stored bytes; `Store` (node/store/store.py) adds the writing side."""

    async def quarantined(self) -> list[Quarantined]:
        rows = await self._rows("SELECT id, ledger, author, seq, found FROM quarantine ORDER BY found, id")
        return [Quarantined(CID(i), CID(led), bytes(a), int(seq), int(f)) for i, led, a, seq, f in rows]

    async def scrub(self, chunk: int = LOG_CHUNK_ROWS, pause_s: float = 0.0) -> AsyncGenerator[bytes, None]:
        """Check every stored entry's bytes against its id, `chunk` rows per read; yields (and reports to
        `on_damaged`) the id of each damaged one. Two hashes per entry (`sound`): ~5 µs, a ninth of a decode, made
        by SQLite on the reader thread as it reads (`_damage`), so ~3 ms a chunk stays off the event loop.
        `pause_s` between reads keeps it in the background (the whole file is read)."""
        await self._read.create_function(_DAMAGE_FUNCTION, 3, _damage)
        after = 0
        while True:
            if after and pause_s:
                await asyncio.sleep(pause_s)
            rows = await self._rows(_SCRUB_SQL, (after, chunk))
            if not rows:
                return
            after = rows[-1][0]
            for _, rid, detail in rows:
                if detail is not None:
                    self._found_damaged(bytes(rid), detail)
                    yield bytes(rid)

    async def verify(self) -> AsyncGenerator[Problem, None]:
        """Re-verify every stored entry from its raw bytes: encoding, signature,
        payload hash, derived columns and chain links; and every fork proof."""
        async with self._read.execute("PRAGMA quick_check") as cur:
            rows = await cur.fetchall()
        if [tuple(r) for r in rows] != [("ok",)]:
            for r in rows:
                yield Problem("-", "store_corrupt", f"sqlite: {r[0]}")
        heads: dict[tuple[bytes, bytes], ChainHead] = {}
        # Quarantined entries are listed, and their chains checked across the hole they leave.
        holes: dict[tuple[bytes, bytes, int], ChainHead] = {}
        for rid, ledger, author, seq, ts in await self._rows("SELECT id, ledger, author, seq, ts FROM quarantine"):
            holes[(bytes(ledger), bytes(author), int(seq))] = ChainHead(bytes(author), CID(ledger), seq, CID(rid), ts)
            yield Problem(label(rid), "store_corrupt", "damaged: quarantined until a peer gives a good copy")
        async with self._read.execute(
            "SELECT idh, id, ledger, author, seq, ts, kind, header, payload FROM entries ORDER BY ledger, author, seq"
        ) as cur:
            async for row in cur:
                problem, entry = _verify_row(row)
                if problem is not None:
                    yield problem
                    continue
                assert entry is not None
                hk = (entry.ledger_id.raw, entry.header.author)
                prev = heads.get(hk)
                hole = holes.get((*hk, entry.seq - 1))
                if hole is not None and (prev is None or prev.seq < hole.seq):
                    prev = hole
                try:
                    check_next(prev, entry)
                except InvalidData as exc:
                    yield Problem(str(entry.id), exc.code, exc.message)
                heads[hk] = ChainHead.of(entry)
        # The id index (SPEC.md §10): an entry it misses is not found by its id; a row of it naming no entry is stray.
        for (rid,) in await self._rows(_UNINDEXED_SQL):
            yield Problem(label(rid), "store_corrupt", "not in the id index: not found by its id")
        ((stray,),) = await self._rows(_STRAY_IDS_SQL)
        if stray:
            yield Problem("-", "store_corrupt", f"{stray} rows of the id index name no stored entry")
        async with self._read.execute("SELECT ledger, author, seq, proof FROM forks") as cur:
            async for ledger, author, seq, proof in cur:
                try:
                    fp = ForkProof.decode(proof)
                except InvalidData as exc:
                    yield Problem(f"fork:{did_from_public_key(author)}:{seq}", "store_corrupt", exc.message)
                    continue
                if (fp.a.ledger_id.raw, fp.a.header.author, fp.seq) != (ledger, author, seq):
                    yield Problem(f"fork:{fp.author}:{seq}", "store_corrupt", "fork row differs from its proof")


def _verify_row(row: Any) -> tuple[Problem | None, Entry | None]:
    row_idh, rid, ledger, author, seq, ts, kind, header, payload = row
    name = label(rid)
    try:
        entry = decode_entry(header, payload)
    except InvalidData as exc:
        return Problem(name, exc.code, exc.message), None
    expected = (
        idh(entry.id), entry.id.raw, entry.ledger_id.raw, entry.header.author, entry.seq, entry.header.ts, entry.kind
    )
    if (row_idh, rid, ledger, author, seq, ts, kind) != expected:
        return Problem(name, "store_corrupt", "stored index columns differ from the entry's bytes"), None
    return None, entry
