"""A store that heals itself (SPEC.md §10, §13.5): a byte flipped in a node's SQLite file makes the running node
quarantine the damaged entry (kept, not counted), answer `store_corrupt` for it meanwhile, and fetch a good copy
from a peer by itself; for a members-only ledger only from a member. Real homes, real SQLite files, real
`tally run` processes on loopback."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from running_nodes import Node, exchange, ok, refused, run, start, stop_all, until

from node.config import CONFIG_FILE, DEFAULT_HEAL_RETRY_S
from node.store.store import Store
from protocol import CID
from protocol.identity import public_key_from_did


def flip_byte_in_file(home: Path, entry: str) -> None:
    """One bit flipped in the store file itself, in the middle of the entry's payload, as a failing disk would
    (no node runs on the home; the WAL is folded into the file first, so the bytes are there)."""
    store = home / "tally.sqlite3"
    db = sqlite3.connect(store)
    (payload,) = db.execute("SELECT payload FROM entries WHERE id = ?", (CID.parse(entry).raw,)).fetchone()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    data = bytearray(store.read_bytes())
    at = data.find(payload)
    assert at >= 0 and data.find(payload, at + 1) < 0, "the payload is in the file once"
    data[at + len(payload) // 2] ^= 0x10
    store.write_bytes(bytes(data))


def quarantined(home: Path) -> list[str]:
    """The ids in the quarantine table of the home's store file (read-only: a node runs on it)."""
    db = sqlite3.connect(f"file:{home / 'tally.sqlite3'}?mode=ro", uri=True)
    try:
        return [str(CID(row[0])) for row in db.execute("SELECT id FROM quarantine")]
    finally:
        db.close()


def entry_answer(node: Node, entry: str) -> tuple[int, Any]:
    return node.api("GET", f"/entries/{entry}")


def peers(node: Node) -> dict[str, Any]:
    """The node's `GET /api/v1/peers` answer: its peers, and what healing its store asked of them."""
    status, data = node.api("GET", "/peers")
    assert status == 200, data
    return dict(data)


def history(node: Node, ledger: str) -> list[str]:
    status, data = node.api("GET", f"/ledgers/{ledger}/history")
    assert status == 200, data
    return sorted(c["id"] for c in data["contributions"])


HEAL_EVERY_S = 0.5  # ben's heal_retry_s


@pytest.mark.slow
def test_a_flipped_byte_is_quarantined_and_fetched_again_from_a_member_only(tmp_path: Path) -> None:
    ana_home, ben_home, cal_home = tmp_path / "ana", tmp_path / "ben", tmp_path / "cal"
    ana_did, ben_did, cal_did = ok(ana_home, "init"), ok(ben_home, "init"), ok(cal_home, "init")
    ana = start("ana", ana_home, ana_did)
    ben = start("ben", ben_home, ben_did, ana.address)
    nodes = [ana, ben]
    try:
        ledger = ok(ana_home, "ledger", "create", "Bike coop")  # members-only
        ok(ana_home, "member", "admit", ledger, ben_did)
        ok(ben_home, "follow", ledger)
        ids = [ok(ana_home, "contribute", ledger, "--action", "work", "--quantity", str(q), "--unit", "hour")
               for q in (1, 2, 3)]
        until(lambda: ben.state(ledger) is not None and history(ben, ledger) == sorted(ids), "ben holds ana's entries",
              logs=nodes)
        status, good = entry_answer(ana, ids[1])
        assert status == 200, good
    finally:
        stop_all(nodes)

    # cal, not a member, holds copies too (passed by hand) and follows the ledger: it must never be asked
    exchange(ben_home, cal_home)
    ok(cal_home, "follow", ledger)
    flip_byte_in_file(ben_home, ids[1])
    refused(ben_home, "store_corrupt", "verify")
    # ben asks for the damaged entry again every half second, not every 5 (tally.toml), so its rounds pass quickly
    (ben_home / CONFIG_FILE).write_text(f"[limits]\nheal_retry_s = {HEAL_EVERY_S}\n")

    cal = start("cal", cal_home, cal_did)
    ben = start("ben", ben_home, ben_did, cal.address)
    nodes = [cal, ben]
    try:
        # found by the node's own scrub at start, quarantined: a store error for it, the rest readable
        until(lambda: quarantined(ben_home) == [ids[1]], "ben quarantines the damaged entry", logs=nodes)
        status, data = entry_answer(ben, ids[1])
        assert (status, data["error"]["code"]) == (500, "store_corrupt"), data
        assert (ben.api("GET", f"/entries/{ids[1]}", owner=False)[0]) == 404  # nothing told to others
        # not counted while damaged; the next entry of its chain waits for it (§16.2), the rest reads as before
        assert history(ben, ledger) == [ids[0]]
        # linked with cal, which holds a copy but is no member: ben does not ask it, so no copy comes. Each healing
        # round asks every link; of three rounds since the link came up, the last two began heal_retry_s and more after.
        until(lambda: any(p["id"] == cal_did and p["connected"] for p in peers(ben)["peers"]), "ben linked with cal",
              logs=nodes)
        linked, t_linked = peers(ben)["healing"]["rounds"], time.monotonic()
        until(lambda: peers(ben)["healing"]["rounds"] >= linked + 3, "three healing rounds since", logs=nodes)
        # the setting is honoured: at the default, the two waits between three rounds alone take twice this
        assert time.monotonic() - t_linked < 2 * DEFAULT_HEAL_RETRY_S
        healing = peers(ben)["healing"]
        assert healing["waiting"] == 1 and healing["restored"] == 0, healing
        assert all(a["peer"] != cal_did for a in healing["asked"]), healing
        assert quarantined(ben_home) == [ids[1]]
        assert entry_answer(ben, ids[1])[0] == 500

        # ana, a member, comes back: ben fetches the entry from her by itself, and takes it only as it was
        t0 = time.monotonic()
        ana = start("ana", ana_home, ana_did, ben.address)
        nodes.append(ana)
        until(lambda: entry_answer(ben, ids[1])[0] == 200, "ben repaired from ana", logs=nodes)
        print(f"\nrepaired from a member {time.monotonic() - t0:.1f} s after starting her node")
        assert entry_answer(ben, ids[1])[1] == good
        assert quarantined(ben_home) == []
        until(lambda: peers(ben)["healing"]["restored"] == 1, "the healing record counts the repair", logs=nodes)
        healing = peers(ben)["healing"]  # it names whom it asked: ana (once per link), and still never cal
        assert {(a["entry"], a["peer"]) for a in healing["asked"]} == {(ids[1], ana_did)}, healing
        until(lambda: history(ben, ledger) == sorted(ids), "the repaired entry counted again", logs=nodes)
        assert all(n.proc.poll() is None for n in nodes), "no node crashed"
    finally:
        stop_all(nodes)
    assert ok(ben_home, "verify").startswith("ok")
    for node in nodes:
        assert "Traceback" not in node.log(), node.log()[-3000:]
    assert "damaged entry restored from a peer" in ben.log()


