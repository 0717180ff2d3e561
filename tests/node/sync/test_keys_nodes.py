"""Key rotation across three real nodes (SPEC.md §19): Ana rotates to the key kept in next.key, keeps her
identity, keeps writing and syncing; her old key, used by a thief from a copy of her home, is refused on
a peer with `key_rotated`. Devices: Ana authorizes, lists and revokes one.

`tally run` processes on loopback, linked with --peer, driven through the real CLI and SQLite files.
"""

from __future__ import annotations

import json
import shutil
import stat
import sys
from pathlib import Path

import pytest
from running_nodes import Node, exchange, ok, output, refused, run, running, start, until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and file modes")


def stop(node: Node) -> None:
    node.proc.terminate()
    node.proc.wait(timeout=30)


def invalid(node: Node, ledger: str) -> dict[str, str]:
    return {p["id"]: p["code"] for p in (node.state(ledger) or {}).get("invalid", [])}


def pending(node: Node, ledger: str) -> dict[str, str]:
    return {p["id"]: p["author"] for p in (node.state(ledger) or {}).get("pending", [])}


@pytest.mark.slow
def test_rotate_keeps_the_identity_and_peers_refuse_the_old_key(tmp_path: Path) -> None:
    with running(tmp_path, ("ana", "ben", "cleo")) as nodes:
        ana, ben, cleo = nodes["ana"], nodes["ben"], nodes["cleo"]
        assert stat.S_IMODE((ana.home / "next.key").stat().st_mode) == 0o600
        ledger = ok(ana.home, "ledger", "create", "Keys coop")
        for other in (ben, cleo):
            ok(ana.home, "member", "admit", ledger, other.did)
            ok(other.home, "follow", ledger)
        before = ok(ana.home, "contribute", ledger, "--action", "work", "--quantity", "2", "--unit", "hour")
        until(lambda: before in pending(ben, ledger) and before in pending(cleo, ledger), "Ana's work at Ben and Cleo")

        refused(ana.home, "already_running", "key", "rotate")  # the running node signs with the key
        stop(ana)
        # Ana commits to next.key in her ledgers (a thief who later takes her key cannot rotate her away),
        # and her peers receive the commitment.
        assert len(output(ana.home, "key", "incept").split()) == 1
        refused(ana.home, "not_member", "key", "incept")  # nothing left to commit to
        ana = nodes["ana"] = start("ana", ana.home, ana.did, ben.address, cleo.address)
        until(lambda: all(((n.state(ledger) or {}).get("keys", {}).get(ana.did) or {}).get("committed")
                          for n in (ben, cleo)), "Ana's commitment at Ben and Cleo")
        stop(ana)
        thief = tmp_path / "thief"
        shutil.copytree(ana.home, thief)  # the thief's copy: Ana's key and store, not next.key (kept offline)
        (thief / "next.key").unlink()
        (thief / "node.json").unlink(missing_ok=True)
        next_seed = (ana.home / "next.key").read_text()

        rotation = output(ana.home, "key", "rotate").splitlines()
        assert len(rotation) == 2 and rotation[-1].startswith("rotated: ")  # the rotation's id, then a summary
        assert (ana.home / "identity.key").read_text() == next_seed  # the pre-committed key signs now
        assert (ana.home / "next.key").read_text() != next_seed
        assert stat.S_IMODE((ana.home / "identity.key").stat().st_mode) == 0o600
        assert stat.S_IMODE((ana.home / "next.key").stat().st_mode) == 0o600
        assert ok(ana.home, "id") == ana.did  # who she is does not change
        new_key = ok(ana.home, "id", "--key")
        assert new_key != ana.did

        ana = nodes["ana"] = start("ana", ana.home, ana.did, ben.address, cleo.address)
        after = ok(ana.home, "contribute", ledger, "--action", "work", "--quantity", "3", "--unit", "hour")
        until(lambda: pending(ben, ledger).get(after) == ana.did and pending(cleo, ledger).get(after) == ana.did,
              "Ana's work with her new key, as Ana, at Ben and Cleo", logs=(ana, ben))
        ok(ben.home, "endorse", after)
        until(lambda: (s := cleo.state(ledger)) is not None and ana.did in s["totals"], "Ana's total at Cleo")

        # The thief writes with the old key and reaches Ben: refused there with the SPEC code.
        forged = ok(thief, "contribute", ledger, "--action", "work", "--quantity", "40", "--unit", "hour")
        thief_node = start("thief", thief, ana.did, ben.address)
        try:
            until(lambda: invalid(ben, ledger).get(forged) == "key_rotated", "the old key's entry refused at Ben")
            until(lambda: invalid(cleo, ledger).get(forged) == "key_rotated", "and at Cleo")
        finally:
            stop(thief_node)
        assert invalid(ana, ledger).get(before) is None  # what the old key wrote before the rotation counts
        digests = {n.name: (n.state(ledger) or {}).get("digest") for n in (ana, ben, cleo)}
        until(lambda: len({(n.state(ledger) or {}).get("digest") for n in (ana, ben, cleo)}) == 1,
              f"one digest on every node ({digests})")

        # A second rotation chains from the first.
        stop(ana)
        assert run(ana.home, "key", "rotate").returncode == 0
        assert ok(ana.home, "id") == ana.did and ok(ana.home, "id", "--key") != new_key
        nodes["ana"] = start("ana", ana.home, ana.did, ben.address, cleo.address)


