"""A damaged store or a full disk is a coded error naming the file, never a traceback, and nothing half-written
is acknowledged (SPEC.md §9, §10): real homes, real SQLite files, the real CLI and `tally run`."""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import subprocess
from pathlib import Path

import pytest
from conftest import tally_executable
from running_nodes import exchange, ok, refused, run, run_process, start, stop_all

from protocol import CID


def ledgers(home: Path) -> list[str]:
    r = run(home, "ledger", "list", "--json")
    assert r.returncode == 0, r.stderr
    return [json.loads(line)["id"] for line in r.stdout.splitlines()]


def flip_payload_byte(home: Path, entry: str) -> None:
    """One bit of the entry's stored payload flipped, as a failing disk would."""
    db = sqlite3.connect(home / "tally.sqlite3")
    with db:
        (payload,) = db.execute("SELECT payload FROM entries WHERE id = ?", (CID.parse(entry).raw,)).fetchone()
        flipped = bytes([payload[0], payload[1] ^ 0x01, *payload[2:]])
        db.execute("UPDATE entries SET payload = ? WHERE id = ?", (flipped, CID.parse(entry).raw))
    db.close()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "ana"
    ok(home, "init")
    ok(home, "ledger", "create", "Bike coop")
    return home


@pytest.mark.parametrize("damage", ["truncated", "zeroed header"])
def test_a_damaged_store_is_store_corrupt_in_every_command(home: Path, damage: str) -> None:
    ledger = ledgers(home)[0]
    store = home / "tally.sqlite3"
    with store.open("r+b") as f:
        if damage == "truncated":
            f.truncate(store.stat().st_size // 2)
        else:
            f.write(b"\0" * 100)  # the SQLite header: "file is not a database"
    for args in (["verify"], ["log", "--ledger", ledger], ["ledger", "list"], ["state", ledger],
                 ["ledger", "create", "Another"],
                 ["run", "--offline", "--no-mdns", "--listen", "127.0.0.1:0"]):
        r = (run_process if args[0] == "run" else run)(home, *args, timeout=60)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert r.stderr.startswith("error: store_corrupt: "), (args, r.stderr)
        assert "tally.sqlite3" in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)


def test_a_full_disk_is_disk_full_and_writes_nothing(home: Path) -> None:
    before = ledgers(home)

    def small_files() -> None:  # as `ulimit -f 4`: no file may grow past 4 KiB
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    env = {k: v for k, v in os.environ.items() if k != "TALLY_HOME"}
    r = subprocess.run([tally_executable(), "--home", str(home), "ledger", "create", "Too much"],
                       capture_output=True, text=True, timeout=120, env=env, preexec_fn=small_files)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stderr.startswith("error: disk_full: ") and "Traceback" not in r.stderr, r.stderr
    assert r.stdout == ""  # no id printed: nothing acknowledged
    assert ledgers(home) == before  # and nothing half-written
    assert ok(home, "verify").startswith("ok")
    ok(home, "ledger", "create", "Room again")
    assert len(ledgers(home)) == len(before) + 1


def test_an_entry_with_a_flipped_byte_is_left_out_and_its_ledger_stays_readable(home: Path) -> None:
    ledger = ledgers(home)[0]
    ids = [ok(home, "contribute", ledger, "--action", "work", "--quantity", str(q), "--unit", "hour")
           for q in (1, 2, 3)]
    flip_payload_byte(home, ids[1])
    r = run(home, "history", ledger, "--json")
    assert r.returncode == 0, r.stderr
    # the damaged entry is left out; the next of its chain waits for it (§16.2), the rest reads as before
    assert {json.loads(line)["id"] for line in r.stdout.splitlines()} == {ids[0]}
    assert run(home, "state", ledger, "--json").returncode == 0
    r = run(home, "verify")
    assert r.returncode == 1 and r.stderr.startswith("error: store_corrupt: ") and "Traceback" not in r.stderr
    assert ids[1] in r.stdout + r.stderr


def test_verify_repair_fetches_a_good_copy_from_a_peer(tmp_path: Path) -> None:
    ana, ben = tmp_path / "ana", tmp_path / "ben"
    ana_did = ok(ana, "init")
    ok(ben, "init")
    ledger = ok(ana, "ledger", "create", "Open books", "--public")
    entry = ok(ana, "contribute", ledger, "--action", "work", "--quantity", "2", "--unit", "hour")
    exchange(ana, ben)
    flip_payload_byte(ben, entry)
    refused(ben, "store_corrupt", "verify")
    node = start("ana", ana, ana_did)
    try:
        r = run(ben, "verify", "--repair", "--peer", node.address)
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert f"repaired\t{entry}\tfrom {node.address}" in r.stdout
    finally:
        stop_all([node])
    assert ok(ben, "verify").startswith("ok")
    r = run(ben, "history", ledger, "--json")
    assert [json.loads(line)["id"] for line in r.stdout.splitlines()] == [entry]
    # with no peer that has it, the entry stays damaged and verify says so
    flip_payload_byte(ben, entry)
    r = run(ben, "verify", "--repair")
    assert r.returncode == 1 and f"unrepaired\t{entry}" in r.stdout and r.stderr.startswith("error: store_corrupt")