def test_a_damaged_head_of_the_owners_own_chain_is_linked_not_forked(tmp_path: Path) -> None:
    """The node's own latest entry quarantined: its next entry still follows it (the quarantine keeps its id and
    seq), so the owner's chain never forks, and the entry comes back from a peer later."""
    ana_home, ben_home = tmp_path / "ana", tmp_path / "ben"
    ana_did, ben_did = ok(ana_home, "init"), ok(ben_home, "init")
    ledger = ok(ana_home, "ledger", "create", "Open books", "--public")
    ok(ben_home, "follow", ledger)
    first = ok(ana_home, "contribute", ledger, "--action", "work", "--quantity", "1", "--unit", "hour")
    head = ok(ana_home, "contribute", ledger, "--action", "work", "--quantity", "2", "--unit", "hour")
    exchange(ana_home, ben_home)
    flip_byte_in_file(ana_home, head)

    ana = start("ana", ana_home, ana_did)  # alone: nobody to fetch from yet
    nodes = [ana]
    try:
        until(lambda: quarantined(ana_home) == [head], "ana quarantines her damaged head", logs=nodes)
        after = ok(ana_home, "contribute", ledger, "--action", "work", "--quantity", "3", "--unit", "hour")
        status, row = ana.api("GET", f"/entries/{after}")
        assert status == 200 and row["seq"] == 4 and row["prev"] == head, row  # genesis, first, head, after
        ben = start("ben", ben_home, ben_did, ana.address)
        nodes.append(ben)
        until(lambda: ana.api("GET", f"/entries/{head}")[0] == 200, "ana repaired from ben", logs=nodes)
        until(lambda: sorted(c["id"] for c in ben.api("GET", f"/ledgers/{ledger}/history")[1]["contributions"])
              == sorted([first, head, after]), "ben holds ana's new entry", logs=nodes)
    finally:
        stop_all(nodes)
    for home in (ana_home, ben_home):
        assert ok(home, "verify").startswith("ok")
        r = run(home, "log", "--ledger", ledger, "--json")
        assert [json.loads(line)["seq"] for line in r.stdout.splitlines()] == [1, 2, 3, 4], r.stderr


def flip_stored_payload(home: Path, entry: str) -> None:
    """One bit of the entry's stored payload flipped while its node runs (through SQLite, as a bad sector under
    a page the node then reads would look)."""
    db = sqlite3.connect(home / "tally.sqlite3", timeout=30)
    with db:
        (payload,) = db.execute("SELECT payload FROM entries WHERE id = ?", (CID.parse(entry).raw,)).fetchone()
        flipped = bytes([*payload[:-1], payload[-1] ^ 0x01])
        db.execute("UPDATE entries SET payload = ? WHERE id = ?", (flipped, CID.parse(entry).raw))
    db.close()


