"""A member who rotated founds a new ledger as who they are (SPEC.md §19.9): the genesis is signed by the
current key, names the identity as founder with the home's key log, and everything the key writes there
counts for the identity; a device's home, which has no key log, is refused. Real CLI, real SQLite files."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from conftest import TallyRunner, last_line


def ok(tally: TallyRunner, *args: str, home: Path | None = None) -> str:
    r = tally(*args, home_dir=home)
    assert r.returncode == 0, (args, r.stderr)
    return last_line(r.stdout)


def test_a_ledger_founded_after_a_rotation_names_the_identity(tally: TallyRunner, home: Path, tmp_path: Path
                                                              ) -> None:
    me = ok(tally, "init")
    assert stat.S_IMODE((home / "identity.kel").stat().st_mode) == 0o600
    first = ok(tally, "ledger", "create", "First coop")
    assert len(ok(tally, "key", "incept").split()) == 1
    rotation = tally("key", "rotate")
    assert rotation.returncode == 0 and rotation.stdout.splitlines()[-1].startswith("rotated: "), rotation.stderr
    key = ok(tally, "id", "--key")
    assert key != me and ok(tally, "id") == me
    assert len(json.loads((home / "identity.kel").read_text())["keys"]) == 2  # the log went on with the new key

    second = ok(tally, "ledger", "create", "Second coop")  # signed by the new key, founded as `me`
    work = ok(tally, "contribute", second, "--action", "work", "--quantity", "2", "--unit", "hour")
    state = json.loads(ok(tally, "state", second, "--json"))
    assert state["members"] == [me] and state["rules"]["founders"] == [me]
    assert state["rules"]["creator"]["identity"] == me and state["keys"][me]["key"] == key
    assert state["pending"] == [{"id": work, "author": me, "accepts": [], "rejects": [], "accepts_needed": 1}]
    ledgers = {row["id"]: row for row in map(json.loads, tally("ledger", "list", "--json").stdout.splitlines())}
    assert ledgers[second]["founder"] == me and ledgers[first]["founder"] == me
    assert ok(tally, "verify").startswith("ok\t")

    # A device writes as the member in the member's ledgers but founds none as them: it holds no key log.
    device_home = tmp_path / "phone"
    device_key = ok(tally, "init", home=device_home)
    ok(tally, "device", "join", me, home=device_home)
    refused = tally("ledger", "create", "Phone coop", home_dir=device_home)
    assert refused.returncode == 1 and refused.stderr.startswith("error: key_not_authorized: "), refused.stderr
    assert device_key != me
