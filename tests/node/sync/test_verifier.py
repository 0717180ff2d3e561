"""Checking received entries (node/sync/ingest.py): the event loop, the decoding thread and the
worker processes must give the same verdicts, with the same codes, as `decode_entry` itself;
a worker that dies costs a fallback, never a verdict."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import struct
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from node.store.store import Store
from node.sync.ingest import INLINE_MAX, POOL_IDLE_S, POOL_MIN, RawEntry, Verifier, ingest_batches
from node.sync.verify_worker import PAYLOAD_OK, SIG_OK, check_jobs, decode_batch, encode_batch, serve
from protocol import CID, InvalidData, SigningKey, create_entry, decode_entry
from protocol.entry import Header, signing_bytes_of

KEY = SigningKey(bytes(range(32)))
LEDGER = CID.for_block(b"a ledger")


def chain(n: int) -> list[RawEntry]:
    rows: list[RawEntry] = []
    prev = None
    for seq in range(1, n + 1):
        e = create_entry(KEY, ledger=LEDGER, seq=seq, prev=prev, ts=seq, kind="vf.event", body={"i": seq})
        rows.append((e.header_raw, e.payload_raw))
        prev = e.id
    return rows


def signed_over(seq: int, payload: bytes) -> RawEntry:
    """A well-signed entry whose header commits to `payload`, whatever its bytes."""
    unsigned = Header(author=KEY.public_key, ledger=LEDGER, seq=seq, prev=CID.for_block(b"prev"), ts=seq,
                      kind="vf.event", payload=CID.for_block(payload), size=len(payload), sig=bytes(64))
    header = replace(unsigned, sig=KEY.sign(unsigned.signing_bytes()))
    return header.encode(), payload


def spoiled(rows: list[RawEntry]) -> list[RawEntry]:
    """Every fifth entry broken in a different way: signature, payload, header encoding, erased payload
    (which is fine), a payload it commits to in non-canonical form (keys out of order; a long-form
    integer) or that is not a map, each with a good signature."""
    out = list(rows)
    for i in range(0, len(out), 5):
        header, payload = out[i]
        kind = (i // 5) % 7
        if kind == 4:
            out[i] = signed_over(i + 1, b"\xa2\x61b\x01\x61a\x02")
            continue
        if kind == 5:
            out[i] = signed_over(i + 1, b"\xa1\x61a\x18\x01")
            continue
        if kind == 6:
            out[i] = signed_over(i + 1, b"\x82\x01\x02")
            continue
        if kind == 0:  # the signature's last byte: still a canonical header, the signature fails
            at = header.index(b"\x58\x40") + 2 + 63
            out[i] = (header[:at] + bytes([header[at] ^ 1]) + header[at + 1 :], payload)
        elif kind == 1:
            out[i] = (header, b"\xa1\x61i\x00")  # another payload than the header commits to
        elif kind == 2:
            out[i] = (header + b"\x00", payload)  # trailing bytes
        else:
            out[i] = (header, None)  # erased: the header still verifies alone
    return out


def expected(rows: list[RawEntry]) -> list[str]:
    verdicts = []
    for header, payload in rows:
        try:
            decode_entry(header, payload)
            verdicts.append("ok")
        except InvalidData as exc:
            verdicts.append(exc.code)
    return verdicts


@pytest.mark.parametrize("size", [1, INLINE_MAX, 20, 140])
@pytest.mark.parametrize("pool_min", [1, 1 << 30])
async def test_every_path_gives_decode_entrys_verdicts(size: int, pool_min: int) -> None:
    rows = spoiled(chain(size))
    want = expected(rows)
    assert {"ok", "bad_signature"} <= set(want) or size < 5
    assert {"bad_encoding", "bad_payload", "payload_mismatch"} <= set(want) or size < 35
    async with Verifier(workers=2, pool_min=pool_min) as verifier:
        checked = await verifier.check(rows)
    got = ["ok"] * len(rows)
    for index, error in checked.refused:
        got[index] = error.code
    assert got == want
    accepted = [CID.for_block(h) for (h, _), v in zip(rows, want, strict=True) if v == "ok"]
    assert [e.id for e in checked.entries] == accepted


async def test_a_dead_worker_costs_a_fallback_not_a_verdict() -> None:
    rows = spoiled(chain(200))
    want = expected(rows)
    async with Verifier(workers=2, pool_min=10) as verifier:
        first = await verifier.check(rows)
        pids = verifier.worker_pids
        assert len(pids) == 2
        for pid in pids:  # the workers the first batch used
            os.kill(pid, signal.SIGKILL)
        again = await verifier.check(rows)  # the dead workers are noticed: checked on the thread
        after = await verifier.check(rows)  # and new workers serve the next batch
        assert verifier.worker_pids and not set(verifier.worker_pids) & set(pids)
    for checked in (first, again, after):
        got = ["ok"] * len(rows)
        for index, error in checked.refused:
            got[index] = error.code
        assert got == want


async def test_idle_workers_stop_and_start_again_when_needed() -> None:
    rows = spoiled(chain(60))
    want = expected(rows)
    async with Verifier(workers=2, pool_min=10, idle_s=0.3) as verifier:
        await verifier.check(rows)
        assert verifier.worker_pids
        async with asyncio.timeout(30):  # no large batch meanwhile: the workers go (polled, generous deadline)
            while verifier.worker_pids:
                await asyncio.sleep(0.05)
        checked = await verifier.check(rows)  # the next large batch starts them again
        assert verifier.worker_pids
    got = ["ok"] * len(rows)
    for index, error in checked.refused:
        got[index] = error.code
    assert got == want


async def test_a_stream_of_batches_is_stored_in_order_whatever_order_its_checks_end_in(tmp_path: Path) -> None:
    """Batches are checked ahead and grouped into transactions: every chain still links in seq order, what
    fails to decode or verify is never stored, and what comes after a refused link is a gap, not stored."""
    rows = chain(300)
    bad = 150  # its signature fails: the chain stops there, the rest are gaps
    header, payload = rows[bad]
    at = header.index(b"\x58\x40") + 2 + 63
    rows[bad] = (header[:at] + bytes([header[at] ^ 1]) + header[at + 1 :], payload)
    sizes = [1, 40, 7, 130, 2, 60, 60]  # small ones are checked on the loop or the thread, large in the workers

    async def batches() -> AsyncIterator[list[RawEntry]]:
        at = 0
        for n in sizes:
            yield rows[at : at + n]
            at += n
            await asyncio.sleep(0)

    async with await Store.open(tmp_path / "s.sqlite3") as store, Verifier(workers=2, pool_min=30) as verifier:
        totals = await ingest_batches(store, verifier, batches())
        assert (totals.stored, totals.refused, totals.gaps) == (bad, 1, 300 - bad - 1)
        head = await store.head(LEDGER, KEY.public_key)
        assert head is not None and head.seq == bad and head.id == CID.for_block(rows[bad - 1][0])
        assert await store.count() == bad


def test_spec_states_the_verifier_limits() -> None:
    spec = (Path(__file__).resolve().parents[3] / "SPEC.md").read_text()
    for name, value in (("POOL_MIN", POOL_MIN), ("INLINE_MAX", INLINE_MAX), ("POOL_IDLE_S", POOL_IDLE_S)):
        assert f"`{name} = {value:g}`" in spec, name


def test_the_worker_answers_whole_batches_and_stops_at_a_cut_one() -> None:
    rows = spoiled(chain(12))
    jobs = []
    for header, payload in rows[:12]:
        try:
            entry = decode_entry(header, payload, check_signature=False, check_payload_form=False)
        except InvalidData:
            continue
        jobs.append((entry.header.author, entry.header.sig + signing_bytes_of(entry), payload))
    batch = encode_batch(jobs)
    sink = io.BytesIO()
    serve(io.BytesIO(batch + batch[:-1]), sink)  # the second batch is cut short: the node is gone
    answers = sink.getvalue()
    assert answers == check_jobs(jobs) and len(answers) == len(jobs)
    assert {a & SIG_OK for a in answers} == {0, SIG_OK} and all(a & PAYLOAD_OK for a in answers)
    count, size = struct.unpack(">II", batch[:8])
    assert (count, size) == (len(jobs), len(batch) - 8)
    assert decode_batch(count, batch[8:]) == jobs
    assert decode_batch(count, batch[8:] + b"\x00") is None  # overlong
    assert decode_batch(count + 1, batch[8:]) is None  # an entry missing