def test_devices_add_list_revoke(tmp_path: Path) -> None:
    ana, phone = tmp_path / "ana", tmp_path / "phone"
    me = ok(ana, "init")
    device = ok(phone, "init")
    assert ok(phone, "id", "--key") == device
    ledger = ok(ana, "ledger", "create", "Devices coop")
    refused(ana, "bad_did", "device", "add", "did:key:nope")
    ids = output(ana, "device", "add", device, "--name", "phone").split()
    assert len(ids) == 1
    rows = output(ana, "device", "list", "--json").splitlines()
    assert len(rows) == 1 and '"name": "phone"' in rows[0] and '"revoked": null' in rows[0]
    assert ledger in rows[0]
    refused(ana, "bad_key_event", "device", "add", device)  # already one
    refused(ana, "bad_key_event", "device", "add", me)  # your own key is not a device

    # The phone gets the ledger (here by copying entries, as sync would) and writes as Ana.
    exchange(ana, phone)
    assert ok(phone, "device", "join", me) == device and ok(phone, "id") == me
    motion = ok(ana, "motion", "create", ledger, "--title", "Paint the van?", "--option", "yes", "--option", "no")
    exchange(ana, phone)
    ok(ana, "vote", motion, "--score", "yes=5")  # both devices vote in the same minute
    ok(phone, "vote", motion, "--score", "no=5")
    work = ok(phone, "contribute", ledger, "--action", "work", "--quantity", "1", "--unit", "hour")
    exchange(ana, phone)
    for home in (ana, phone):
        shown = json.loads(output(home, "motion", "show", motion, "--json"))
        assert [b["voter"] for b in shown["ballots"]] == [me]  # one member, one ballot
        state = json.loads(output(home, "state", ledger, "--json"))
        assert [p["author"] for p in state["pending"] if p["id"] == work] == [me]
        assert state["invalid"] == [] and state["forks"] == []
    ok(ana, "device", "revoke", device)
    rows = output(ana, "device", "list", "--json").splitlines()
    assert '"revoked": null' not in rows[0]
    refused(ana, "bad_key_event", "device", "revoke", device)
    state = json.loads(output(ana, "state", ledger, "--json"))
    assert state["invalid"] == []
    assert state["keys"][me]["devices"][0]["key"] == device and state["keys"][me]["devices"][0]["revoked"]


RULES = """
[validation]
accept = 2
reject = 2
"""


def test_a_lost_key_recovered_by_two_members(tmp_path: Path) -> None:
    with running(tmp_path, ("ana", "ben", "cleo")) as nodes:
        ana, ben, cleo = nodes["ana"], nodes["ben"], nodes["cleo"]
        rules = tmp_path / "rules.toml"
        rules.write_text(RULES)
        ledger = ok(ana.home, "ledger", "create", "Recovery coop", "--rules", str(rules))
        ok(ana.home, "member", "admit", ledger, ben.did)
        ok(ben.home, "follow", ledger)
        until(lambda: ben.did in ((ben.state(ledger) or {}).get("members") or []), "Ben admitted")
        ok(ana.home, "member", "admit", ledger, cleo.did)
        until(lambda: cleo.did in ((ben.state(ledger) or {}).get("sponsorships") or {}), "Ana's sponsorship at Ben")
        ok(ben.home, "member", "admit", ledger, cleo.did)
        ok(cleo.home, "follow", ledger)
        until(lambda: cleo.did in ((cleo.state(ledger) or {}).get("members") or []), "Cleo admitted")
        before = ok(ana.home, "contribute", ledger, "--action", "work", "--quantity", "2", "--unit", "hour")
        until(lambda: before in pending(ben, ledger) and before in pending(cleo, ledger), "Ana's work everywhere")

        stop(ana)  # Ana's SD card dies: her key and next.key with it. On a new home:
        home = tmp_path / "ana-new"
        ok(home, "init")
        new_key = ok(home, "recover", "request", ledger, ana.did)
        assert ok(home, "id") == ana.did and ok(home, "id", "--key") == new_key
        fresh = nodes["ana"] = start("ana-new", home, ana.did, ben.address, cleo.address)

        def approve(node: Node) -> Node:
            stop(node)
            refused(node.home, "self_recovery", "recover", "approve", ledger, node.did, new_key)
            ok(node.home, "recover", "approve", ledger, ana.did, new_key)
            others = [n.address for n in nodes.values() if n.name != node.name]
            restarted = nodes[node.name] = start(node.name, node.home, node.did, *others)
            return restarted

        ben = approve(ben)
        until(lambda: holds_approval(cleo, ledger), "Ben's approval at Cleo", logs=(ben, cleo))
        assert (cleo.state(ledger) or {}).get("keys") == {} and not invalid(cleo, ledger)  # valid, not enough alone
        assert fresh.state(ledger) is None  # one approval of two: the new key does not see the coop yet

        cleo = approve(cleo)
        until(lambda: ((fresh.state(ledger) or {}).get("keys", {}).get(ana.did) or {}).get("key") == new_key,
              "the recovery and the ledger at Ana's new node", logs=(fresh,))
        after = ok(home, "contribute", ledger, "--action", "work", "--quantity", "3", "--unit", "hour")
        until(lambda: pending(ben, ledger).get(after) == ana.did and pending(cleo, ledger).get(after) == ana.did,
              "Ana's work with her recovered key, as Ana, at Ben and Cleo", logs=(fresh, ben))
        assert before in pending(ben, ledger)  # what she wrote before still counts


def holds_approval(node: Node, ledger: str) -> bool:
    r = run(node.home, "log", "--ledger", ledger, "--json")
    return r.returncode == 0 and any(json.loads(line)["kind"] == "key.recover" for line in r.stdout.splitlines())