def test_damage_found_while_running_is_healed_from_the_linked_peer(tmp_path: Path) -> None:
    """Bytes damaged under a running node: the page of entries that reads them leaves the entry out (not a
    caller's payload_mismatch), the node quarantines it and gets it back from the peer it is linked with."""
    ana_home, ben_home = tmp_path / "ana", tmp_path / "ben"
    ana = start("ana", ana_home, ok(ana_home, "init"))
    ben = start("ben", ben_home, ok(ben_home, "init"), ana.address)
    nodes = [ana, ben]
    try:
        ledger = ok(ana_home, "ledger", "create", "Open books", "--public")
        ok(ben_home, "follow", ledger)
        ids = [ok(ana_home, "contribute", ledger, "--action", "work", "--quantity", str(q), "--unit", "hour")
               for q in (1, 2)]
        until(lambda: ben.state(ledger) is not None and history(ben, ledger) == sorted(ids), "ben has ana's entries",
              logs=nodes)
        flip_stored_payload(ben_home, ids[0])
        status, page = ben.api("GET", f"/ledgers/{ledger}/entries")
        assert status == 200, page
        assert ids[0] not in {e["id"] for e in page["entries"]}
        until(lambda: entry_answer(ben, ids[0]) == entry_answer(ana, ids[0]), "ben healed from ana", logs=nodes)
        until(lambda: history(ben, ledger) == sorted(ids), "counted again", logs=nodes)
        assert quarantined(ben_home) == []
        assert all(n.proc.poll() is None for n in nodes)
    finally:
        stop_all(nodes)
    for node in nodes:
        assert "Traceback" not in node.log() and "misbehaved" not in node.log(), node.log()[-3000:]


async def test_a_chain_served_to_a_peer_stops_before_a_damaged_entry_and_the_scrub_finds_it(tmp_path: Path) -> None:
    """What a node serves a peer's want is checked against its ids on the way out: a peer would refuse a damaged
    entry (payload_mismatch) and ban the node for it."""
    home = tmp_path / "ana"
    did = ok(home, "init")
    ledger = ok(home, "ledger", "create", "Open books", "--public")
    ids = [ok(home, "contribute", ledger, "--action", "work", "--quantity", str(q), "--unit", "hour")
           for q in (1, 2, 3)]
    flip_stored_payload(home, ids[1])
    store = await Store.open(home / "tally.sqlite3")
    found: list[bytes] = []
    store.on_damaged(found.append)
    try:
        rows = await store.raw_range(CID.parse(ledger), public_key_from_did(did), 1, 100)
        assert [seq for seq, _, _ in rows] == [1, 2]  # the genesis, the first contribution; not the damaged third
        assert found == [CID.parse(ids[1]).raw]
        # the scrub a node makes at start finds it, and only it, reading 2 rows at a time
        assert [entry async for entry in store.scrub(chunk=2)] == [CID.parse(ids[1]).raw]
    finally:
        await store.close()


def test_verify_repair_puts_back_an_entry_the_node_quarantined(tmp_path: Path) -> None:
    ana_home, ben_home = tmp_path / "ana", tmp_path / "ben"
    ana_did, ben_did = ok(ana_home, "init"), ok(ben_home, "init")
    ledger = ok(ana_home, "ledger", "create", "Open books", "--public")
    ok(ben_home, "follow", ledger)
    entry = ok(ana_home, "contribute", ledger, "--action", "work", "--quantity", "2", "--unit", "hour")
    exchange(ana_home, ben_home)
    flip_byte_in_file(ben_home, entry)
    ben = start("ben", ben_home, ben_did)  # alone: it quarantines, and has nobody to ask
    try:
        until(lambda: quarantined(ben_home) == [entry], "ben quarantines it", logs=[ben])
    finally:
        stop_all([ben])
    r = run(ben_home, "verify")
    assert r.returncode == 1 and f"bad\t{entry}\tstore_corrupt\tdamaged: quarantined" in r.stdout, r.stdout
    ana = start("ana", ana_home, ana_did)
    try:
        r = run(ben_home, "verify", "--repair", "--peer", ana.address)
        assert r.returncode == 0 and f"repaired\t{entry}\tfrom {ana.address}" in r.stdout, (r.stdout, r.stderr)
    finally:
        stop_all([ana])
    assert quarantined(ben_home) == []
    assert ok(ben_home, "verify").startswith("ok")
    r = run(ben_home, "history", ledger, "--json")
    assert [json.loads(line)["id"] for line in r.stdout.splitlines()] == [entry]
